"""The multi-tensor form of a program: what exported optimizers run.

A program says how to update one tensor. An optimizer applies it to every parameter, and doing
that one tensor and one torch call per primitive at a time costs far more than the arithmetic.
:func:`lower` turns a program into a :class:`Plan`: straight-line steps over *lists* of tensors
(the parameters of one device, dtype and step count), written the way torch.optim's ``foreach``
implementations are (``torch/optim/adamw.py: _multi_tensor_adamw``):

* one ``torch._foreach_*`` call per operation for all the tensors; an operation that has none
  (``relu``, ``arcsinh``, ``clip`` by a tensor, the reductions) runs tensor by tensor;
* numbers — whatever is computed from ``lr``, ``t``, constants and the *named constants* (the
  numbers an exported optimizer takes as arguments, ``beta1``, ``eps``, …) — are Python floats,
  computed once per step; sub-expressions of unnamed constants are folded when the plan is made;
* a sum of scaled terms (``a + c*b``, ``interp``, ``x / n``, ``c*x*y``, ``c*x/y``) is accumulated
  with ``mul_``, ``add_(alpha=c)``, ``addcmul_(value=c)`` and ``addcdiv_(value=c)``, in place in a
  buffer whose value is no longer needed (a state slot being replaced, a temporary);
* the update is applied in place: each term of ``w - update`` is one ``add_``/``addcmul_``/
  ``addcdiv_`` into the parameters, and a term ``c*w`` becomes ``w.mul_(1 - c)`` (decoupled
  weight decay, as torch.optim.AdamW applies it).

Exactness: in real arithmetic the plan computes the program. In floating point it differs from
the interpreter by rounding (a fused multiply-add, a factor applied at another point), as
torch.optim's single-tensor, foreach and fused AdamW differ from one another; where a value is
already non-finite the IEEE results may differ too (``inf`` where the interpreter has NaN).

A plan runs in two ways, making the same torch calls with the same arguments, so that they agree
bit for bit: :meth:`Plan.run` (the class of :func:`evodisc.to_torch_optimizer`) and
:meth:`Plan.source` (the ``_update`` function of :func:`evodisc.torch_source`).
"""

from __future__ import annotations

import operator
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import torch

from evodisc.analysis import live_statements
from evodisc.primitives import PRIMITIVES, fold_constant
from evodisc.program import Call, Const, Expr, Program, Var, format_expr, walk

#: Kinds of list values: one 0-dim tensor per parameter (a reduction), or full tensors.
SCALARS, TENSORS = 1, 2
#: Names the generated module (or ``_update``) uses itself: program names that clash get a ``_``.
#: (The export helpers — ``_clip``, ``_norm``, … — are the ``helper`` sources of the primitives.)
HELPER_NAMES = frozenset(
    re.match(r"def (\w+)", p.helper).group(1) for p in PRIMITIVES.values() if p.helper
)
RESERVED_NAMES = HELPER_NAMES | {"torch", "float", "abs", "zip", "_update", "_a", "_b"}

# Unary primitives with a ``torch._foreach_<name>`` form (torch's name where it differs).
_FOREACH_UNARY = {
    **{n: n for n in ("abs", "sign", "sqrt", "exp", "log", "sin", "cos", "tan")},
    **{n: n for n in ("sinh", "cosh", "tanh", "sigmoid")},
    **{"reciprocal": "reciprocal", "arcsin": "asin", "arccos": "acos", "arctan": "atan"},
}


# ------------------------------------------------------------------------------------ numbers
# A number is an expression (program IR) over constants, ``lr``, ``t``, named constants and named
# numbers. It is evaluated with Python arithmetic where that cannot raise (``lr / t``,
# ``0.9 ** t``) and otherwise on a float64 tensor, as the interpreter does (``1 / (t - t)`` is
# inf, not an error). A *named constant* (``beta1``: a number of the rule that the optimizer takes
# as an argument) is judged by its default; a decision that relies on it records the interval the
# constant must stay in (``beta1`` in [0, 1) for ``lr / (1 - beta1 ** t)``), which the optimizer
# checks.

#: ``(low, high, brackets)``: ``(0.0, 1.0, "[)")`` is ``0 <= x < 1``.
Interval = tuple[float, float, str]
#: The intervals that a decision relies on, by named constant (None: no decision).
Assumptions = tuple[tuple[str, Interval], ...] | None

_INF = float("inf")


def _contains(interval: Interval, value: float) -> bool:
    low, high, brackets = interval
    above = value >= low if brackets[0] == "[" else value > low
    return above and (value <= high if brackets[1] == "]" else value < high)


def _intersect(a: Interval, b: Interval) -> Interval:
    (low_a, high_a, br_a), (low_b, high_b, br_b) = a, b
    low, left = max((low_a, br_a[0] == "("), (low_b, br_b[0] == "("))
    high, right = min((high_a, br_a[1] == "]"), (high_b, br_b[1] == "]"))
    return low, high, ("(" if left else "[") + ("]" if right else ")")


def _all(*parts: Assumptions) -> Assumptions:
    if any(part is None for part in parts):
        return None
    return tuple(a for part in parts for a in part)


def _within(expr: Expr, interval: Interval, constants: dict[str, float]) -> Assumptions:
    """``expr`` is a constant in ``interval``, or a named constant whose default is (and which is
    then assumed to stay there)."""
    if isinstance(expr, Const):
        return () if _contains(interval, expr.value) else None
    if isinstance(expr, Var) and expr.name in constants:
        return ((expr.name, interval),) if _contains(interval, constants[expr.name]) else None
    return None


