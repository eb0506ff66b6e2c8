"""Functional hashing: equal digests for programs that compute the same updates.

A program is run (NumPy backend, float64) on fixed probe inputs for a few steps — a fresh
gradient each step, the weight updated with ``w ← w − u``, ``lr`` and ``t`` varying over the steps,
the horizon ``T`` fixed (:data:`PROBE_HORIZONS`), state slots zero-initialised — and the sequence
of updates is quantised and digested with BLAKE2b.
Only the updates are hashed, so dead code, unused state slots, statement order, variable names and
any spelling that computes the same numbers give the same digest.

Quantisation (see ``docs/hashing.md``): per step, values below ``2**-40`` times the step's largest
finite magnitude are flushed to zero (cancellation noise), ``-0.0`` becomes ``0.0``, the float64
mantissa is rounded to :data:`MANTISSA_BITS` bits (relative precision ≈ 1e-6), and every non-finite
value (NaN, ±inf) becomes one fixed token. Such programs are flagged (``finite=False``).

The probe inputs are drawn once at import with Python's :class:`random.Random` (a generator whose
stream Python guarantees), so digests are the same across processes, runs and machines (up to
last-bit differences of a platform's libm landing on a rounding boundary: see docs/hashing.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from evodisc.interpreter import CompiledProgram, compile_program
from evodisc.program import RESERVED_INPUTS, Program, ProgramError, parse_program

#: Bumped whenever the probe inputs or the quantisation change (it salts every digest).
HASH_VERSION = "evodisc-functional-hash/2"
#: Mantissa bits kept by the quantiser (float64 has 52).
MANTISSA_BITS = 20
#: Values smaller than this fraction of a step's largest finite value are flushed to zero.
FLUSH_RELATIVE = 2.0**-40
#: The step numbers ``t`` of the probe's steps: five steps (state slots chained that deep still
#: reach the update), with ``t`` jumping late so that ``β ** t`` and friends are probed far out.
PROBE_TS = (1.0, 2.0, 3.0, 10.0, 1000.0)
#: The run's horizon ``T`` on the probes, at least the last probe step (``1 <= t <= T``): every
#: probe runs with the first, twice the last step, so that ``t / T`` spans 0.0005 … 0.5 (a
#: warm-up over the first 10 % of the run is still rising at ``t = 10``, a cosine decay is half
#: way down at ``t = 1000``). A program whose update reads ``T`` runs the main probe again with
#: the second; those updates are digested too when they differ, so such a program never hashes
#: like itself with ``T`` replaced by a constant (only a ``T`` that reaches no update changes
#: nothing, and programs that do not read ``T`` hash as they did before ``T`` existed).
PROBE_HORIZONS = (2000.0, 1250.0)
#: Probe sizes: the main probe; one run only for programs with reductions (so that ``norm(x)``
#: and ``rms(x) * sqrt(n)`` differ); and a large one for every program whose update is finite
#: and not one value in every element (in a sign-based rule like Lion a 1 % change of β shows
#: only in the few elements whose sign it flips; hash version 1 ran it only for *coarse*
#: updates, of few distinct values, which ``0.77·sign(m) + 0.01·w`` is not).
SIZES = (64, 23, 1024)
#: Salts rule identities (bumped when their probes, checks or normalisation change).
RULE_VERSION = "evodisc-rule-identity/2"
#: The factors of the probes' learning rates (1e-3..1e-1) at which a rule's linearity in ``lr``
#: is checked: learning rates from about 1e-6 to 100, the range a sweep trains at.
LINEAR_FACTORS = (2.0**-10, 1.0, 2.0**10)
#: Difference tolerated by that check, relative to the step's largest update.
LINEAR_TOLERANCE = 1e-9
_SEED = 20240607
_NONFINITE = np.int64(0x7FF8_0000_0000_0000)  # the one token for NaN, +inf and -inf
_ROUND = np.int64(1 << (52 - MANTISSA_BITS - 1))
_MASK = np.int64(~((1 << (52 - MANTISSA_BITS)) - 1))


@dataclass(frozen=True)
class HashInfo:
    """A functional hash and whether every probed update was finite."""

    digest: str
    finite: bool


@dataclass(frozen=True)
class Probe:
    """Fixed inputs of one probe run: initial weight, one gradient per step, ``lr``, ``t``, and
    the run's horizon ``T``."""

    w0: np.ndarray
    grads: np.ndarray  # (steps, n)
    lrs: tuple[np.float64, ...]
    ts: tuple[np.float64, ...]
    horizon: np.float64  # T, at least the last of ts

    @cached_property
    def sgd_path(self) -> np.ndarray:
        """Weights ``(steps, n)`` that do not depend on the program: ``w0`` moved by
        ``lr * g`` each step (what :func:`rule_identity` feeds, so that runs at different
        learning rates see the same weights)."""
        steps = [self.w0]
        for lr, g in zip(self.lrs[:-1], self.grads[:-1], strict=True):
            steps.append(steps[-1] - lr * g)
        return np.stack(steps)


