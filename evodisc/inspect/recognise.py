"""Name the known optimizers closest to a program, with their hyper-parameters.

**Families.** Each zoo optimizer is a family: its program with the named hyper-parameters of
:data:`FAMILIES` (β₁, β₂, ε, λ, …) set to other values (:func:`member`).

**Exact.** A program whose functional hash equals a zoo program's is *equivalent* to it
("equivalent to Lion"); one whose hash equals a family member's is "equivalent to Lion with
β₁ = 0.899, β₂ = 0.997".

**Hyper-parameters.** :func:`fit` reads them off the program by *structure*: the zoo program's
outputs are aligned with the program's, the zoo's inputs and state slots standing for any
sub-expression (``g`` for ``arcsin(clip(g, lr))``) and each named constant for the constant in
its place. So "Lion with β₁ = 0.899, β₂ = 0.997" is said of a program that computes Lion's
formulas with those constants, even if it adds terms or transforms the gradient.

**Similarity.** The score is the *cosine similarity of the update directions*, averaged over
the steps of a fixed probe (:data:`PROBE`): both programs get the same gradients, and
``score = mean_k ⟨u_k, v_k⟩ / (‖u_k‖ ‖v_k‖)``. 1 means the same direction at every step (at any
learning-rate scale), 0 unrelated. For sign-based rules (updates ±c) it is ``2a − 1`` where
``a`` is the share of coordinates whose signs agree, so there it measures sign agreement. A
family is scored with its fitted hyper-parameters (``default_score``: with the zoo's own).

The probe models training long enough for slow moving averages (β = 0.999) to matter: 300
steps of 128 coordinates whose gradients have a persistent mean plus twice as much noise, with
scales spread over three decades (momentum, adaptive and sign-based rules all differ there);
weights ~ N(0, 0.1²), updated by each program's own updates; ``lr`` = 1e-3; ``t`` = 1 … 300;
``T`` = 300 (the whole run).
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass, replace

import numpy as np

from evodisc.edit import inline
from evodisc.emit import split_scale
from evodisc.hashing import Probe, functional_hash, run_updates
from evodisc.interpreter import compile_program
from evodisc.primitives import PRIMITIVES
from evodisc.program import Call, Const, Expr, Program, Var, format_constant
from search_spaces.zoo import zoo


@dataclass(frozen=True)
class Family:
    """A known optimizer's display name and its named hyper-parameters (name, default)."""

    title: str
    constants: tuple[tuple[str, float], ...] = ()


#: The zoo's optimizers as families: each named constant's default occurs in the zoo program,
#: and every occurrence of that value is that hyper-parameter (``tests/test_recognise.py``).
FAMILIES: dict[str, Family] = {
    "adabelief": Family("AdaBelief", (("β₁", 0.9), ("β₂", 0.999), ("ε", 1e-16))),
    "adadelta": Family("Adadelta", (("ρ", 0.9), ("ε", 1e-6))),
    "adagrad": Family("Adagrad", (("ε", 1e-10),)),
    "adam": Family("Adam", (("β₁", 0.9), ("β₂", 0.999), ("ε", 1e-8))),
    "adamax": Family("Adamax", (("β₁", 0.9), ("β₂", 0.999), ("ε", 1e-8))),
    "adamw": Family("AdamW", (("β₁", 0.9), ("β₂", 0.999), ("ε", 1e-8), ("λ", 0.01))),
    "addsign": Family("AddSign", (("β", 0.9),)),
    "amsgrad": Family("AMSGrad", (("β₁", 0.9), ("β₂", 0.999), ("ε", 1e-8))),
    "cautious_adamw": Family(
        "Cautious-AdamW", (("β₁", 0.9), ("β₂", 0.999), ("ε", 1e-8), ("λ", 0.01))
    ),
    "cautious_lion": Family("Cautious-Lion", (("β₁", 0.9), ("β₂", 0.99))),
    "lion": Family("Lion", (("β₁", 0.9), ("β₂", 0.99))),
    "momentum": Family("Momentum", (("μ", 0.9),)),
    "nadam": Family("NAdam", (("β₁", 0.9), ("β₂", 0.999), ("ε", 1e-8), ("ψ", 0.004))),
    "nesterov": Family("Nesterov", (("μ", 0.9),)),
    "powersign": Family("PowerSign", (("β", 0.9),)),
    "rmsprop": Family("RMSprop", (("α", 0.99), ("ε", 1e-8))),
    "sgd": Family("SGD"),
    "signsgd": Family("signSGD"),
    "signum": Family("Signum", (("β", 0.9),)),
}


