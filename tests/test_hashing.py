"""Functional hashing and ``evodisc hash`` (the fitness cache: ``tests/test_fitness_cache.py``).

Equivalence claims are checked twice: equal digests, and (for the hand-written spellings and the
property tests) equal updates on fresh inputs computed with the torch interpreter, an independent
path from the NumPy one the hash uses.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lion_pytorch import Lion

from evodisc import functional_hash
from evodisc.analysis import uses_reduction
from evodisc.app.cli import main
from evodisc.hashing import (
    HASH_VERSION,
    PROBE_HORIZONS,
    PROBE_TS,
    PROBES,
    _plan,
    functional_hash_info,
    make_probe,
)
from evodisc.interpreter import compile_program, init_state, step
from evodisc.program import Call, Program, format_program, parse_program, walk
from search_spaces.mutations import mutate
from search_spaces.rewrites import equivalent_rewrite
from search_spaces.space import ProgramSpace, random_program
from search_spaces.zoo import load_known, zoo

ADAMW = """
def train(w, g, lr, t, m, v):
    m = interp(g, m, 0.9)
    v = interp(square(g), v, 0.999)
    mhat = m / (1 - 0.9 ** t)
    vhat = v / (1 - 0.999 ** t)
    update = mhat / (sqrt(vhat) + 1e-8) + 0.01 * w
    return update * lr, m, v
"""

LION_SPELLINGS = {
    "zoo": """
def train(g, lr, m):
    update = sign(interp(g, m, 0.9))
    m = interp(g, m, 0.99)
    return lr * update, m
""",
    "expanded, extra dead slot": """
def train(w, g, m, v, lr):
    c = 0.9 * m + 0.1 * g
    update = sign(c)
    m = 0.99 * m + (1 - 0.99) * g
    junk = exp(v)
    v = v + junk
    return update * lr, m, v
""",
    "difference form, renamed": """
def train(lr, exp_avg, g):
    direction = exp_avg + 0.1 * (g - exp_avg)
    exp_avg = exp_avg - 0.01 * (exp_avg - g)
    step = lr * sign(direction)
    return step, exp_avg
""",
}

ADAMW_SPELLINGS = {
    "reordered independent statements": """
def train(w, g, lr, t, m, v):
    v = interp(square(g), v, 0.999)
    m = interp(g, m, 0.9)
    vhat = v / (1 - 0.999 ** t)
    mhat = m / (1 - 0.9 ** t)
    update = mhat / (sqrt(vhat) + 1e-8) + 0.01 * w
    return update * lr, m, v
""",
    "renamed, parameters reordered": """
def train(exp_avg_sq, g, exp_avg, t, lr, w):
    exp_avg = interp(g, exp_avg, 0.9)
    exp_avg_sq = interp(square(g), exp_avg_sq, 0.999)
    a = exp_avg / (1 - 0.9 ** t)
    b = exp_avg_sq / (1 - 0.999 ** t)
    d = a / (sqrt(b) + 1e-8) + 0.01 * w
    return d * lr, exp_avg_sq, exp_avg
""",
    "dead code and an unused slot": """
def train(w, g, lr, t, m, v, unused):
    m = interp(g, m, 0.9)
    junk = log(g) * unused
    v = interp(square(g), v, 0.999)
    mhat = m / (1 - 0.9 ** t)
    vhat = v / (1 - 0.999 ** t)
    unused = junk + 1
    update = mhat / (sqrt(vhat) + 1e-8) + 0.01 * w
    return update * lr, m, v, unused
""",
    "commutativity": """
def train(w, g, lr, t, m, v):
    m = interp(g, m, 0.9)
    v = interp(square(g), v, 0.999)
    mhat = m / (1 - 0.9 ** t)
    vhat = v / (1 - 0.999 ** t)
    update = w * 0.01 + mhat / (1e-8 + sqrt(vhat))
    return lr * update, m, v