def _signed_magnitudes(rng: random.Random, n: int) -> np.ndarray:
    """Values of both signs: a third standard-normal-ish, a third tiny (1e-8..1e-2), a third
    large (1..10); no exact zeros."""
    values = []
    for i in range(n):
        u = rng.random()
        if i % 3 == 0:  # Box–Muller, one branch
            radius = math.sqrt(-2.0 * math.log(1.0 - u))
            magnitude = radius * abs(math.cos(2 * math.pi * rng.random()))
            magnitude = max(magnitude, 1e-3)
        elif i % 3 == 1:
            magnitude = 10.0 ** (-8.0 + 6.0 * u)
        else:
            magnitude = 10.0**u
        values.append(magnitude if rng.random() < 0.5 else -magnitude)
    order = list(range(n))
    rng.shuffle(order)
    return np.array([values[i] for i in order], dtype=np.float64)


def make_probe(
    rng: random.Random, n: int, ts: tuple[float, ...] = PROBE_TS, horizon: float | None = None
) -> Probe:
    """Probe inputs of ``n`` elements, one step per entry of ``ts``, drawn from ``rng``: the
    hashing probes come from a fixed seed; fresh ones check hash collisions. ``horizon`` is
    ``T`` (default: twice the last step; it draws nothing from ``rng``)."""
    horizon = 2.0 * max(ts) if horizon is None else horizon
    if not horizon >= max(ts):
        raise ValueError(f"the horizon T={horizon} is before the last probe step {max(ts)}")
    w0 = _signed_magnitudes(rng, n)
    grads = np.stack([_signed_magnitudes(rng, n) for _ in ts])
    lrs = tuple(np.float64(10.0 ** (-3.0 + 2.0 * rng.random())) for _ in ts)
    for array in (w0, grads):
        array.flags.writeable = False
    return Probe(w0, grads, lrs, tuple(np.float64(t) for t in ts), np.float64(horizon))


def _make_probes() -> tuple[Probe, ...]:
    rng = random.Random(_SEED)
    return tuple(make_probe(rng, n, PROBE_TS, PROBE_HORIZONS[0]) for n in SIZES)


PROBES: tuple[Probe, ...] = _make_probes()
#: The main probe at the second horizon, for programs whose update reads ``T``.
_MAIN_LATER_HORIZON = dataclasses.replace(PROBES[0], horizon=np.float64(PROBE_HORIZONS[1]))


@dataclass(frozen=True)
class _Plan:
    """A compiled program reduced to what the updates need (register-level dead-code removal)."""

    compiled: CompiledProgram
    code: tuple[tuple[int, Callable, tuple[int, ...], bool], ...]
    live_slots: tuple[tuple[int, int], ...]  # (param register, output register) of needed slots
    reads: frozenset[str]  # the parameters that reach the update (over any number of steps)

    @property
    def has_reduction(self) -> bool:
        """True if a live instruction is a reduction (its result depends on the tensor size):
        :func:`evodisc.analysis.uses_reduction` on registers, ~40 µs cheaper per program
        (``tests/test_hashing.py`` checks that the two agree)."""
        return any(reduction for *_, reduction in self.code)


def _plan(compiled: CompiledProgram) -> _Plan:
    """Keep the instructions the update needs over any number of steps.

    Same rule as :func:`evodisc.analysis.eliminate_dead_code`, on registers (bit masks of the
    parameters each register depends on), which is several times faster than on the IR.
    """
    program = compiled.program
    deps = {reg: 1 << i for i, reg in enumerate(compiled.param_registers)}
    for ins in compiled.code:
        mask = 0
        for a in ins.args:
            mask |= deps.get(a, 0)
        deps[ins.out] = mask
    state_out = dict(zip(program.state, compiled.outputs[1:], strict=True))
    slots = [
        (i, reg, state_out[name])
        for i, (name, reg) in enumerate(zip(program.params, compiled.param_registers, strict=True))
        if name in state_out
    ]
    needed = deps.get(compiled.outputs[0], 0)
    changed = True
    while changed:
        changed = False
        for i, _, out in slots:
            if needed >> i & 1 and deps.get(out, 0) | needed != needed:
                needed |= deps.get(out, 0)
                changed = True
    live_slots = tuple((reg, out) for i, reg, out in slots if needed >> i & 1)
    live = {compiled.outputs[0], *(out for _, out in live_slots)}
    code = []
    for ins in reversed(compiled.code):
        if ins.out in live:
            live.update(ins.args)
            code.append((ins.out, ins.fn, ins.args, ins.reduction))
    code.reverse()
    reads = frozenset(p for i, p in enumerate(program.params) if needed >> i & 1)
    return _Plan(compiled, tuple(code), live_slots, reads)


