"""Simplify a program found by evolution, prove every step safe, and say what rule it is.

``simplify(program)`` runs, in order (each step in :attr:`Simplified.steps`):

1. **dead code and dead state** — statements whose value never reaches an update, state slots
   the updates never need (:func:`evodisc.analysis.eliminate_dead_code`), including a slot whose
   old value is never read before it is overwritten (a temporary, not state), and a slot that is
   never written (always 0: its reads become 0);
2. **constant folding** — sub-expressions of constants become one constant, float noise removed
   (``1 - 0.9`` → ``0.1``);
3. **symbolic** — the outputs are inlined into trees over the inputs, each is handed to SymPy
   (automatic canonical form, then common factors pulled out), converted back to primitives
   (:mod:`evodisc.inspect.symbolic`: ``m / sqrt(m * m)`` → ``sign(m)``, ``interp`` recognised, …)
   and written back as statements (:mod:`evodisc.emit`). Per output, the form with the
   fewest operations wins;
4. **approximate** steps, only when asked (``approximate=True``): drop a term whose contribution
   is below ``tolerance`` on the probe, and round constants (0.899 → 0.9) within it.

Every exact step is accepted only if the functional hash is unchanged (a rejected attempt is
logged as such); an approximate one only if the updates stay within ``tolerance`` (relative RMS
difference on the recognition probe, :func:`evodisc.inspect.recognise.deviation`) of the exact
simplification, and it is labelled approximate. The input program is never changed: it stays in
:attr:`Simplified.original`, and :meth:`Simplified.report` shows both.

SymPy runs in a child process under a deadline (``deadline`` seconds in all; a thread cannot
be stopped): the child streams each verified improvement as it finds it, and when time is up the
last one received is kept (or the form before SymPy, when none arrived).
"""

from __future__ import annotations

import math
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from evodisc.analysis import eliminate_dead_code, update_dependencies
from evodisc.edit import inline, make_call, node_at, replace_at, sites, substitute, validate
from evodisc.emit import emit, named_values, operations
from evodisc.hashing import functional_hash, functional_hash_info
from evodisc.inspect import recognise as recognition
from evodisc.inspect import symbolic  # imported here, so that each forked child has SymPy loaded
from evodisc.inspect.recognise import Match
from evodisc.primitives import PRIMITIVES, fold_constant
from evodisc.program import (
    RESERVED_INPUTS,
    Call,
    Const,
    Expr,
    Program,
    ProgramError,
    Var,
    format_constant,
    format_expr,
    format_program,
    parse_program,
    walk,
)

#: Seconds all SymPy work of one :func:`simplify` may take before the last verified form is
#: kept.
DEADLINE = 10.0
#: Default tolerance of approximate steps: relative RMS change of the updates on the probe.
TOLERANCE = 0.05


@dataclass(frozen=True)
class Step:
    """One thing :func:`simplify` did (or tried: ``accepted=False``)."""

    kind: str  # "dead code", "dead state", "constant folding", "symbolic", "deadline", …
    detail: str
    exact: bool = True  # False: an approximate step (the functional hash changed)
    accepted: bool = True
    deviation: float | None = None  # approximate steps: relative RMS change on the probe

    def __str__(self) -> str:
        label = self.kind if self.exact else f"approximate, {self.kind}"
        if not self.accepted:
            label = f"rejected, {label}"
        return f"{label}: {self.detail}"