def _either(expr: Expr, a: Interval, b: Interval, constants: dict[str, float]) -> Assumptions:
    found = _within(expr, a, constants)
    return found if found is not None else _within(expr, b, constants)


def _is_step(expr: Expr) -> bool:
    return expr == Var("t")


def _nonzero(expr: Expr, constants: dict[str, float]) -> Assumptions:
    """``expr`` cannot be 0: a non-zero constant, ``t``, ``c - b ** t`` or ``c - b`` (c ≥ 1,
    0 ≤ b < 1: a bias correction), and products of such factors that cannot underflow."""
    if _is_step(expr):
        return ()
    if not isinstance(expr, Call):
        return _either(expr, (0.0, _INF, "()"), (-_INF, 0.0, "()"), constants)
    if expr.op == "mul":
        factors = []
        for a in expr.args:
            if isinstance(a, Const) or (isinstance(a, Var) and a.name in constants):
                factors.append(_either(a, (1e-150, _INF, "[)"), (-_INF, -1e-150, "(]"), constants))
            else:
                factors.append(_nonzero(a, constants))
        return _all(*factors)
    if expr.op != "sub":
        return None
    c, power = expr.args
    base = power
    if isinstance(power, Call) and power.op == "pow":
        base, exponent = power.args
        if not (_is_step(exponent) or exponent == Const(1.0)):
            return None
    return _all(
        _within(c, (1.0, _INF, "[)"), constants), _within(base, (0.0, 1.0, "[)"), constants)
    )


def _nonnegative(expr: Expr, constants: dict[str, float]) -> Assumptions:
    """``expr`` is ≥ 0 for sure: built from ``t``, (named) constants ≥ 0, ``+`` and ``*``."""
    if _is_step(expr):
        return ()
    if not isinstance(expr, Call):
        return _within(expr, (0.0, _INF, "[)"), constants)
    if expr.op in ("add", "mul"):
        return _all(*[_nonnegative(a, constants) for a in expr.args])
    return None


def _python_safe(expr: Call, constants: dict[str, float]) -> Assumptions:
    """Python arithmetic computes ``expr`` with IEEE results and never raises (given these
    assumptions on the named constants)."""
    if expr.op in ("add", "sub", "mul", "neg", "abs"):
        return ()
    if expr.op == "div":
        return _nonzero(expr.args[1], constants)
    if expr.op == "pow":
        base, exponent = expr.args
        return _all(_within(base, (0.0, 1.0, "[]"), constants), _nonnegative(exponent, constants))
    return None


def number_assumptions(exprs: Iterable[Expr], constants: dict[str, float]) -> dict[str, Interval]:
    """The interval each named constant must stay in for :func:`number_function` (and
    :func:`number_source`) to compute ``exprs`` with Python arithmetic where they do."""
    out: dict[str, Interval] = {}
    for node in (node for expr in exprs for node in walk(expr)):
        for name, interval in (isinstance(node, Call) and _python_safe(node, constants)) or ():
            out[name] = _intersect(out[name], interval) if name in out else interval
    return out


_PYTHON_OPS = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "pow": operator.pow,
    "neg": operator.neg,
    "abs": abs,
}
_PREC_ADD, _PREC_MUL, _PREC_UNARY, _PREC_POW, _PREC_ATOM = 1, 2, 3, 4, 5
_INFIX = {"add": ("+", _PREC_ADD), "sub": ("-", _PREC_ADD), "mul": ("*", _PREC_MUL)}
_INFIX["div"] = ("/", _PREC_MUL)


def _float64(x):
    return torch.tensor(x, dtype=torch.float64)


def number_function(expr: Expr, constants: dict[str, float]) -> Callable[[dict], float]:
    """``expr`` as a function of the number registers (``{"lr": …, "t": …, …}``); it computes
    exactly what :func:`number_source` writes. ``constants``: the named constants' defaults."""
    if isinstance(expr, Const):
        value = expr.value
        return lambda env: value
    if isinstance(expr, Var):
        return operator.itemgetter(expr.name)
    args = [number_function(a, constants) for a in expr.args]
    op = expr.op
    if _python_safe(expr, constants) is not None:
        fn = _PYTHON_OPS[op]
        if len(args) == 1:
            (a,) = args
            return lambda env: fn(a(env))
        a, b = args
        return lambda env: fn(a(env), b(env))
    if op in ("div", "pow"):  # a float64 tensor on the left: IEEE results
        fn = _PYTHON_OPS[op]
        a, b = args
        return lambda env: float(fn(_float64(a(env)), b(env)))
    fn = PRIMITIVES[op].torch
    return lambda env: float(fn(*[_float64(a(env)) for a in args]))


def number_source(expr: Expr, constants: dict[str, float]) -> str:
    """Python source of ``expr`` (minimal parentheses), computing what
    :func:`number_function` computes."""
    return _number_source(expr, constants)[0]