def run_updates(compiled: CompiledProgram, probe: Probe) -> np.ndarray:
    """The updates of a NumPy-compiled program on ``probe``, shape ``(steps, n)``.

    Rows after an exception (none is expected with IEEE semantics) stay NaN.
    """
    return _run(_plan(compiled), probe)


def _run(
    plan: _Plan, probe: Probe, lr_factor: float = 1.0, path: np.ndarray | None = None
) -> np.ndarray:
    """The updates of ``plan`` on ``probe`` with ``lr`` multiplied by ``lr_factor``; the weight
    moves by the updates (``w ← w − u``), or is ``path[k]`` at step ``k`` when given."""
    compiled = plan.compiled
    n = probe.w0.shape[0]
    steps = probe.grads.shape[0]
    out = np.full((steps, n), np.nan)
    regs: list = [None] * compiled.num_registers
    for reg, value in compiled.constants:
        regs[reg] = value
    zeros = np.zeros(n)
    for reg, _ in plan.live_slots:
        regs[reg] = zeros
    named = dict(zip(compiled.program.params, compiled.param_registers, strict=True))
    w_reg, g_reg, lr_reg, t_reg, horizon_reg = (named.get(p) for p in RESERVED_INPUTS)
    if horizon_reg is not None:
        regs[horizon_reg] = probe.horizon
    update_reg = compiled.outputs[0]
    w = probe.w0
    with np.errstate(all="ignore"):
        for k in range(steps):
            if path is not None:
                w = path[k]
            lr = probe.lrs[k] * lr_factor
            for reg, value in ((w_reg, w), (g_reg, probe.grads[k]), (lr_reg, lr)):
                if reg is not None:
                    regs[reg] = value
            if t_reg is not None:
                regs[t_reg] = probe.ts[k]
            try:
                for dest, fn, args, reduction in plan.code:
                    if reduction:
                        x = regs[args[0]]
                        regs[dest] = fn(x, tuple(range(np.ndim(x))))
                    elif len(args) == 2:  # the common case, without building a list
                        regs[dest] = fn(regs[args[0]], regs[args[1]])
                    else:
                        regs[dest] = fn(*[regs[a] for a in args])
            except (ArithmeticError, ValueError):
                break
            out[k] = regs[update_reg]
            new_state = [regs[o] for _, o in plan.live_slots]
            for (reg, _), value in zip(plan.live_slots, new_state, strict=True):
                regs[reg] = value if np.ndim(value) == 1 else np.broadcast_to(value, (n,))
            w = w - out[k]
    return out


def quantise(updates: np.ndarray) -> np.ndarray:
    """Map updates ``(steps, n)`` to int64 tokens, stable under float rounding noise."""
    finite = np.isfinite(updates)
    all_finite = finite.all()
    magnitude = np.abs(updates) if all_finite else np.where(finite, np.abs(updates), 0.0)
    floor = magnitude.max(axis=1, keepdims=True) * FLUSH_RELATIVE
    # Zeros (either sign) and flushed values become +0.0; NaN compares false, so it does too.
    clean = np.where(magnitude > floor, updates, 0.0)
    bits = (clean.view(np.int64) + _ROUND) & _MASK
    return bits if all_finite else np.where(finite, bits, _NONFINITE)


def functional_hash_info(program: Program | str) -> HashInfo:
    """The functional hash of ``program`` (IR or program text) and its finiteness flag."""
    if isinstance(program, str):
        program = parse_program(_program_text(program))
    plan = _plan(compile_program(program, backend="numpy"))
    main = PROBES[0]
    digest = hashlib.blake2b(HASH_VERSION.encode(), digest_size=16)
    updates = _run(plan, main)
    finite = bool(np.isfinite(updates).all())
    tokens = quantise(updates)
    digest.update(tokens.astype("<i8").tobytes())
    if "T" in plan.reads:  # the same probe at another horizon (see PROBE_HORIZONS)
        updates = _run(plan, _MAIN_LATER_HORIZON)
        other = quantise(updates)
        if not np.array_equal(other, tokens):
            finite = finite and bool(np.isfinite(updates).all())
            digest.update(other.astype("<i8").tobytes())
    for probe in _extra_probes(plan, tokens, finite):
        updates = _run(plan, probe)
        finite = finite and bool(np.isfinite(updates).all())
        digest.update(quantise(updates).astype("<i8").tobytes())
    return HashInfo(digest.hexdigest(), finite)


