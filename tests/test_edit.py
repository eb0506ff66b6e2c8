"""The IR toolkit (:mod:`evodisc.edit`): sites, replacement, substitution, renaming, inlining
and validation of programs built in code."""

from __future__ import annotations

import math
import random
import re

import numpy as np
import pytest

from evodisc.edit import (
    inline,
    node_at,
    rename,
    replace_at,
    replace_constants,
    sites,
    substitute,
    validate,
)
from evodisc.hashing import functional_hash
from evodisc.interpreter import compile_program
from evodisc.program import (
    Assign,
    Call,
    Const,
    Program,
    ProgramError,
    Var,
    format_program,
    names_used,
    parse_program,
    walk,
)
from search_spaces.space import ProgramSpace, random_program
from search_spaces.zoo import load_known, zoo

ZOO = {name: load_known(name) for name in sorted(zoo())}
# Few statements: inlined trees are walked once per path, which grows with every reuse.
SMALL = ProgramSpace(min_statements=2, max_statements=8)
RANDOM = [random_program(random.Random(seed), SMALL) for seed in range(60)]

LION_LIKE = parse_program(
    """\
def train(g, lr, m):
    lr = lr * 0.5
    m = interp(g, m, 0.9)
    u = sign(m)
    return lr * u, m
"""
)


def _returns(text: str) -> tuple:
    return parse_program(text).returns


def _run_numpy(program: Program, seed: int) -> list[np.ndarray]:
    """One step of ``program`` on random arrays for every parameter (``t`` and ``lr`` > 0)."""
    rng = np.random.default_rng(seed)
    inputs = []
    for name in program.params:
        if name == "t":
            inputs.append(rng.integers(1, 50, 7).astype(np.float64))
        elif name == "lr":
            inputs.append(10.0 ** rng.uniform(-4, 0, 7))
        else:
            inputs.append(rng.standard_normal(7))
    outputs = compile_program(program, "numpy")(inputs)
    return [np.broadcast_to(np.asarray(out, dtype=np.float64), (7,)) for out in outputs]


# ------------------------------------------------------------------------------------ inline


def test_inline_substitutes_statements_in_order():
    m = "interp(g, m, 0.9)"
    flat = f"def train(g, lr, m):\n    return lr * 0.5 * sign({m}), {m}\n"
    assert inline(LION_LIKE) == _returns(flat)


@pytest.mark.parametrize(
    "program", [*ZOO.values(), *RANDOM], ids=[*ZOO, *(f"random{i}" for i in range(len(RANDOM)))]
)
def test_inlined_returns_compute_what_the_program_computes(program):
    inlined = inline(program)
    assert len(inlined) == len(program.returns)
    for expr in inlined:
        assert names_used(expr) <= set(program.params)  # over the parameters only
    flat = validate(Program(program.params, (), inlined))
    for seed in range(2):
        expected, actual = _run_numpy(program, seed), _run_numpy(flat, seed)
        for want, got in zip(expected, actual, strict=True):
            np.testing.assert_array_equal(got, want)  # the same operations: bit for bit


# ---------------------------------------------------------------------------------- validate


@pytest.mark.parametrize("program", [*ZOO.values(), *RANDOM[:20]])
def test_validate_accepts_zoo_and_random_programs(program):
    assert validate(program) is program


G, LR, M = Var("g"), Var("lr"), Var("m")

MALFORMED = {
    "undefined name 'x'": Program(("g", "lr"), (), (Call("mul", (LR, Var("x"))),)),
    "undefined name 'a'": Program(
        ("g", "lr"), (Assign("b", Var("a")), Assign("a", G)), (Call("mul", (LR, Var("b"))),)
    ),  # used before its definition
    "unknown primitive 'frobnicate'": Program(("g",), (), (Call("frobnicate", (G,)),)),
    r"interp\(\) takes 3 argument\(s\), got 2": Program(("g",), (), (Call("interp", (G, G)),)),
    r"sign\(\) takes 1 argument\(s\), got 2": Program(("g",), (), (Call("sign", (G, G)),)),
    "constant inf is not finite": Program(("g",), (), (Call("mul", (G, Const(math.inf))),)),
    "constant nan is not finite": Program(("g",), (), (Call("add", (G, Const(math.nan))),)),
    r"1 value\(s\), expected 2": Program(("g", "lr", "m"), (), (Call("mul", (LR, G)),)),
    r"3 value\(s\), expected 2": Program(("g", "m"), (), (G, M, M)),
    "duplicate parameter": Program(("g", "g"), (), (G,)),
    "'sqrt' cannot name a parameter": Program(("g", "sqrt"), (), (G, G)),
    "'exp' cannot be assigned to": Program(("g",), (Assign("exp", G),), (G,)),
}


@pytest.mark.parametrize("problem", list(MALFORMED))
def test_validate_rejects_malformed_programs_saying_why(problem):
    with pytest.raises(ProgramError, match=problem):
        validate(MALFORMED[problem])


