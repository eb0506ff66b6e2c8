"""Simplification: every exact step keeps the functional hash, the result prints and parses
back, approximate steps are opt-in and labelled, SymPy runs under a deadline."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

import evodisc
from evodisc import functional_hash, parse_program
from evodisc.app.cli import main
from evodisc.edit import validate
from evodisc.emit import operations
from evodisc.inspect import recognise
from evodisc.inspect.simplify import Simplified, run_with_deadline, simplify
from evodisc.program import Call, format_program, walk
from search_spaces.rewrites import equivalent_rewrite
from search_spaces.space import random_program
from search_spaces.zoo import load_known, zoo

#: Lion with noise: a dead statement, a dead state slot, the state update written before the
#: update, ``c / sqrt(c * c)`` for ``sign(c)``, constants written as ``1 - 0.9``.
NOISY_LION = """\
def train(w, g, lr, m, v):
    dead = cosh(g) * 3
    m_next = interp(g, m, 1 - 0.01)
    c = (1 - 0.9) * g + 0.9 * m
    v = exp(dead)
    update = c / sqrt(c * c)
    return lr * update, m_next, v
"""

#: A raw program of the kind a search reports (after the Lion paper's): a clipped gradient
#: through ``arcsin``; slot ``m`` overwritten before it is read; a ``cosh`` statement that feeds
#: only that dead slot; ``m / sqrt(m * m)``; ``interp`` with 0.899 and 1.109; a weight decay;
#: the learning rate rescaled inside the program.
RAW = """\
def train(w, g, m, v, lr):
    g = clip(g, lr)
    g = arcsin(g)
    m = interp(g, v, 0.899)
    m2 = m * m
    v = interp(g, m, 1.109)
    abs_m = sqrt(m2)
    update = m / abs_m
    wd = w * 0.4602
    update = update + wd
    lr = lr * 0.0002
    m = cosh(update)
    update = update * lr
    return update, m, v