""",
    "x + x for 2 x (twice 0.005 w)": """
def train(w, g, lr, t, m, v):
    m = interp(g, m, 0.9)
    v = interp(square(g), v, 0.999)
    mhat = m / (1 - 0.9 ** t)
    vhat = v / (1 - 0.999 ** t)
    decay = 0.005 * w
    update = mhat / (sqrt(vhat) + 1e-8) + (decay + decay)
    return update * lr, m, v
""",
    "a / b as a * (1 / b)": """
def train(w, g, lr, t, m, v):
    m = interp(g, m, 0.9)
    v = interp(square(g), v, 0.999)
    mhat = m * (1 / (1 - 0.9 ** t))
    vhat = v * (1 / (1 - 0.999 ** t))
    update = mhat * (1 / (sqrt(vhat) + 1e-8)) + 0.01 * w
    return update * lr, m, v
""",
    "interp expanded": """
def train(w, g, lr, t, m, v):
    m = 0.1 * g + 0.9 * m
    v = v + (1 - 0.999) * (square(g) - v)
    mhat = m / (1 - 0.9 ** t)
    vhat = v / (1 - 0.999 ** t)
    update = mhat / (vhat ** 0.5 + 1e-8) + 0.01 * w
    return update * lr, m, v
""",
}

DIFFERENT = {
    # sign(m) with another β: the weight-decay term hid it from the coarse test (genome space)
    "sign_momentum_with_decay": (
        "def train(w, g, lr, m):\n    m = interp(g, m, 0.93459)\n"
        "    return lr * (0.7705 * sign(m) + 0.01 * w), m\n",
        "def train(w, g, lr, m):\n    m = interp(g, m, 0.863)\n"
        "    return lr * (0.7705 * sign(m) + 0.01 * w), m\n",
    ),
    "beta1 0.9 -> 0.91 (Lion)": (
        LION_SPELLINGS["zoo"],
        LION_SPELLINGS["zoo"].replace("interp(g, m, 0.9)", "interp(g, m, 0.91)"),
    ),
    "beta2 0.99 -> 0.98 (Lion)": (
        LION_SPELLINGS["zoo"],
        LION_SPELLINGS["zoo"].replace("0.99", "0.98"),
    ),
    "beta1 0.9 -> 0.91 (AdamW)": (
        ADAMW,
        ADAMW.replace("interp(g, m, 0.9)", "interp(g, m, 0.91)").replace("0.9 **", "0.91 **"),
    ),
    "eps 1e-8 -> 1e-7": (ADAMW, ADAMW.replace("1e-8", "1e-7")),
    "weight decay 0.01 -> 0.0101": (ADAMW, ADAMW.replace("0.01 * w", "0.0101 * w")),
    "no bias correction of v": (ADAMW, ADAMW.replace("v / (1 - 0.999 ** t)", "v")),
    "lr vs a constant": (
        "def train(g, lr):\n    return lr * g\n",
        "def train(g, lr):\n    return 0.01 * g\n",
    ),
    "norm vs rms times sqrt(64)": (
        "def train(g, lr):\n    return lr * g / norm(g)\n",
        "def train(g, lr):\n    return lr * g / (8 * rms(g))\n",
    ),
    "sign vs tanh": (
        "def train(g, lr):\n    return lr * sign(g)\n",
        "def train(g, lr):\n    return lr * tanh(g)\n",
    ),
    "momentum chained one slot deeper": (
        "def train(g, lr, m):\n    m = interp(g, m, 0.9)\n    return lr * m, m\n",
        "def train(g, lr, m, n):\n    u = lr * n\n    n = interp(m, n, 0.9)\n"
        "    m = interp(g, m, 0.9)\n    return u, m, n\n",
    ),
}


# ---------------------------------------------------------------- a reference on fresh inputs


def torch_updates(program: Program, seed: int = 7, n: int = 41) -> np.ndarray:
    """Updates on fresh inputs, run by the torch interpreter (float64)."""
    probe = make_probe(random.Random(seed), n, PROBE_TS)
    compiled = compile_program(program, backend="torch")
    w = torch.tensor(np.array(probe.w0))
    state = init_state(program, w)
    rows = []
    for k in range(len(PROBE_TS)):
        g = torch.tensor(np.array(probe.grads[k]))
        update, state = step(compiled, w, g, float(probe.lrs[k]), float(probe.ts[k]), state)
        rows.append(update.numpy().copy())
        w = w - update
    return np.array(rows)


def assert_same_updates(a: np.ndarray, b: np.ndarray) -> None:
    finite = np.isfinite(a)
    np.testing.assert_array_equal(finite, np.isfinite(b))
    scale = float(np.abs(a[finite]).max(initial=0.0))
    np.testing.assert_allclose(a[finite], b[finite], rtol=1e-6, atol=1e-10 * scale)


# ---------------------------------------------------------------------------- equal digests


@pytest.mark.parametrize("name", list(ADAMW_SPELLINGS))
def test_equivalent_adamw_spellings_hash_equal(name):
    a, b = parse_program(ADAMW), parse_program(ADAMW_SPELLINGS[name])
    assert functional_hash(a) == functional_hash(b)
    assert_same_updates(torch_updates(a), torch_updates(b))


def test_lion_three_ways_hash_equal_and_match_lion_pytorch():
    programs = [parse_program(text) for text in LION_SPELLINGS.values()]
    assert len({functional_hash(p) for p in programs}) == 1
    assert functional_hash(programs[0]) == functional_hash(load_known("lion"))
    # The reference: lion_pytorch on the same fresh gradients, float64.
    probe = make_probe(random.Random(3), 33, PROBE_TS)
    weight = torch.nn.Parameter(torch.tensor(np.array(probe.w0)))
    optimizer = Lion([weight], lr=1.0, betas=(0.9, 0.99))
    reference = []
    for k in range(len(PROBE_TS)):
        optimizer.param_groups[0]["lr"] = float(probe.lrs[k])
        before = weight.detach().clone()
        weight.grad = torch.tensor(np.array(probe.grads[k]))
        optimizer.step()
        reference.append((before - weight.detach()).numpy())
    for program in programs:
        compiled = compile_program(program, backend="torch")
        w = torch.tensor(np.array(probe.w0))
        slots = init_state(program, w)
        for k in range(len(PROBE_TS)):
            g = torch.tensor(np.array(probe.grads[k]))
            update, slots = step(compiled, w, g, float(probe.lrs[k]), probe.ts[k], slots)
            np.testing.assert_allclose(update.numpy(), reference[k], rtol=1e-12, atol=1e-15)
            w = w - update


@pytest.mark.parametrize("name", list(DIFFERENT))
def test_different_programs_hash_differently(name):
    a, b = DIFFERENT[name]
    assert functional_hash(parse_program(a)) != functional_hash(parse_program(b))


def test_hash_is_32_hex_digits_and_accepts_text():
    digest = functional_hash(ADAMW)
    assert len(digest) == 32 and int(digest, 16) >= 0
    assert digest == functional_hash(parse_program(ADAMW))


def test_hash_is_the_same_in_a_fresh_process_with_another_hash_seed():
    code = (
        "from evodisc import functional_hash; from search_spaces.zoo import load_known; "
        "print(' '.join(functional_hash(load_known(n)) for n in ('adamw', 'lion', 'sgd')))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    here = " ".join(functional_hash(load_known(n)) for n in ("adamw", "lion", "sgd"))
    assert result.stdout.split() == here.split()


def test_non_finite_programs_are_flagged_and_hash_deterministically():
    inf_program = "def train(g, lr, m):\n    return lr * g / m, m\n"  # m stays 0: ±inf
    nan_program = "def train(g, lr):\n    return lr * sqrt(-abs(g))\n"
    partly = "def train(g, lr):\n    return lr * log(g)\n"  # NaN where g < 0 only
    for text in (inf_program, nan_program, partly):
        first, second = functional_hash_info(text), functional_hash_info(text)
        assert not first.finite
        assert first == second
    assert functional_hash_info(partly).digest != functional_hash_info(nan_program).digest
    assert functional_hash_info(ADAMW).finite


DEAD_REDUCTIONS = {
    "unused temporary": "def train(g, lr):\n    junk = norm(g)\n    return lr * g\n",
    "slot the update never reads": (
        "def train(g, lr, m):\n    m = m + rms(g)\n    return lr * sign(g), m\n"
    ),
    "overwritten before use": (
        "def train(g, lr):\n    a = mean(g)\n    a = sign(g)\n    return lr * a\n"
    ),
}
LIVE_REDUCTIONS = {
    "in the update": "def train(g, lr):\n    return lr * g / norm(g)\n",
    "through a slot, next step": (
        "def train(g, lr, m):\n    u = lr * m\n    m = rms(g)\n    return u, m\n"
    ),
}
REDUCING = ProgramSpace(ops=("add", "mul", "sign", "sqrt", "interp", "norm", "rms", "mean"))


def _has_reduction_on_registers(program: Program) -> bool:
    return _plan(compile_program(program, backend="numpy")).has_reduction


def test_the_hash_sees_a_reduction_exactly_where_the_analysis_does():
    """The hash decides on registers whether a program needs the reduction probe; it must agree
    with :func:`evodisc.analysis.uses_reduction` on the IR, dead code included."""
    for text in DEAD_REDUCTIONS.values():
        program = parse_program(text)
        assert not uses_reduction(program) and not _has_reduction_on_registers(program)
    for text in LIVE_REDUCTIONS.values():
        program = parse_program(text)
        assert uses_reduction(program) and _has_reduction_on_registers(program)
    programs = [load_known(name) for name in sorted(zoo())]
    programs += [random_program(random.Random(seed), REDUCING) for seed in range(200)]
    verdicts = []
    for program in programs:
        verdicts.append(uses_reduction(program))
        assert _has_reduction_on_registers(program) == verdicts[-1], format_program(program)
    written = [
        any(isinstance(n, Call) and n.op in ("norm", "rms", "mean") for n in _program_nodes(p))
        for p in programs
    ]
    # both answers occur often, and so do reductions that are written but dead
    assert sum(verdicts) >= 40 and len(verdicts) - sum(verdicts) >= 40
    assert sum(w and not v for w, v in zip(written, verdicts, strict=True)) >= 10
    assert any(verdicts[: len(zoo())])  # the cautious optimizers' mean(mask)


def _program_nodes(program: Program) -> list:
    roots = [s.expr for s in program.body] + list(program.returns)
    return [node for root in roots for node in walk(root)]


# -------------------------------------------------------------------------- property tests

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def _parent(seed: int) -> Program:
    """A random program, or a mutant of AdamW (programs the search really proposes)."""
    rng = random.Random(seed)
    if rng.random() < 0.5:
        return random_program(rng)
    program = load_known("adamw")
    for _ in range(rng.randint(1, 3)):
        program = mutate(program, rng)
    return program


@PROPERTY
@given(seed=SEEDS, rewrites=st.integers(min_value=1, max_value=6))
def test_exact_rewrites_of_random_programs_keep_the_hash(seed, rewrites):
    program = _parent(seed)
    rewritten = program
    rng = random.Random(seed + 1)
    for _ in range(rewrites):
        rewritten = equivalent_rewrite(rewritten, rng, exact=True)
    assert functional_hash(rewritten) == functional_hash(program)


@PROPERTY
@given(seed=SEEDS)
def test_equal_hashes_mean_equal_updates_on_fresh_inputs(seed):
    program = _parent(seed)
    rng = random.Random(seed + 2)
    others = [mutate(program, rng) for _ in range(4)]
    others.append(equivalent_rewrite(program, rng, exact=False))
    reference = torch_updates(program)
    for other in others:
        if functional_hash(other) == functional_hash(program):
            assert_same_updates(reference, torch_updates(other))


# --------------------------------------------------------------------------------------- CLI


def test_cli_hash_prints_one_line_per_file(tmp_path, capsys):
    paths = []
    for i, text in enumerate(LION_SPELLINGS.values()):
        path = tmp_path / f"lion{i}.py"
        path.write_text(text)
        paths.append(str(path))
    assert main(["hash", *paths, "adamw"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[1] for line in lines] == [*paths, "adamw"]
    digests = [line.split("  ")[0] for line in lines]
    assert len(set(digests[:3])) == 1 and digests[3] == functional_hash(load_known("adamw"))


def test_cli_hash_bad_file_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("def train(g):\n    return g.sign()\n")
    assert main(["hash", "adamw", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "bad.py:2" in captured.err


def test_digests_are_pinned_because_caches_persist_them():
    """Fitness caches and campaign logs store these digests: a change to how programs are hashed
    must bump ``HASH_VERSION`` (and these values) on purpose, never by accident."""
    assert HASH_VERSION == "evodisc-functional-hash/2"
    assert functional_hash(load_known("adamw")) == "238371e56eae1216100f4c738ebf6cf7"
    assert functional_hash(load_known("lion")) == "f58eeb275c689a82a55d29447710609d"
    assert functional_hash(load_known("sgd")) == "712f6373495a761c4882cbf05509785e"


# ------------------------------------------------------------------------- the horizon T

SCHEDULED = """
def train(w, g, lr, t, T, m):
    m = interp(g, m, 0.9)
    warm = minimum(t / (0.1 * T), 1)
    cosine = 0.5 * (1 + cos(3.141592653589793 * t / T))
    return lr * warm * cosine * m, m