@dataclass(frozen=True)
class Simplified:
    """The result of :func:`simplify`: the simplified program beside the original."""

    original: Program
    program: Program
    math: tuple[str, ...]  # one line per state update, then the update
    latex: str  # the same lines as a LaTeX ``aligned`` block
    steps: tuple[Step, ...]
    matches: tuple[Match, ...]  # the closest known optimizers, best first (empty: not asked)
    functional_hash: str  # of ``program``
    original_hash: str
    tolerance: float | None = None  # set when approximate steps were allowed

    @property
    def exact(self) -> bool:
        """True when no approximate step was taken (then the hashes are equal)."""
        return not any(s.accepted and not s.exact for s in self.steps)

    @property
    def closest(self) -> Match | None:
        """The nearest known optimizer and its similarity score."""
        return self.matches[0] if self.matches else None

    @property
    def removed(self) -> tuple[str, ...]:
        """What dead-code and dead-state elimination removed, one line each."""
        return tuple(s.detail for s in self.steps if s.kind in ("dead code", "dead state"))

    def report(self, latex: bool = False, against: Sequence[str] = ()) -> str:
        """The text ``evodisc simplify`` prints; ``against``: lines on the rule against the zoo
        with tuned constants (:mod:`evodisc.app.discovery`), after the closest optimizers."""
        o, s = self.original, self.program
        if self.exact:
            verdict = f"exact: same functional hash {self.functional_hash}"
        else:
            verdict = (
                f"APPROXIMATE within tolerance {self.tolerance:g} (functional hash "
                f"{self.original_hash} → {self.functional_hash})"
            )
        lines = [
            f"simplified ({len(s.body)} statements, {operations(s)} operations; {verdict}):",
            format_program(s).rstrip("\n"),
            "",
            "math:",
            *(f"  {line}" for line in self.math),
        ]
        if latex:
            lines += ["", "latex:", self.latex]
        if self.matches:
            lines += ["", "closest known optimizers (similarity of update directions, 1 = same):"]
            lines += [f"  {i}. {m.describe()}" for i, m in enumerate(self.matches, 1)]
        if against:
            lines += ["", "against the zoo with tuned constants (1.0 = tuned AdamW):"]
            lines += [f"  {line}" for line in against]
        lines += ["", "steps:"]
        lines += [f"  - {step}" for step in self.steps] or ["  (nothing to simplify)"]
        lines += [
            "",
            f"original ({len(o.body)} statements, {operations(o)} operations):",
            format_program(o).rstrip("\n"),
        ]
        return "\n".join(lines) + "\n"


def simplify(
    program: Program,
    *,
    approximate: bool = False,
    tolerance: float = TOLERANCE,
    deadline: float = DEADLINE,
    recognise: bool = True,
) -> Simplified:
    """Simplify ``program`` (see the module docstring); ``recognise=False`` skips naming the
    closest known optimizers."""
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be a number ≥ 0, not {tolerance}")
    if not deadline > 0:
        raise ValueError(f"deadline must be a positive number of seconds, not {deadline}")
    end = time.monotonic() + deadline
    original_hash = functional_hash(program)
    steps: list[Step] = []
    current = _dead_code(program, original_hash, steps)
    current = _fold(current, original_hash, steps)
    current, math = _symbolic(current, original_hash, deadline, steps)
    if approximate:
        approximated = _approximate(current, tolerance, steps)
        if approximated != current:
            current, math = approximated, None
    if math is None:
        math = _math(current, end - time.monotonic(), steps)
    validate(current)
    matches = recognition.recognise(current) if recognise else ()
    return Simplified(
        original=program,
        program=current,
        math=math[0],
        latex=math[1],
        steps=tuple(steps),
        matches=matches,
        functional_hash=functional_hash(current),
        original_hash=original_hash,
        tolerance=tolerance if approximate else None,
    )


# ----------------------------------------------------------------------------- exact steps


def _verified(kind: str, detail: str, before: Program, after: Program, target: str, steps):
    """``after`` if its functional hash is ``target`` (logged), else ``before``."""
    if functional_hash(after) == target:
        steps.append(Step(kind, detail))
        return after
    steps.append(Step(kind, f"{detail} (changes the functional hash)", accepted=False))
    return before


def _dead_code(program: Program, target: str, steps: list[Step]) -> Program:
    """Slots never written (always 0), then statements and slots that never reach an update,
    then inputs never read; each part kept only if the functional hash is unchanged."""
    current = program
    state_returns = dict(zip(program.state, program.returns[1:], strict=True))
    assigned = {s.target for s in program.body}
    for slot in program.state:
        if slot not in assigned and state_returns[slot] == Var(slot):
            detail = f"slot {slot} is never written: it is always 0"
            current = _verified(
                "dead state", detail, current, _constant_slot(current, slot), target, steps
            )

    pruned = eliminate_dead_code(current)
    kept = {id(s) for s in pruned.body}
    found = [
        Step("dead state", _dead_slot_reason(current, slot))
        for slot in current.state
        if slot not in pruned.state
    ]
    for statement in current.body:
        if id(statement) not in kept:
            text = f"{statement.target} = {format_expr(statement.expr)}"
            found.append(Step("dead code", f"`{text}` (its value never reaches an update)"))
    if found:
        if functional_hash(pruned) == target:
            steps += found
            current = pruned
        else:
            steps.append(
                Step("dead code", "removing it changes the functional hash", accepted=False)
            )

    needed = update_dependencies(current)[0]
    unread = [p for p in RESERVED_INPUTS if p in current.params and p not in needed]
    if unread:
        params = tuple(p for p in current.params if p not in unread)
        detail = f"input {', '.join(unread)} is never read"
        smaller = Program(params, current.body, current.returns)
        current = _verified("dead code", detail, current, smaller, target, steps)
    return current