def _number_source(expr: Expr, constants: dict[str, float]) -> tuple[str, int]:
    """Source text and its precedence."""
    if isinstance(expr, Const):
        v = expr.value
        if v != v or v in (float("inf"), float("-inf")):
            return f'float("{v}")', _PREC_ATOM  # float("nan"), float("-inf")
        text = format_expr(expr)
        return text, _PREC_UNARY if v < 0 or text.startswith("-") else _PREC_ATOM
    if isinstance(expr, Var):
        return expr.name, _PREC_ATOM

    def sub(e: Expr, minimum: int) -> str:
        text, prec = _number_source(e, constants)
        return f"({text})" if prec < minimum else text

    def tensor(e: Expr) -> str:
        return f"torch.tensor({number_source(e, constants)}, dtype=torch.float64)"

    op = expr.op
    if _python_safe(expr, constants) is not None:
        if op in _INFIX:
            symbol, prec = _INFIX[op]
            return f"{sub(expr.args[0], prec)} {symbol} {sub(expr.args[1], prec + 1)}", prec
        if op == "neg":
            return f"-{sub(expr.args[0], _PREC_UNARY)}", _PREC_UNARY
        if op == "pow":
            return f"{sub(expr.args[0], _PREC_ATOM)} ** {sub(expr.args[1], _PREC_UNARY)}", _PREC_POW
        return f"abs({number_source(expr.args[0], constants)})", _PREC_ATOM
    if op in ("div", "pow"):
        symbol = "/" if op == "div" else "**"
        right = sub(expr.args[1], _PREC_ATOM if op == "div" else _PREC_UNARY)
        return f"float({tensor(expr.args[0])} {symbol} {right})", _PREC_ATOM
    return f"float({PRIMITIVES[op].source.format(*map(tensor, expr.args))})", _PREC_ATOM


def _number(op: str, args: Sequence[Expr]) -> Expr:
    """``op(args)`` on numbers: folded when every argument is a constant (as the interpreter
    folds), written with plain arithmetic where the primitive is arithmetic."""
    if op == "square":
        return _number("mul", [args[0], args[0]])
    if op == "cube":
        return _number("mul", [_number("mul", [args[0], args[0]]), args[0]])
    if op == "reciprocal":
        return _number("div", [Const(1.0), args[0]])
    if op == "interp":
        a, b, beta = args
        left = _number("mul", [_number("sub", [Const(1.0), beta]), a])
        return _number("add", [left, _number("mul", [beta, b])])
    if PRIMITIVES[op].reduction:  # of a number: its limit with nothing to reduce
        return args[0] if op == "mean" else _number("abs", args)
    if all(isinstance(a, Const) for a in args):
        if op == "abs":
            return Const(abs(args[0].value))
        return Const(fold_constant(op, [a.value for a in args]))
    # Exact identities only (IEEE results unchanged), for shorter source: 1·x, -1·x, x/1,
    # --x, (-a) + b = b - a, a + (-b) = a - b.
    if op == "mul" and Const(1.0) in args:
        return args[1] if args[0] == Const(1.0) else args[0]
    if op == "mul" and Const(-1.0) in args:
        return _number("neg", [args[1] if args[0] == Const(-1.0) else args[0]])
    if op == "div" and args[1] == Const(1.0):
        return args[0]
    if op == "neg" and isinstance(args[0], Call) and args[0].op == "neg":
        return args[0].args[0]
    negated = [isinstance(a, Call) and a.op == "neg" for a in args]
    if op == "add" and negated[1]:
        return _number("sub", [args[0], args[1].args[0]])
    if op == "add" and negated[0]:
        return _number("sub", [args[1], args[0].args[0]])
    return Call(op, tuple(args))


# --------------------------------------------------------------------------------- the plan


class Step(NamedTuple):
    """``out = fn(*args)`` (``out`` is None for a call that works in place)."""

    out: str | None
    fn: Callable
    args: tuple[str | Expr, ...]  # register names, or number expressions
    text: str  # source, a format string over the argument texts
    statement: int  # the program statement it belongs to (len(body): the return)