# ------------------------------------------------------------------------ substitute, rename


def test_substitute_replaces_every_variable_by_a_name_or_an_expression():
    expr = parse_program("def train(g, m):\n    return interp(g, m, 0.9) * m - g, m\n").update
    renamed = substitute(expr, lambda v: {"m": "v"}.get(v, v))
    assert renamed == _returns("def train(g, v):\n    return interp(g, v, 0.9) * v - g, v\n")[0]
    doubled = substitute(expr, lambda v: Call("mul", (Const(2.0), Var(v))))
    text = "def train(g, m):\n    return interp(2 * g, 2 * m, 0.9) * (2 * m) - 2 * g, m\n"
    assert doubled == _returns(text)[0]
    assert substitute(expr, lambda v: v) == expr
    # a negated variable replaced by a constant is the negative constant, as the parser reads it
    assert substitute(Call("neg", (G,)), lambda v: Const(2.5)) == Const(-2.5)


def test_rename_renames_parameters_targets_and_uses():
    adamw = ZOO["adamw"]
    mapping = {"m": "exp_avg", "v": "exp_avg_sq", "update": "step"}
    text = format_program(adamw)
    for old, new in mapping.items():
        text = re.sub(rf"\b{old}\b", new, text)
    renamed = rename(adamw, mapping)
    assert renamed == parse_program(text)
    assert renamed.state == ("exp_avg", "exp_avg_sq")
    assert functional_hash(renamed) == functional_hash(adamw)
    assert rename(adamw, {}) == adamw and adamw == load_known("adamw")  # argument unchanged


# ---------------------------------------------------------------- sites, node_at, replace_at


def test_sites_address_every_node_in_reading_order():
    for program in (*ZOO.values(), *RANDOM[:10]):
        every = sites(program, lambda path, node: True)
        roots = [s.expr for s in program.body] + list(program.returns)
        assert [node_at(program, s) for s in every] == [n for r in roots for n in walk(r)]
    program = parse_program("def train(g, lr):\n    a = sign(g)\n    return lr * a\n")
    assert sites(program, lambda path, node: isinstance(node, Var)) == [
        ("body", 0, (0,)),
        ("return", 0, (0,)),
        ("return", 0, (1,)),
    ]
    assert sites(program, lambda path, node: not path) == [("body", 0, ()), ("return", 0, ())]


def test_replace_at_changes_that_node_only():
    for program in (ZOO["adamw"], ZOO["nadam"], *RANDOM[:10]):
        every = sites(program, lambda path, node: True)
        for site in every:
            new = LR if node_at(program, site) != LR else G
            edited = replace_at(program, site, new)
            assert node_at(edited, site) == new
            assert validate(edited) is edited
            others = [s for s in every if not _on_path(s, site)]
            assert all(node_at(edited, s) == node_at(program, s) for s in others)
            assert [s.target for s in edited.body] == [s.target for s in program.body]
            assert len(edited.returns) == len(program.returns)
    # under a negation a constant is folded into it, as the parser reads ``-2.5``
    program = parse_program("def train(g, lr):\n    return lr * -g\n")
    edited = replace_at(program, ("return", 0, (1, 0)), Const(2.5))
    assert edited == parse_program("def train(g, lr):\n    return lr * -2.5\n")
    assert node_at(edited, ("return", 0, (1,))) == Const(-2.5)


def _on_path(site, top) -> bool:
    """True if ``site`` is ``top``, below it, or above it (its value contains the change)."""
    (w1, i1, p1), (w2, i2, p2) = site, top
    n = min(len(p1), len(p2))
    return (w1, i1) == (w2, i2) and p1[:n] == p2[:n]


def test_replace_constants_moves_every_occurrence_at_once():
    adamw = ZOO["adamw"]
    edited = replace_constants(adamw, {0.9: 0.8, 0.999: 0.99})
    text = format_program(edited)
    assert "interp(g, m, 0.8)" in text and "1 - 0.8 ** t" in text  # the bias correction moves
    assert "interp(square(g), v, 0.99)" in text and "1 - 0.99 ** t" in text
    assert "0.9" not in text.replace("0.99", "") and validate(edited) is edited
    assert parse_program(text) == edited
    assert replace_constants(adamw, {}) == adamw and replace_constants(adamw, {0.5: 0.1}) == adamw
    # simultaneous: a swap is a swap, not one value twice
    swapped = replace_constants(adamw, {0.9: 0.999, 0.999: 0.9})
    assert replace_constants(swapped, {0.9: 0.999, 0.999: 0.9}) == adamw
    # a constant under a negation stays folded, as the parser reads it
    program = parse_program("def train(g, lr):\n    return lr * -0.5 * g\n")
    assert replace_constants(program, {-0.5: -0.25}) == parse_program(
        "def train(g, lr):\n    return lr * -0.25 * g\n"
    )
    with pytest.raises(ProgramError, match="not finite"):
        replace_constants(adamw, {0.9: math.inf})