def _constant_slot(program: Program, slot: str) -> Program:
    zero = Const(0.0)
    state = [s for s in program.state if s != slot]
    returns = [program.update] + [
        r for s, r in zip(program.state, program.returns[1:], strict=True) if s != slot
    ]

    def fix(name: str) -> Expr | str:
        return zero if name == slot else name

    body = tuple(type(s)(s.target, substitute(s.expr, fix)) for s in program.body)
    params = tuple(p for p in program.params if p not in program.state or p in state)
    return Program(params, body, tuple(substitute(e, fix) for e in returns))


def _dead_slot_reason(program: Program, slot: str) -> str:
    for statement in program.body:
        if Var(slot) in walk(statement.expr):
            return f"slot {slot} never reaches the update: removed with its statements"
        if statement.target == slot:
            return (
                f"slot {slot}: its old value is never read before it is overwritten, so it is "
                "a temporary, not state"
            )
    return f"slot {slot} is never read: removed with its statements"


def _fold(program: Program, target: str, steps: list[Step]) -> Program:
    """Constant sub-expressions folded (``1 - 0.9`` → ``0.1``), float noise removed."""
    folded: list[str] = []

    def fold(expr: Expr) -> Expr:
        if isinstance(expr, Const):
            return Const(symbolic.tidy(expr.value))
        if not isinstance(expr, Call):
            return expr
        args = tuple(fold(a) for a in expr.args)
        if all(isinstance(a, Const) for a in args) and not PRIMITIVES[expr.op].reduction:
            value = fold_constant(expr.op, [a.value for a in args])
            if math.isfinite(value):
                folded.append(f"{format_expr(expr)} → {format_constant(symbolic.tidy(value))}")
                return Const(symbolic.tidy(value))
        return make_call(expr.op, args)

    body = tuple(type(s)(s.target, fold(s.expr)) for s in program.body)
    result = Program(program.params, body, tuple(fold(e) for e in program.returns))
    if result == program:
        return program
    detail = ", ".join(dict.fromkeys(folded)) or "float noise removed from constants"
    return _verified("constant folding", detail, program, result, target, steps)


# ---------------------------------------------------------------------- symbolic (SymPy)


def _symbolic(program: Program, target: str, deadline: float, steps: list[Step]):
    """The best verified form SymPy finds before ``deadline``, and its math lines (``None``
    when the child did not get that far)."""
    items, finished, error = run_with_deadline(_symbolic_job, (program, target), deadline)
    best, math = program, None
    for kind, payload in items:
        if kind == "step":
            steps.append(payload)
        elif kind == "program" and functional_hash(payload) == target:  # verified here too
            best, math = payload, None
        elif kind == "math" and payload[0] == best:
            math = payload[1:]
    if error:
        steps.append(Step("symbolic", f"SymPy failed ({error}); kept the last verified form"))
    elif not finished:
        steps.append(
            Step("deadline", f"SymPy stopped after {deadline:g} s; kept the last verified form")
        )
    return best, math