"""

SIGN_MOMENTUM = {"lion", "signum", "cautious_lion"}


def _check(result: Simplified, program) -> None:
    """What every simplification must satisfy."""
    assert result.original is program  # never replaced
    assert result.functional_hash == functional_hash(result.program)
    if result.exact:
        assert result.functional_hash == functional_hash(program)
    assert parse_program(format_program(result.program)) == result.program
    validate(result.program)


def test_noisy_lion_simplifies_to_the_two_statement_lion():
    program = parse_program(NOISY_LION)
    result = simplify(program)
    _check(result, program)
    lion = load_known("lion")
    assert len(result.program.body) == 2
    assert result.functional_hash == functional_hash(lion)
    assert format_program(result.program) == format_program(lion)  # the textbook form
    assert result.closest.name == "lion" and result.closest.exact
    assert result.closest.describe() == "equivalent to Lion"
    kinds = [(s.kind, s.accepted) for s in result.steps]
    assert ("dead state", True) in kinds and ("constant folding", True) in kinds
    assert any("`dead = cosh(g) * 3`" in line for line in result.removed)
    assert any("x/|x| → sign(x)" in s.detail for s in result.steps if s.kind == "symbolic")


def test_raw_search_program_loses_dead_code_and_is_named_a_sign_momentum_rule():
    program = parse_program(RAW)
    result = simplify(program)
    _check(result, program)
    simplified = result.program
    assert operations(simplified) < operations(program)
    assert len(simplified.body) < len(program.body)
    assert simplified.state == ("v",)  # the dead slot m is gone
    used = {node.op for e in simplified.returns for node in walk(e) if isinstance(node, Call)}
    used |= {n.op for s in simplified.body for n in walk(s.expr) if isinstance(n, Call)}
    assert "cosh" not in used and {"sign", "arcsin", "clip"} <= used
    assert "`m = cosh(update)` (its value never reaches an update)" in " ".join(result.removed)
    assert any("slot m: its old value is never read" in line for line in result.removed)
    assert result.closest.name in SIGN_MOMENTUM
    lion = next(m for m in recognise.recognise(simplified, top=19) if m.name == "lion")
    assert dict(lion.constants) == {"β₁": 0.899, "β₂": 0.996991}  # read off by structure
    assert result.math[0].startswith("v_t = 0.996991 v_{t-1} + 0.003009 arcsin(clip(g_t, lr))")
    assert result.math[-1].startswith("u_t = 0.0002 lr · (0.4602 w_{t-1} + sign(")


@pytest.mark.parametrize("name", sorted(zoo()))
def test_every_zoo_optimizer_keeps_its_hash(name):
    program = load_known(name)
    result = simplify(program, recognise=False)
    _check(result, program)
    assert result.exact
    assert operations(result.program) <= operations(program)


def test_rewritten_zoo_programs_keep_their_hash_and_get_no_longer():
    rng = random.Random(7)
    for entry in zoo().values():
        program = entry.load()
        for _ in range(4):
            program = equivalent_rewrite(program, rng, exact=False)
        result = simplify(program, recognise=False)
        _check(result, program)
        assert operations(result.program) <= operations(program)


def test_random_programs_keep_their_hash():
    rng = random.Random(11)
    before = after = 0
    for _ in range(15):
        program = random_program(rng)
        result = simplify(program, recognise=False)
        _check(result, program)
        before, after = before + operations(program), after + operations(result.program)
    assert after < before / 2  # random programs are mostly dead code


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        ("lr * g / sqrt(g * g)", "lr * sign(g)"),
        ("lr * abs(g) / g", "lr * sign(g)"),
        ("lr * sqrt(g * g)", "lr * abs(g)"),
        ("lr * ((1 - 0.7) * g + 0.7 * w)", "lr * interp(g, w, 0.7)"),
        ("lr * (0.05 * g + 0.45 * w)", "0.5 * lr * interp(g, w, 0.9)"),
        ("lr * maximum(-lr, minimum(g, lr))", "lr * clip(g, lr)"),
        ("lr * maximum(g, 0)", "lr * relu(g)"),
        ("lr / (1 + exp(-g))", "lr * sigmoid(g)"),
        ("lr * (g * 2 - g)", "lr * g"),
    ],
)
def test_sympy_forms_map_back_to_primitives(update, expected):
    program = parse_program(f"def train(w, g, lr):\n    return {update}\n")
    result = simplify(program, recognise=False)
    _check(result, program)
    assert format_program(result.program).splitlines()[-1] == f"    return {expected}"


def test_a_rewrite_that_changes_the_updates_is_rejected():
    """SymPy says sqrt(g)² = g; the program gives NaN for g < 0, so the hash differs."""
    program = parse_program("def train(g, lr):\n    return lr * square(sqrt(g))\n")
    result = simplify(program, recognise=False)
    _check(result, program)
    assert result.program == program
    rejected = [s for s in result.steps if not s.accepted]
    assert len(rejected) == 1 and rejected[0].kind == "symbolic"  # each candidate tried once
    assert str(rejected[0]).startswith("rejected, symbolic: the update: 3 → 1 operations")


def test_math_lines_and_latex():
    lion = simplify(load_known("lion"), recognise=False)
    assert lion.math == ("m_t = 0.01 g_t + 0.99 m_{t-1}", "u_t = lr · sign(0.1 g_t + 0.9 m_{t-1})")
    assert lion.latex == (
        "\\begin{aligned}\n"
        "m_t &= 0.01 g_t + 0.99 m_{t-1} \\\\\n"
        "u_t &= \\eta \\operatorname{sign}{\\left(0.1 g_t + 0.9 m_{t-1} \\right)}\n"
        "\\end{aligned}"
    )
    adamw = simplify(load_known("adamw"), recognise=False)
    assert [line.split(" = ")[0] for line in adamw.math] == ["m_t", "v_t", "u_t"]
    assert "m_t" in adamw.math[2] and "v_t" in adamw.math[2] and "0.01 w_{t-1}" in adamw.math[2]
    assert "10^{-8}" in adamw.latex


def test_the_horizon_T_is_a_positive_symbol_of_its_own():
    """A warm-up and cosine schedule: T stays T (positive, like lr and t) in the simplified
    program, the math and the LaTeX; a T that nothing reads is removed like any input."""
    text = """
def train(w, g, lr, t, T, m, junk):
    m = interp(g, m, 0.9)
    junk = junk + T
    warm = minimum(t / (0.1 * T), 1)
    cosine = 0.5 * (1 + cos(3.141592653589793 * t / T))
    return lr * warm * cosine * m * abs(T) / T, m, junk