"""


def _with_constant_horizon(value: float) -> Program:
    """:data:`SCHEDULED` with ``T`` replaced by the constant ``value``."""
    text = SCHEDULED.replace("t, T, m", "t, m").replace("T)", f"{value!r})")
    return parse_program(text.replace("* T", f"* {value!r}"))


def test_the_probes_horizon_is_at_or_after_their_last_step():
    assert all(probe.horizon == PROBE_HORIZONS[0] >= max(probe.ts) for probe in PROBES)
    assert max(PROBE_TS) <= min(PROBE_HORIZONS)
    with pytest.raises(ValueError, match="before the last probe step"):
        make_probe(random.Random(0), 4, (1.0, 50.0), horizon=10.0)


def test_a_program_reading_T_hashes_unlike_any_constant_horizon():
    scheduled = functional_hash(SCHEDULED)
    assert "T" not in format_program(_with_constant_horizon(500.0))
    for value in (500.0, 1500.0, *PROBE_HORIZONS):  # even the probes' own horizons
        assert functional_hash(_with_constant_horizon(value)) != scheduled, value
    # spelled another way (parameter order, t / T as t * (1 / T)) it is the same program
    other = SCHEDULED.replace("w, g, lr, t, T, m", "T, m, lr, g, t, w").replace(
        "t / T)", "t * (1 / T))"
    )
    assert functional_hash(other) == scheduled


def test_a_T_that_reaches_no_update_changes_no_hash():
    sgd = "def train(g, lr):\n    return lr * g\n"
    unread = "def train(g, lr, T):\n    return lr * g\n"
    cancelled = "def train(g, lr, t, T):\n    return lr * g + (T - T) * 0.5\n"
    dead_slot = "def train(g, lr, T, m):\n    m = m + T\n    return lr * g, m\n"
    for text in (unread, cancelled, dead_slot):
        assert functional_hash(text) == functional_hash(sgd), text
    assert functional_hash("def train(g, lr, t, T):\n    return lr * g * t / T\n") != (
        functional_hash(sgd)
    )