def _symbolic_job(program: Program, target: str) -> Iterator[tuple[str, object]]:
    """Runs in the child: yields ``("step", Step)``, ``("program", P)`` for each verified
    improvement, and finally ``("math", (P, lines, latex))`` for the best ``P``.

    Tried in order: the outputs re-emitted as they are; every output in SymPy's form, then
    every output with common factors pulled out (outputs that share a sub-expression must
    change together to keep sharing it); then each output on its own in either form.
    """
    names = named_values(program)
    outputs = list(inline(program))
    labels = ["the update", *(f"state {s}" for s in program.state)]
    best = program
    emitted = emit(program.params, outputs, names)
    if _key(emitted) < _key(best) and _prints_back(emitted) and functional_hash(emitted) == target:
        best = emitted
        yield "program", best
    env = symbolic.symbols(program.params)
    memo: dict = {}
    forms: dict[str, list] = {"SymPy": [], "SymPy, common factors": []}
    for output in outputs:
        expr = symbolic.to_sympy(output, env, memo)
        forms["SymPy"].append(_converted(expr, env))
        forms["SymPy, common factors"].append(_converted(expr, env, symbolic.factored))
    every = "all outputs" if len(outputs) > 1 else labels[0]
    trials = [
        (how, every, [f[0] if f else o for f, o in zip(found, outputs, strict=True)], rules)
        for how, found in forms.items()
        for rules in [sorted({r for f in found if f for r in f[1]})]
    ]
    for how, found in forms.items():
        for i, form in enumerate(found):
            if form is not None:
                trials.append((how, labels[i], i, form[1]))
    tried = set()
    for how, label, change, rules in trials:
        if isinstance(change, int):  # one output, on top of the best so far
            change = [*outputs[:change], forms[how][change][0], *outputs[change + 1 :]]
        candidate = emit(program.params, change, names)
        if _key(candidate) >= _key(best) or candidate in tried or not _prints_back(candidate):
            continue
        tried.add(candidate)
        what = f"{label}: {operations(best)} → {operations(candidate)} operations"
        if len(candidate.body) != len(best.body):
            what += f", {len(best.body)} → {len(candidate.body)} statements"
        what += f" ({how}; {', '.join(rules)})" if rules else f" ({how})"
        if functional_hash(candidate) != target:
            yield "step", Step("symbolic", what, accepted=False)
            continue
        yield "step", Step("symbolic", what)
        outputs, best = change, candidate
        yield "program", best
    yield "math", (best, *symbolic.math_lines(best))


def _prints_back(program: Program) -> bool:
    """Whether ``program`` is valid text: it prints and parses back to itself (the parser's
    limits, such as how deeply an expression may nest, hold for it)."""
    try:
        return parse_program(format_program(program)) == program
    except ProgramError:
        return False


def _converted(expr, env, rewrite=None) -> tuple[Expr, list[str]] | None:
    """``expr`` (after ``rewrite``) back in primitives with the rules used; ``None`` when
    SymPy's form has no primitive spelling."""
    try:
        return symbolic.from_sympy(rewrite(expr) if rewrite else expr, env)
    except (symbolic.Unsupported, RecursionError):
        return None


def _key(program: Program) -> tuple[int, int, int]:
    """Smaller is simpler: operations, then statements, then characters."""
    return operations(program), len(program.body), len(format_program(program))


def _math(program: Program, seconds: float, steps: list[Step]) -> tuple[tuple[str, ...], str]:
    """Math lines by SymPy in ``seconds``, else written from the statements."""
    items, error = [], None
    if seconds > 0:
        items, _, error = run_with_deadline(_math_job, (program,), seconds)
    if items:
        return items[0]
    reason = f"failed ({error})" if error else "ran out of time"
    steps.append(Step("deadline", f"SymPy {reason}: math lines written from the statements"))
    return _plain_math(program)


def _math_job(program: Program) -> Iterator[tuple[tuple[str, ...], str]]:
    yield symbolic.math_lines(program)


def _plain_math(program: Program) -> tuple[tuple[str, ...], str]:
    """Math lines without SymPy: the statements themselves."""
    lines = [f"{s.target} = {format_expr(s.expr)}" for s in program.body]
    new_state = zip(program.state, program.returns[1:], strict=True)
    lines += [f"{s}_t = {format_expr(e)}" for s, e in new_state]
    lines.append(f"u_t = {format_expr(program.update)}")
    latex = "\\begin{aligned}\n" + " \\\\\n".join(
        rf"&\texttt{{{line.replace('_', chr(92) + '_')}}}" for line in lines
    )
    return tuple(lines), latex + "\n\\end{aligned}"


# ------------------------------------------------------------------------------- deadline