"""
    result = simplify(parse_program(text), recognise=False)
    assert result.exact and result.program.params == ("g", "lr", "t", "T", "m")
    assert "abs" not in format_program(result.program)  # |T| / T = 1: T > 0
    assert result.math[0] == "m_t = 0.1 g_t + 0.9 m_{t-1}"
    assert "t/T" in result.math[1] and "min(1, 10 t/T)" in result.math[1]
    assert "\\frac{10 t}{T}" in result.latex
    unread = simplify(parse_program("def train(g, lr, t, T):\n    return lr * g\n"))
    assert unread.program.params == ("g", "lr")
    assert "input t, T is never read" in unread.report()


def test_approximate_steps_are_opt_in_labelled_and_within_tolerance():
    program = parse_program(RAW)
    exact = simplify(program, recognise=False)
    assert all(s.exact for s in exact.steps)
    result = simplify(program, approximate=True, tolerance=0.05, recognise=False)
    assert not result.exact and result.tolerance == 0.05
    approximate = [s for s in result.steps if not s.exact]
    assert approximate and all(s.accepted and s.deviation <= 0.05 for s in approximate)
    assert "rounded constant: 0.996991 → 0.997" in " ".join(str(s) for s in approximate)
    assert result.functional_hash != result.original_hash
    change = recognise.deviation(
        recognise.probe_updates(exact.program), recognise.probe_updates(result.program)
    )
    assert 0 < change <= 0.05
    assert "APPROXIMATE within tolerance 0.05" in result.report()
    # A tighter tolerance takes fewer liberties.
    tight = simplify(program, approximate=True, tolerance=0.01, recognise=False)
    assert len([s for s in tight.steps if not s.exact]) < len(approximate)


def test_approximate_steps_never_drop_an_input():
    """AdamW's ε goes (below tolerance); its weight decay, the only use of w, stays."""
    result = simplify(load_known("adamw"), approximate=True, recognise=False)
    dropped = [s.detail for s in result.steps if s.kind == "dropped term"]
    assert len(dropped) == 1 and dropped[0].startswith("dropped the term `1e-08` (updates change")
    assert "w" in result.program.params and "0.01 * w" in format_program(result.program)


def _slow_program(depth: int = 40):
    """An update nested ``depth`` deep with each level used twice: as a tree it is 2**depth
    nodes, which SymPy's rewriting walks without sharing."""
    lines = ["def train(g, lr, m):", "    a = interp(g, m, 0.9)"]
    lines += ["    a = sin(a * a + a) + cos(a)"] * depth
    lines.append("    return lr * a, interp(g, m, 0.9)")
    return parse_program("\n".join(lines) + "\n")


def test_sympy_past_its_deadline_falls_back_to_the_last_verified_form():
    program = (
        _slow_program()
    )  # SymPy would walk its 2**40 nodes for ever: it returns by the deadline
    result = simplify(program, deadline=0.5, recognise=False)
    _check(result, program)
    deadline = [s for s in result.steps if s.kind == "deadline"]
    assert deadline and "kept the last verified form" in deadline[0].detail
    # Math lines written from the statements: one per statement, new state value, update.
    assert len(result.math) == len(result.program.body) + len(result.program.state) + 1
    assert result.exact and operations(result.program) <= operations(program)


def _forever():
    yield "first"
    while True:
        time.sleep(0.01)


def _fails():
    yield 1
    raise ValueError("no")


def test_run_with_deadline_kills_the_child_and_keeps_what_came():
    # _forever never ends: returning at all means the child was stopped (5 s leave its first
    # item time to arrive on a loaded machine)
    items, finished, error = run_with_deadline(_forever, (), 5.0)
    assert items == ["first"] and not finished and error is None
    # a child that fails is reported when it fails, not at the deadline
    assert run_with_deadline(_fails, (), 600.0) == ([1], False, "ValueError: no")


def test_simplify_is_exported_lazily():
    assert evodisc.simplify is simplify and evodisc.Simplified is Simplified
    assert evodisc.closest_known is recognise.closest_known


def test_cli_simplify_prints_program_math_matches_and_removals(tmp_path, capsys):
    path = tmp_path / "noisy.py"
    path.write_text(NOISY_LION)
    assert main(["simplify", str(path)]) == 0
    out = capsys.readouterr().out
    assert format_program(load_known("lion")) in out
    assert (
        "math:\n  m_t = 0.01 g_t + 0.99 m_{t-1}\n  u_t = lr · sign(0.1 g_t + 0.9 m_{t-1})\n" in out
    )
    assert "closest known optimizers" in out and "  1. equivalent to Lion\n" in out
    assert "dead code: `dead = cosh(g) * 3` (its value never reaches an update)" in out
    assert out.rstrip().endswith(NOISY_LION.rstrip())  # the original, beside it
    assert "\\begin{aligned}" not in out
    assert main(["simplify", str(path), "--latex"]) == 0
    assert "latex:\n\\begin{aligned}\nm_t &= 0.01 g_t" in capsys.readouterr().out


def test_cli_export_latex_and_errors(capsys):
    assert main(["export", "lion", "--to", "latex"]) == 0
    assert capsys.readouterr().out == simplify(load_known("lion"), recognise=False).latex + "\n"
    assert main(["simplify", "lion", "--tolerance", "-1"]) == 2
    err = capsys.readouterr().err
    assert err == "evodisc: error: --tolerance must be a number ≥ 0, not -1.0\n"


def test_probe_updates_are_finite_for_the_zoo():
    for entry in zoo().values():
        assert np.isfinite(recognise.probe_updates(entry.load())).all()