def _extra_probes(plan: _Plan, tokens: np.ndarray, finite: bool) -> list[Probe]:
    """The probes run after the main one (whose quantised updates are ``tokens``): the
    reduction probe for a program with a reduction, and the fine one for every update that is
    finite and varies across elements — decided from the updates, never from the program's
    spelling, so that equal functions run the same probes (``m / sqrt(m * m)`` and
    ``sign(m)``)."""
    _, reduction, fine = PROBES
    extra = [reduction] if plan.has_reduction else []
    if finite and bool((tokens != tokens[:, :1]).any()):
        extra.append(fine)
    return extra


def _program_text(text: str) -> str:
    """``text`` if it is program text; a name or a path (``"adamw"``, ``"lion.py"``) is a
    :class:`ProgramError` saying how to hash what it names."""
    if "\n" in text.strip() or "def " in text:
        return text
    raise ProgramError(
        "a string is hashed as program text ('def train(...): ...'), and this is one line "
        "without 'def'; for a file or a known optimizer, hash evodisc.load_program(path) or "
        "search_spaces.zoo.resolve_program(name)",
        filename=repr(text),
    )


def functional_hash(program: Program | str) -> str:
    """A 32-hex-digit digest, equal for programs that compute the same updates."""
    return functional_hash_info(program).digest


# Rule identity: the functional hash up to a positive factor of the update -----------------------


@dataclass(frozen=True)
class RuleIdentity:
    """A program's update rule up to a positive constant factor: ``digest`` is equal for ``u``
    and ``c·u`` (any ``c > 0``), and ``scale`` is the factor: the program at learning rate
    ``lr`` is the rule's unit form at ``lr · scale``. A program whose update is not linear in
    ``lr`` is its own rule: its functional hash, scale 1 (``lr_linear`` False)."""

    digest: str
    scale: float
    lr_linear: bool


def rule_identity(program: Program, functional_hash: str | None = None) -> RuleIdentity:
    """The :class:`RuleIdentity` of ``program`` (``functional_hash``: its digest, when known).

    When the update is linear in ``lr`` (``u(a·lr) = a·u(lr)`` along any input sequence, the
    state following its own run, checked on the probes at :data:`LINEAR_FACTORS` times their
    learning rates), ``c·u`` at ``lr`` is ``u`` at ``c·lr``: a learning-rate sweep absorbs
    ``c``. The scale is the largest update of the first step that moves at all, per unit of
    ``lr``; the digest hashes the updates at ``lr / scale`` (the unit form) like
    :func:`functional_hash_info`, salted with :data:`RULE_VERSION`. The weights follow
    :attr:`Probe.sgd_path` (the same at every learning rate), not the program's own updates."""
    unit = _unit_form(_plan(compile_program(program, backend="numpy")))
    if unit is None:
        digest = functional_hash or functional_hash_info(program).digest
        return RuleIdentity(digest, 1.0, False)
    return RuleIdentity(*unit, True)


def _unit_form(plan: _Plan) -> tuple[str, float] | None:
    """The digest of the unit form and the scale (see :func:`rule_identity`); None when the
    update is not linear in ``lr`` (or not finite, or never moves)."""
    main = PROBES[0]
    base = _run(plan, main, path=main.sgd_path)
    scale = _unit_scale(base, main)
    if scale is None:
        return None
    digest = hashlib.blake2b(RULE_VERSION.encode(), digest_size=16)
    unit = _run(plan, main, 1.0 / scale, main.sgd_path)
    for probe in [main, *_extra_probes(plan, quantise(unit), True)]:
        if probe is not main:
            unit = _run(plan, probe, 1.0 / scale, probe.sgd_path)
        for factor in LINEAR_FACTORS:
            reuse = probe is main and factor == 1.0
            updates = base if reuse else _run(plan, probe, factor, probe.sgd_path)
            if not _proportional(updates, unit, factor * scale):
                return None
        digest.update(quantise(unit).astype("<i8").tobytes())
    return digest.hexdigest(), scale


def _unit_scale(updates: np.ndarray, probe: Probe) -> float | None:
    """The largest update of the first step with a non-zero one, over that step's ``lr``;
    None when an update is not finite or none moves."""
    if not np.isfinite(updates).all():
        return None
    for row, lr in zip(updates, probe.lrs, strict=True):
        largest = float(np.abs(row).max())
        if largest > 0:
            return largest / float(lr)
    return None


def _proportional(updates: np.ndarray, unit: np.ndarray, ratio: float) -> bool:
    """Whether ``updates`` are ``ratio`` times ``unit`` (up to :data:`LINEAR_TOLERANCE`)."""
    with np.errstate(all="ignore"):  # an overflow is a difference like any other
        expected = unit * ratio
        allowed = LINEAR_TOLERANCE * np.abs(expected).max(axis=1, keepdims=True)
        return bool((np.abs(updates - expected) <= allowed).all())