@dataclass(frozen=True)
class Plan:
    """A program lowered to multi-tensor steps (see the module docstring)."""

    program: Program
    idents: dict[str, str]  # program name -> identifier in the generated source
    steps: tuple[Step, ...]
    outputs: tuple[str, ...]  # the registers holding the new state slots
    names: dict[str, str]  # register -> its name in the source (a program variable it holds)
    constants: dict[str, float]  # the named constants (numbers ``_update`` takes) and defaults

    def __post_init__(self):
        getters = []
        for step in self.steps:
            args = [
                operator.itemgetter(a) if isinstance(a, str) else number_function(a, self.constants)
                for a in step.args
            ]
            getters.append((step.out, step.fn, args))
        object.__setattr__(self, "_compiled", tuple(getters))

    @cached_property
    def parameters(self) -> tuple[str, ...]:
        """``_update``'s parameters: ``w, g, lr, t``, the named constants, the state slots."""
        return ("w", "g", "lr", "t", *self.constants, *self.slots)

    @property
    def slots(self) -> tuple[str, ...]:
        """The state slots' identifiers, in program order (``_update``'s trailing parameters)."""
        return tuple(self.idents[s] for s in self.program.state)

    def assumptions(self) -> dict[str, Interval]:
        """The interval each named constant must stay in for the plan to compute the rule (its
        Python arithmetic must not raise); the defaults are in them."""
        numbers = [arg for step in self.steps for arg in step.args if not isinstance(arg, str)]
        found = number_assumptions(numbers, self.constants)
        return {name: found[name] for name in self.constants if name in found}

    def run(self, *args) -> tuple[list, ...]:
        """``_update(w, g, lr, t, <constants>, <slots>)``: one step for the parameters ``w`` (a
        list: one device, dtype and step ``t``) with gradients ``g``; updates ``w`` and the state
        tensors in place and returns the new state lists."""
        env = dict(zip(self.parameters, args, strict=True))
        for out, fn, getters in self._compiled:
            value = fn(*[get(env) for get in getters])
            if out is not None:
                env[out] = value
        return tuple(env[r] for r in self.outputs)

    def source(self) -> list[str]:
        """The body of ``_update(w, g, lr, t, <constants>, <slots>)``: the plan as lines of
        Python, each block under a comment with the program statement it comes from."""
        program = self.program
        body = live_statements(program.body, program.returns)
        comments = [f"# {s.target} = {format_expr(s.expr)}" for s in body]
        comments.append(f"# return {', '.join(format_expr(e) for e in program.returns)}")
        names = self.names
        taken = {*self.parameters, *self.idents.values(), *names.values()}
        taken |= {s.out for s in self.steps if s.out}
        numbers = (f"num{i}" for i in range(1, 1000) if f"num{i}" not in taken)
        lines: list[str] = []
        shown = 0
        for step in self.steps:
            while shown <= step.statement:
                lines.append(comments[shown])
                shown += 1
            texts = []
            for arg in step.args:
                if isinstance(arg, str):
                    texts.append(names.get(arg, arg))
                    continue
                text = number_source(arg, self.constants)
                if len(text) > 40 and step.text != "{0}":  # a long number: a line of its own
                    name = next(numbers)
                    lines.append(f"{name} = {text}")
                    text = name
                texts.append(text)
            call = step.text.format(*texts)
            lines.append(f"{names.get(step.out, step.out)} = {call}" if step.out else call)
        lines.extend(comments[shown:])
        outputs = [names.get(r, r) for r in self.outputs]
        listed = "".join(f"{r}, " for r in outputs)
        lines.append(f"return ({listed.rstrip(' ') if len(outputs) == 1 else listed[:-2]})")
        return lines

    def helpers(self) -> set[str]:
        """The export helpers (``_clip``, ``_norm``, …) the source calls, in its steps or in
        the numbers they take (``_clip(lr, t)``)."""
        texts = [step.text for step in self.steps]
        texts += [
            number_source(arg, self.constants)
            for step in self.steps
            for arg in step.args
            if not isinstance(arg, str)
        ]
        return {name for text in texts for name in re.findall(r"\b(_[a-z]+)\(", text)}


# ------------------------------------------------------------------------------------ lowering


def _norm_one(x):
    return torch.sqrt(torch.sum(x * x))


def _rms_one(x):
    return torch.sqrt(torch.mean(x * x))


#: A reduction of one whole tensor, as the export helpers (``_norm`` …) compute it: 0-dim.
_REDUCTIONS = {"norm": _norm_one, "rms": _rms_one, "mean": torch.mean}


class _Term(NamedTuple):
    """``c * a`` (op ""), ``c * a * b`` ("mul") or ``c * a / b`` ("div"), where the number
    ``c = num / den`` (either None: 1)."""

    num: Expr | None
    den: Expr | None
    a: str
    op: str = ""
    b: str | None = None

    def registers(self) -> tuple[str, ...]:
        return (self.a,) if self.b is None else (self.a, self.b)

    def scaled(self, num: Expr | None = None, den: Expr | None = None) -> _Term:
        return self._replace(num=_times(self.num, num), den=_times(self.den, den))

    def plain(self) -> bool:
        return self.op == "" and self.num is None and self.den is None


def _times(a: Expr | None, b: Expr | None) -> Expr | None:
    if a is None or b is None:
        return a if b is None else b
    return _number("mul", [a, b])


def _plus(a: Expr | None, b: Expr | None) -> Expr | None:
    if a is None or b is None:
        return a if b is None else b
    return _number("add", [a, b])


def _coef(num: Expr | None, den: Expr | None) -> Expr | None:
    """The number ``num / den`` (None when it is 1)."""
    if den is None:
        return num
    return _number("div", [Const(1.0) if num is None else num, den])


@dataclass(frozen=True)
class _Num:
    expr: Expr


@dataclass(frozen=True)
class _Lin:
    """A list value kept as a sum of scaled terms (plus a number) until something needs it
    in a buffer."""

    terms: tuple[_Term, ...]
    const: Expr | None = None

    def registers(self) -> list[str]:
        return [r for t in self.terms for r in t.registers()]

    def scaled_register(self) -> bool:
        """One register times a number: any reader can fold the number into its own call."""
        return self.const is None and len(self.terms) == 1 and self.terms[0].op == ""

    def plain(self) -> bool:
        return self.scaled_register() and self.terms[0].plain()


_Value = _Num | _Lin


def _reg(name: str) -> _Lin:
    return _Lin((_Term(None, None, name),))


def _use_counts(program: Program, body) -> Counter:
    """How often each definition (a parameter by name, statement ``i``'s target by ``i``) is
    read."""
    current: dict[str, object] = {p: p for p in program.params}
    counts: Counter = Counter()

    def count(expr: Expr) -> None:
        for node in walk(expr):
            if isinstance(node, Var):
                counts[current[node.name]] += 1

    for i, statement in enumerate(body):
        count(statement.expr)
        current[statement.target] = i
    for expr in program.returns:
        count(expr)
    return counts