def run_with_deadline(
    job: Callable[..., Iterator], args: tuple, seconds: float
) -> tuple[list, bool, str | None]:
    """Run the generator ``job(*args)`` in a child process for at most ``seconds``.

    Returns ``(items, finished, error)``: what it yielded before the deadline, whether it ran
    to the end, and its exception (one line) if it raised. A child still running at the
    deadline is killed.
    """
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, job, args), daemon=True)
    end = time.monotonic() + seconds
    child.start()
    sender.close()
    items, finished, error = [], False, None
    try:
        while True:
            left = end - time.monotonic()
            if left <= 0 or not receiver.poll(left):
                break
            try:
                kind, payload = receiver.recv()
            except (EOFError, OSError):
                error = "the SymPy process died"
                break
            if kind == "item":
                items.append(payload)
            else:
                finished, error = kind == "done", payload
                break
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receiver.close()
    return items, finished, error


#: Recursion limit in the child: inlined programs are deep trees. The child is a separate
#: process, so even a stack overflow there only ends it (the parent keeps its last form).
CHILD_RECURSION_LIMIT = 20_000


def _child(sender, job, args) -> None:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), CHILD_RECURSION_LIMIT))
    try:
        for item in job(*args):
            sender.send(("item", item))
        sender.send(("done", None))
    except Exception as exc:  # reported to the parent as one line
        sender.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        sender.close()


# --------------------------------------------------------------------- approximate steps


def _approximate(program: Program, tolerance: float, steps: list[Step]) -> Program:
    """Drop terms, then round constants, while the updates stay within ``tolerance`` of
    ``program``'s on the probe and every input the update read is still read."""
    reference = recognition.probe_updates(program)
    inputs = update_dependencies(program)[0] & set(RESERVED_INPUTS)

    def deviation(candidate: Program) -> float:
        if not functional_hash_info(candidate).finite:
            return math.inf
        if not inputs <= update_dependencies(candidate)[0]:
            return math.inf
        return recognition.deviation(reference, recognition.probe_updates(candidate))

    current = program
    while True:  # drop the smallest term, as long as one fits
        options = []
        for site in sites(current, lambda _, node: isinstance(node, Call) and node.op in _SUMS):
            node = node_at(current, site)
            a, b = node.args
            drop_b = (a, b)
            drop_a = (b if node.op == "add" else make_call("neg", (b,)), a)
            for kept, dropped in (drop_b, drop_a):
                candidate = eliminate_dead_code(replace_at(current, site, kept))
                options.append((deviation(candidate), candidate, dropped))
        fits = [o for o in options if o[0] <= tolerance]
        if not fits:
            break
        dev, current, dropped = min(fits, key=lambda o: o[0])
        detail = f"dropped the term `{format_expr(dropped)}` (updates change by {dev:.2g})"
        steps.append(Step("dropped term", detail, exact=False, deviation=dev))
    for value in sorted(_constants(current), key=lambda v: -len(format_constant(v))):
        for short in _shorter(value):
            candidate = _replace_constant(current, value, short)
            dev = deviation(candidate)
            if dev <= tolerance:
                detail = (
                    f"{format_constant(value)} → {format_constant(short)} "
                    f"(updates change by {dev:.2g})"
                )
                steps.append(Step("rounded constant", detail, exact=False, deviation=dev))
                current = candidate
                break
    return current


_SUMS = ("add", "sub")


def _constants(program: Program) -> set[float]:
    exprs = [s.expr for s in program.body] + list(program.returns)
    return {n.value for e in exprs for n in walk(e) if isinstance(n, Const)}


def _shorter(value: float) -> list[float]:
    """Shorter decimals near ``value``, shortest first: 0.899 → 0.9; 0.996991 → 0.997, 1."""
    text = format_constant(value)
    found = set()
    for digits in range(1, 16):
        found.add(float(f"{value:.{digits}g}"))
        if 0.5 < value < 1:  # β-like: round 1 - β (0.996991 → 1 - 0.003 = 0.997)
            found.add(symbolic.tidy(1 - float(f"{1 - value:.{digits}g}")))
    shorter = [v for v in found if v != 0 and len(format_constant(v)) < len(text)]
    return sorted(shorter, key=lambda v: (len(format_constant(v)), abs(v - value)))


def _replace_constant(program: Program, old: float, new: float) -> Program:
    def fix(expr: Expr) -> Expr:
        if isinstance(expr, Const):
            return Const(new) if expr.value == old else expr
        if isinstance(expr, Call):
            return make_call(expr.op, tuple(fix(a) for a in expr.args))
        return expr

    body = tuple(type(s)(s.target, fix(s.expr)) for s in program.body)
    return Program(program.params, body, tuple(fix(e) for e in program.returns))