def _make_probe(seed: int = 20250101, n: int = 128, steps: int = 300) -> Probe:
    rng = random.Random(seed)  # Python guarantees this stream: the same probe everywhere
    scales = [10.0 ** rng.uniform(-3.0, 0.0) for _ in range(n)]
    means = [rng.gauss(0.0, 1.0) for _ in range(n)]
    # Each coordinate's gradient scale changes once, by 0.1× … 10×, at a random step.
    changes = [
        (rng.randrange(steps // 6, steps - steps // 6), 10.0 ** rng.uniform(-1, 1))
        for _ in range(n)
    ]
    grads = np.array(
        [
            [
                scale * (factor if k >= when else 1.0) * (mean + 2.0 * rng.gauss(0.0, 1.0))
                for scale, mean, (when, factor) in zip(scales, means, changes, strict=True)
            ]
            for k in range(steps)
        ]
    )
    w0 = np.array([rng.gauss(0.0, 0.1) for _ in range(n)])
    for array in (w0, grads):
        array.flags.writeable = False
    lrs = tuple(np.float64(1e-3) for _ in range(steps))
    ts = tuple(np.float64(k) for k in range(1, steps + 1))
    return Probe(w0, grads, lrs, ts, np.float64(steps))  # a run of ``steps`` steps: T = steps


#: The inputs every similarity and approximate-step check runs on.
PROBE = _make_probe()


def probe_updates(program: Program) -> np.ndarray:
    """The updates of ``program`` on :data:`PROBE`, shape ``(steps, n)``."""
    return run_updates(compile_program(program, backend="numpy"), PROBE)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over steps of the cosine similarity of two update sequences (NaN if either is not
    finite); a step where both updates are zero counts 1, one of them 0."""
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return math.nan
    with np.errstate(all="ignore"):  # overflow of huge updates: a NaN score, as above
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        dots = np.einsum("ij,ij->i", a, b)
        cos = np.where(na * nb > 0, dots / (na * nb), np.where((na == 0) & (nb == 0), 1.0, 0.0))
    return float(np.clip(cos, -1.0, 1.0).mean())


def deviation(reference: np.ndarray, other: np.ndarray) -> float:
    """Relative RMS difference ``‖other − reference‖ / ‖reference‖`` over all probe steps
    (``inf`` when not finite): the measure of approximate simplification steps."""
    if not np.isfinite(other).all():
        return math.inf
    with np.errstate(all="ignore"):
        scale = float(np.linalg.norm(reference))
        difference = float(np.linalg.norm(other - reference))
    if not math.isfinite(scale + difference):
        return math.inf
    if scale == 0:
        return 0.0 if difference == 0 else math.inf
    return difference / scale


@dataclass(frozen=True)
class Match:
    """How close a program is to one known optimizer."""

    name: str  # the zoo name ("lion")
    title: str  # "Lion"
    score: float  # similarity, hyper-parameters read off the program (1: same; NaN: not finite)
    default_score: float  # similarity with the zoo's own hyper-parameters
    exact: bool  # the same functional hash as the family member with ``constants``
    constants: tuple[tuple[str, float], ...]  # every named hyper-parameter (read, else default)
    read: tuple[str, ...] = ()  # the names whose values were read off the program
    fitted: bool = False  # a value read off the program differs from the zoo's default

    def describe(self) -> str:
        """``equivalent to Lion``, ``equivalent to Lion with β₁ = 0.899``, ``Lion with β₁ =
        0.899, β₂ = 0.997: 0.962 (0.948 with its defaults)``, or ``Signum: 0.903``."""
        named = self.title
        if self.fitted:
            read = [(n, v) for n, v in self.constants if n in self.read]
            values = ", ".join(f"{n} = {format_constant(v)}" for n, v in read)
            named = f"{self.title} with {values}"
        if self.exact:
            return f"equivalent to {named}"
        if self.fitted:
            return f"{named}: {_score(self.score)} ({_score(self.default_score)} with its defaults)"
        return f"{named}: {_score(self.score)}"


def _score(value: float) -> str:
    """Three decimals, more when that would print an inexact match as 1.000."""
    if math.isnan(value):
        return "n/a (not finite)"
    text = f"{value:.3f}"
    return f"{value:.6f}" if text == "1.000" and value < 1 else text


@dataclass(frozen=True)
class _Known:
    name: str
    family: Family
    program: Program
    digest: str


@functools.cache
def _known() -> tuple[_Known, ...]:
    known = []
    for name, entry in zoo().items():
        program = entry.load()
        family = FAMILIES.get(name, Family(name))
        known.append(_Known(name, family, program, functional_hash(program)))
    return tuple(known)


@functools.cache
def _known_updates(name: str) -> np.ndarray:
    return probe_updates(next(k.program for k in _known() if k.name == name))


def member(program: Program, family: Family, values: dict[str, float]) -> Program:
    """The family member with the named hyper-parameters in ``values`` (others at default):
    every constant equal to a default is replaced by its new value."""
    table = {default: values.get(n, default) for n, default in family.constants}

    def fix(expr: Expr) -> Expr:
        if isinstance(expr, Const):
            return Const(table.get(expr.value, expr.value))
        if isinstance(expr, Call):
            return Call(expr.op, tuple(fix(a) for a in expr.args))
        return expr

    body = tuple(type(s)(s.target, fix(s.expr)) for s in program.body)
    return Program(program.params, body, tuple(fix(e) for e in program.returns))


def recognise(program: Program, top: int = 3) -> tuple[Match, ...]:
    """The ``top`` known optimizers closest to ``program``, best first (exact ones first).

    Each family's hyper-parameters are first read off ``program`` by :func:`fit` (pass the
    simplified program: its canonical form aligns best), then scored.
    """
    digest = functional_hash(program)
    updates = probe_updates(program)
    outputs = _outputs(program)
    matches = []
    for known in _known():
        family, defaults = known.family, known.family.constants
        if known.digest == digest:
            matches.append(Match(known.name, family.title, 1.0, 1.0, True, defaults))
            continue
        default_score = similarity(updates, _known_updates(known.name))
        try:
            values = fit(outputs, known.program, family)
        except RecursionError:
            values = {}
        constants = tuple((n, values.get(n, d)) for n, d in defaults)
        read = tuple(n for n, _ in defaults if n in values)
        if constants == defaults:
            match = Match(known.name, family.title, default_score, default_score, False, defaults)
            matches.append(replace(match, read=read))
            continue
        candidate = member(known.program, family, values)
        exact = functional_hash(candidate) == digest
        score = 1.0 if exact else similarity(updates, probe_updates(candidate))
        matches.append(
            Match(known.name, family.title, score, default_score, exact, constants, read, True)
        )
    # Exact first (the zoo's own hyper-parameters before fitted ones), then by score.
    matches.sort(key=lambda m: (not m.exact, m.exact and m.fitted, -_rank(m.score), m.name))
    return tuple(matches[:top])


def closest_known(program: Program) -> Match:
    """The known optimizer closest to ``program`` (see :func:`recognise`)."""
    return recognise(program, top=1)[0]


def _rank(score: float) -> float:
    """``score`` for sorting: NaN (updates not finite) below every real score."""
    return -2.0 if math.isnan(score) else score


# ------------------------------------------------------------------- hyper-parameter fit

#: Programs whose outputs, written out as trees, are larger than this are not aligned.
MAX_ALIGNED_NODES = 2000


def _outputs(program: Program) -> tuple[Expr | None, list[Expr]] | None:
    """``(update without its lr scale, new state values)`` as trees over the parameters."""
    try:
        outputs = inline(program)
        sizes: dict[int, int] = {}
        if sum(_tree_size(e, sizes) for e in outputs) > MAX_ALIGNED_NODES:
            return None
    except RecursionError:  # a chain of statements deeper than Python's recursion limit
        return None
    return split_scale(outputs[0], program.params)[1], list(outputs[1:])


def _tree_size(expr: Expr, memo: dict[int, int]) -> int:
    if id(expr) not in memo:
        memo[id(expr)] = 1 + sum(_tree_size(a, memo) for a in getattr(expr, "args", ()))
    return memo[id(expr)]


def fit(outputs, template: Program, family: Family) -> dict[str, float]:
    """The named hyper-parameters of ``family`` read off a program's ``outputs`` (from
    :func:`_outputs`) by aligning them with the zoo program ``template``'s.

    The template's inputs and state slots are pattern variables: each stands for one
    sub-expression of the program, the same at every occurrence (``g`` may stand for
    ``arcsin(clip(g, lr))``, ``m`` for ``v``); a named constant stands for one constant; other
    constants must be equal; commutative operations match either way round. Each template
    state update, then the update, is matched against the program's state updates (any of
    them) and the update, or a sub-expression of them (the program may add terms, such as a
    weight decay). Hyper-parameters that no aligned part binds are left out.
    """
    if outputs is None:
        return {}
    update, state = outputs
    t_update, t_state = _outputs(template)
    named = {value: name for name, value in family.constants}
    bindings: dict = {}
    free = list(state)
    for t_new in t_state:
        for i, new in enumerate(free):
            found = _embed(t_new, new, bindings, named)
            if found is not None:
                bindings = found
                del free[i]
                break
    if update is not None and t_update is not None:
        bindings = _embed(t_update, update, bindings, named) or bindings
    return {key[1]: value for key, value in bindings.items() if key[0] == "const"}


def _embed(template: Expr, expr: Expr, bindings: dict, named: dict) -> dict | None:
    """Bindings matching ``template`` to ``expr`` or to its first sub-expression that fits."""
    stack = [expr]
    while stack:
        node = stack.pop()
        found = _match(template, node, bindings, named)
        if found is not None:
            return found
        if isinstance(node, Call):
            stack.extend(reversed(node.args))
    return None


def _match(template: Expr, expr: Expr, bindings: dict, named: dict) -> dict | None:
    if isinstance(template, Var):
        key = ("var", template.name)
        if key not in bindings:
            return {**bindings, key: expr}
        return bindings if bindings[key] == expr else None
    if isinstance(template, Const):
        if not isinstance(expr, Const):
            return None
        if template.value not in named:
            return bindings if expr.value == template.value else None
        key = ("const", named[template.value])
        if key not in bindings:
            return {**bindings, key: expr.value}
        return bindings if bindings[key] == expr.value else None
    if not isinstance(expr, Call) or expr.op != template.op:
        return None
    orders = [expr.args]
    if PRIMITIVES[expr.op].commutative:
        orders.append(expr.args[::-1])
    for args in orders:
        found: dict | None = bindings
        for t_arg, arg in zip(template.args, args, strict=True):
            found = _match(t_arg, arg, found, named)
            if found is None:
                break
        if found is not None:
            return found
    return None