def default_idents(program: Program, reserved: frozenset[str] = frozenset()) -> dict[str, str]:
    """Program name -> identifier: the name, with a trailing ``_`` where it is reserved (by the
    generated code, or in ``reserved``)."""
    reserved = RESERVED_NAMES | reserved
    names = set(program.params) | {s.target for s in program.body}
    taken = names | reserved
    idents = {}
    for name in sorted(names):
        ident = name
        if name in reserved:
            while ident in taken:
                ident += "_"
            taken.add(ident)
        idents[name] = ident
    return idents


def lower(program: Program, constants: dict[str, float] | None = None) -> Plan:
    """The multi-tensor plan of ``program``. ``constants`` names numbers of the program (name ->
    value): they become parameters of the plan (``beta1`` for each 0.9), not folded, and
    program names that clash with them get a ``_``."""
    constants = dict(constants or {})
    idents = default_idents(program, frozenset(constants))
    return _Lowering(program, idents, constants).plan()


class _Lowering:
    """Lowers one program. Values are numbers or sums of scaled list registers (``_Lin``);
    ``refs`` counts the pending reads of each register, so that a register read for the last
    time by an operation can be overwritten by it (``owned``: not ``w``, ``g`` or a buffer
    already handed back as a state slot)."""

    def __init__(self, program: Program, idents: dict[str, str], constants: dict[str, float]):
        self.program, self.idents, self.constants = program, idents, constants
        self.named_constants = {value: Var(name) for name, value in constants.items()}
        self.body = live_statements(program.body, program.returns)
        self.uses = _use_counts(program, self.body)
        self.steps: list[Step] = []
        self.statement = 0
        self.taken = set(idents.values()) | RESERVED_NAMES | {"w", "g", "lr", "t", *constants}
        self.named = {idents[p] for p in program.params}  # program identifiers in use
        self.temps: set[str] = set()  # registers not named after a program variable (yet)
        self.names: dict[str, str] = {}  # temporary register -> the program variable it holds
        self.kind: dict[str, int] = {"w": TENSORS, "g": TENSORS}
        self.owned: dict[str, bool] = {"w": False, "g": False}
        self.refs: Counter = Counter()
        self.env: dict[str, _Value] = {}
        for p in program.params:
            if p in ("lr", "t"):
                self.env[p] = _Num(Var(p))
                continue
            if p not in ("w", "g"):
                self.kind[idents[p]], self.owned[idents[p]] = TENSORS, True
            self.env[p] = _reg(p if p in ("w", "g") else idents[p])
            self.hold(self.env[p], self.uses[p])

    # ---------------------------------------------------------------------------- the result

    def plan(self) -> Plan:
        for i, statement in enumerate(self.body):
            self.statement = i
            self.bind(statement.target, self.lower(statement.expr), self.uses[i])
        self.statement = len(self.body)
        update = self.lower(self.program.update)
        slots = [self.lower(e) for e in self.program.returns[1:]]
        reads_w = update.registers().count("w") if isinstance(update, _Lin) else 0
        update_first = self.refs["w"] == reads_w  # nothing else reads w: frees its inputs
        if update_first:
            self.apply_update(update)
        outputs = [self.hand_back(s, v) for s, v in zip(self.program.state, slots, strict=True)]
        if not update_first:
            self.apply_update(update)
        steps, names = tuple(self.steps), dict(self.names)
        return Plan(self.program, dict(self.idents), steps, tuple(outputs), names, self.constants)

    def bind(self, target: str, value: _Value, uses: int) -> None:
        """``target = value``, read ``uses`` times from now on."""
        name = self.name_for(target)
        if isinstance(value, _Num):
            if uses > 1 and isinstance(value.expr, Call):  # computed once, by name
                self.emit(name, _identity, [value.expr], "{0}")
                value = _Num(Var(name))
        else:
            if uses > 1 and not value.scaled_register():  # read twice: into a buffer
                value = _Lin((self.single(value, name),))
            reg = value.terms[0].a
            if value.plain() and reg in self.temps:  # in the source, it goes by this name
                self.names[reg] = name
                self.temps.discard(reg)
            self.hold(value, uses - 1)
        self.env[target] = value

    def hand_back(self, slot: str, value: _Value) -> str:
        """A register holding the slot's new value that no other slot, ``w`` or ``g`` shares;
        preferably the slot's own buffer."""
        own = self.idents[slot]
        if isinstance(value, _Num):
            out = self.new(own, TENSORS)
            text = "[torch.full_like(_a, {1}) for _a in {0}]"
            self.emit(out, _full_like, ["w", value.expr], text)
        elif value.plain():
            reg = value.terms[0].a
            self.refs[reg] -= 1
            if self.kind[reg] == SCALARS:
                out = self.expand(own, reg)
            elif self.owned[reg] and self.refs[reg] == 0:
                out = reg
            elif self.owned[own] and self.refs[own] == 0:
                self.call("_foreach_copy_", [own, reg])
                out = own
            else:
                out = self.new(own, TENSORS)
                text = "[_a.clone(memory_format=torch.preserve_format) for _a in {0}]"
                self.emit(out, _clone, [reg], text)
        else:
            kind = self.kind_of(value.registers())
            out = self.materialise(value, own)
            self.refs[out] -= 1
            if kind == SCALARS:
                out = self.expand(own, out)
        self.owned[out] = False  # handed back: nothing may write it any more
        return out

    def expand(self, own: str, reg: str) -> str:
        """Scalars (one per tensor) as tensors shaped like the parameters."""
        out = self.new(own, TENSORS)
        text = "[torch.empty_like(_a).copy_(_b) for _a, _b in zip({0}, {1})]"
        self.emit(out, _expand, ["w", reg], text)
        return out

    def apply_update(self, value: _Value) -> None:
        """``w ← w - value``, in place."""
        if isinstance(value, _Num):
            self.call("_foreach_sub_", ["w", value.expr])
            return
        if any(t.op != "" and "w" in t.registers() for t in value.terms) or (
            self.kind_of(value.registers()) == SCALARS
        ):
            reg = self.materialise(value, "update")  # a product reads w: sum first
            self.refs[reg] -= 1
            self.call("_foreach_sub_", ["w", reg])
            return
        for reg in value.registers():
            self.refs[reg] -= 1
        rates = [_coef(t.num, t.den) or Const(1.0) for t in value.terms if t.a == "w"]
        if rates:  # w - c·w - … = (1 - c)·w - …: weight decay as torch.optim.AdamW applies it
            rate = rates[0]
            for other in rates[1:]:
                rate = _number("add", [rate, other])
            self.call("_foreach_mul_", ["w", _number("sub", [Const(1.0), rate])])
        for term in value.terms:
            if term.a != "w":
                self.add_term("w", term, negate=True)
        if value.const is not None:
            self.call("_foreach_sub_", ["w", value.const])

    # ------------------------------------------------------------------ registers and calls

    def hold(self, value: _Value, count: int) -> None:
        if isinstance(value, _Lin):
            for reg in value.registers():
                self.refs[reg] += count

    def fresh(self, hint: str) -> str:
        name, n = hint, 1
        while name in self.taken:
            n += 1
            name = f"{hint}{n}"
        self.taken.add(name)
        return name

    def name_for(self, target: str) -> str:
        """A register name for a value of program variable ``target``: its own identifier the
        first time (temporaries never take program names), else a fresh one."""
        ident = self.idents[target]
        if ident in self.named:
            return self.fresh(ident)
        self.named.add(ident)
        return ident

    def new(self, hint: str, kind: int) -> str:
        reg = self.fresh(hint)
        self.kind[reg], self.owned[reg], self.refs[reg] = kind, True, 1
        if hint == "tmp":
            self.temps.add(reg)
        return reg

    def kind_of(self, regs: Sequence[str]) -> int:
        return TENSORS if any(self.kind[r] == TENSORS for r in regs) else SCALARS

    def dies(self, reg: str, reads: Sequence[str], kind: int) -> bool:
        """Whether an operation that reads ``reads`` (registers) may write its result, of
        ``kind``, into ``reg``: this is the last read of ``reg``, and it is ours."""
        return self.owned[reg] and self.refs[reg] == reads.count(reg) and self.kind[reg] == kind

    def emit(self, out: str | None, fn: Callable, args: Sequence, text: str) -> None:
        self.steps.append(Step(out, fn, tuple(args), text, self.statement))

    def call(self, name: str, args: Sequence, keywords: Sequence[str] = (), out=None) -> None:
        """Emit ``torch.<name>(*args)``, the last ``len(keywords)`` arguments by keyword."""
        fn = getattr(torch, name)
        if keywords:
            fn = _with_keywords(fn, tuple(keywords))
        slots = [f"{{{i}}}" for i in range(len(args))]
        split = len(args) - len(keywords)
        named = [f"{k}={s}" for k, s in zip(keywords, slots[split:], strict=True)]
        self.emit(out, fn, args, f"torch.{name}({', '.join(slots[:split] + named)})")

    def foreach(self, name: str, args: Sequence, keywords=()) -> str:
        """``torch._foreach_<name>(*args)`` (registers and numbers): in place in ``args[0]``
        when its value dies here, else into a new register."""
        regs = [a for a in args if isinstance(a, str)]
        kind = self.kind_of(regs)
        here = isinstance(args[0], str) and self.dies(args[0], regs, kind)
        for reg in regs:
            self.refs[reg] -= 1
        if here:
            self.call(f"_foreach_{name}_", args, keywords)
            self.refs[args[0]] = 1
            return args[0]
        out = self.new("tmp", kind)
        self.call(f"_foreach_{name}", args, keywords, out=out)
        return out

    def per_tensor(self, op: str, args: Sequence) -> str:
        """Primitive ``op`` tensor by tensor (it has no foreach form): a list comprehension.
        Numbers become float64 scalars on the tensor's device, as in the interpreter."""
        prim = PRIMITIVES[op]
        lists = [i for i, a in enumerate(args) if isinstance(a, str)]
        kind = SCALARS if prim.reduction else self.kind_of([args[i] for i in lists])
        for i in lists:
            self.refs[args[i]] -= 1
        out = self.new("tmp", kind)
        element_names = dict(zip(lists, ["_a", "_b"], strict=False))
        parts = [
            element_names.get(i, f"torch.full((), {{{i}}}, dtype=torch.float64, device=_a.device)")
            for i in range(len(args))
        ]
        if prim.reduction:  # the export helper: a 0-dim tensor
            element, one = f"{prim.source.split('(', 1)[0]}({parts[0]})", _REDUCTIONS[op]
        else:
            element, one = prim.source.format(*parts), prim.torch
        sources = ", ".join(f"{{{i}}}" for i in lists)
        loop = f"_a in {sources}" if len(lists) == 1 else f"_a, _b in zip({sources})"
        self.emit(out, _per_tensor(one, lists), args, f"[{element} for {loop}]")
        return out

    # ----------------------------------------------------------------------- sums of terms

    def materialise(self, value: _Lin, hint: str = "tmp") -> str:
        """A register holding ``value`` (its pending read passes on to the register)."""
        if value.plain():
            return value.terms[0].a
        terms = list(value.terms)
        regs = value.registers()
        kind = self.kind_of(regs)
        place = self.in_place_term(terms, regs, kind)
        for reg in regs:
            self.refs[reg] -= 1
        const = value.const
        if place is not None:  # computed in a buffer whose value dies here
            i, out = place
            first = terms.pop(i)
            if first.op:
                other = first.b if out == first.a else first.a
                self.call(f"_foreach_{first.op}_", [out, other])
            self.scale(out, first.num, first.den)
        else:
            first = terms.pop(self.first_term(terms))
            out = self.new(hint, kind)
            coef = _coef(first.num, first.den)
            if first.op == "" and coef is None and terms:  # a + (the next term): one call
                self.add_term(first.a, terms.pop(0), out=out)
            elif first.op == "" and coef is None:  # a + const: one call
                self.call("_foreach_add", [first.a, const], out=out)
                const = None
            elif first.op == "" and first.num is None:
                self.call("_foreach_div", [first.a, first.den], out=out)
            elif first.op == "":
                self.call("_foreach_mul", [first.a, coef], out=out)
            else:
                self.call(f"_foreach_{first.op}", [first.a, first.b], out=out)
                self.scale(out, first.num, first.den)
        for term in terms:
            self.add_term(out, term)
        if const is not None:
            self.call("_foreach_add_", [out, const])
        self.refs[out] = 1
        return out

    def in_place_term(self, terms: list[_Term], regs: list[str], kind: int):
        """``(i, register)``: a term whose register dies here and is read by no other term, so
        that the sum can be computed in it; plain terms first (they may cost no call)."""
        for ops in (("",), ("mul", "div")):
            for i, t in enumerate(terms):
                candidates = (t.a, t.b) if t.op == "mul" else (t.a,)
                for reg in candidates if t.op in ops else ():
                    mine = t.registers().count(reg)
                    if regs.count(reg) == mine and self.dies(reg, regs, kind):
                        return i, reg
        return None

    def first_term(self, terms: list[_Term]) -> int:
        """The term that starts a new buffer: a full-sized one, preferably a state slot or a
        temporary (``m * 0.9 + g * 0.1``: torch.optim's order); else the first."""

        def full(t: _Term) -> bool:
            return any(self.kind[r] == TENSORS for r in t.registers())

        for test in (lambda t: full(t) and t.op == "" and self.owned[t.a], full):
            for i, t in enumerate(terms):
                if test(t):
                    return i
        return 0

    def scale(self, reg: str, num: Expr | None, den: Expr | None) -> None:
        """``reg *= num / den`` in place (a division when ``num`` is 1)."""
        if num is None and den is not None:
            self.call("_foreach_div_", [reg, den])
        elif num is not None:
            self.call("_foreach_mul_", [reg, _coef(num, den)])

    def add_term(self, acc: str, term: _Term, negate: bool = False, out: str | None = None):
        """``acc += term`` (``-=`` when ``negate``) in place, or ``out = acc + term``."""
        coef = _coef(term.num, term.den)
        if negate:
            coef = Const(-1.0) if coef is None else _number("neg", [coef])
        suffix = "" if out else "_"
        if term.op == "":
            if coef is None:
                self.call(f"_foreach_add{suffix}", [acc, term.a], out=out)
            elif coef == Const(-1.0):
                self.call(f"_foreach_sub{suffix}", [acc, term.a], out=out)
            else:
                self.call(f"_foreach_add{suffix}", [acc, term.a, coef], ["alpha"], out=out)
            return
        name = f"_foreach_addc{term.op}{suffix}"
        if coef is None:
            self.call(name, [acc, term.a, term.b], out=out)
        else:
            self.call(name, [acc, term.a, term.b, coef], ["value"], out=out)

    # ------------------------------------------------------------------------- operations

    def lower(self, expr: Expr) -> _Value:
        if isinstance(expr, Var):
            return self.env[expr.name]
        if isinstance(expr, Const):
            return _Num(self.named_constants.get(expr.value, expr))
        return self.apply(expr.op, [self.lower(a) for a in expr.args])

    def apply(self, op: str, args: list[_Value]) -> _Value:
        if all(isinstance(a, _Num) for a in args):
            return _Num(_number(op, [a.expr for a in args]))
        special = {
            "interp": self._interp,
            "add": self._add,
            "neg": self._neg,
            "sub": self._sub,
            "mul": self._mul,
            "div": self._div,
            "square": self._square,
            "cube": self._cube,
            "pow": self._pow,
            "minimum": self._minimum,
            "maximum": self._maximum,
            "clip": self._clip,
        }
        return special[op](*args) if op in special else self.elementwise(op, args)

    def value(self, x: _Value) -> str | Expr:
        """A call argument: a number, or a register holding the list value."""
        return x.expr if isinstance(x, _Num) else self.materialise(x)

    def _interp(self, a: _Value, b: _Value, beta: _Value) -> _Value:
        """(1 - β)·a + β·b, as the interpreter computes it."""
        self.hold(beta, 1)
        left = self.apply("mul", [self.apply("sub", [_Num(Const(1.0)), beta]), a])
        return self.apply("add", [left, self.apply("mul", [beta, b])])

    def _add(self, a: _Value, b: _Value) -> _Value:
        if isinstance(a, _Num):
            a, b = b, a
        if isinstance(b, _Num):
            return _Lin(a.terms, _plus(a.const, b.expr))
        return _Lin(a.terms + b.terms, _plus(a.const, b.const))

    def _neg(self, a: _Lin) -> _Value:
        const = None if a.const is None else _number("neg", [a.const])
        return _Lin(tuple(t.scaled(Const(-1.0)) for t in a.terms), const)

    def _sub(self, a: _Value, b: _Value) -> _Value:  # a + (-b): the same in IEEE arithmetic
        return self.apply("add", [a, self.apply("neg", [b])])

    def _mul(self, a: _Value, b: _Value) -> _Value:
        if isinstance(a, _Num):
            a, b = b, a
        if isinstance(b, _Num):
            const = None if a.const is None else _number("mul", [a.const, b.expr])
            return _Lin(tuple(t.scaled(b.expr) for t in a.terms), const)
        x, y = self.single(a), self.single(b)
        return _Lin((_Term(_times(x.num, y.num), _times(x.den, y.den), x.a, "mul", y.a),))

    def _div(self, a: _Value, b: _Value) -> _Value:
        if isinstance(b, _Num):
            const = None if a.const is None else _number("div", [a.const, b.expr])
            return _Lin(tuple(t.scaled(den=b.expr) for t in a.terms), const)
        if isinstance(a, _Num):  # c / x = c * (1 / x)
            return self._mul(a, _reg(self.foreach("reciprocal", [self.materialise(b)])))
        x, y = self.single(a), self.single(b)
        return _Lin((_Term(_times(x.num, y.den), _times(x.den, y.num), x.a, "div", y.a),))

    def single(self, value: _Lin, hint: str = "tmp") -> _Term:
        """``value`` as one scaled register (``c * a``); a product or quotient is computed
        without its number, which stays a factor for the reader to fold."""
        if value.scaled_register():
            return value.terms[0]
        if value.const is None and len(value.terms) == 1:
            term = value.terms[0]
            bare = _Lin((term._replace(num=None, den=None),))
            return _Term(term.num, term.den, self.materialise(bare, hint))
        return _Term(None, None, self.materialise(value, hint))

    def _square(self, x: _Lin) -> _Value:
        reg = _reg(self.materialise(x))
        self.hold(reg, 1)
        return self._mul(reg, reg)

    def _cube(self, x: _Lin) -> _Value:  # x * x * x, as the interpreter computes it
        reg = _reg(self.materialise(x))
        self.hold(reg, 2)
        return self._mul(_reg(self.materialise(self._mul(reg, reg))), reg)

    def _pow(self, a: _Value, b: _Value) -> _Value:
        return _reg(self.foreach("pow", [self.value(a), self.value(b)]))

    def _minimum(self, a: _Value, b: _Value) -> _Value:
        return self.commutative("minimum", a, b)

    def _maximum(self, a: _Value, b: _Value) -> _Value:
        return self.commutative("maximum", a, b)

    def commutative(self, name: str, a: _Value, b: _Value) -> _Value:
        args = [self.value(a), self.value(b)]
        regs = [x for x in args if isinstance(x, str)]
        kind = self.kind_of(regs)
        if not isinstance(args[0], str) or (
            isinstance(args[1], str)
            and self.dies(args[1], regs, kind)
            and not self.dies(args[0], regs, kind)
        ):
            args.reverse()  # the list (or the buffer that can be overwritten) first
        return _reg(self.foreach(name, args))

    def _clip(self, x: _Value, c: _Value) -> _Value:
        if isinstance(c, _Num) and isinstance(x, _Lin):  # clamp to [-|c|, |c|]
            bound = _number("abs", [c.expr])
            low = self.foreach("clamp_min", [self.materialise(x), _number("neg", [bound])])
            return _reg(self.foreach("clamp_max", [low, bound]))
        return self.elementwise("clip", [x, c])

    def elementwise(self, op: str, args: list[_Value]) -> _Value:
        """A unary primitive with a foreach form; else the primitive tensor by tensor."""
        values = [self.value(a) for a in args]
        if op in _FOREACH_UNARY:
            return _reg(self.foreach(_FOREACH_UNARY[op], values))
        return _reg(self.per_tensor(op, values))


# ------------------------------------------------------------------- what the executor calls


def _identity(x):
    return x


def _with_keywords(fn: Callable, keywords: tuple[str, ...]) -> Callable:
    n = len(keywords)

    def call(*values):
        return fn(*values[:-n], **dict(zip(keywords, values[-n:], strict=True)))

    return call


def _full_like(w: list, value: float) -> list:
    return [torch.full_like(x, value) for x in w]


def _clone(xs: list) -> list:
    return [x.clone(memory_format=torch.preserve_format) for x in xs]


def _expand(w: list, scalars: list) -> list:
    return [torch.empty_like(x).copy_(s) for x, s in zip(w, scalars, strict=True)]


def _per_tensor(one: Callable, lists: list[int]) -> Callable:
    """``one`` applied tensor by tensor to the list arguments at positions ``lists``; numbers
    become float64 scalars on the first list's device (as the source writes)."""

    def call(*values):
        out = []
        for column in zip(*[values[i] for i in lists], strict=True):
            device = column[0].device
            args = [
                v if i in lists else torch.full((), v, dtype=torch.float64, device=device)
                for i, v in enumerate(values)
            ]
            for i, x in zip(lists, column, strict=True):
                args[i] = x
            out.append(one(*args))
        return out

    return call
