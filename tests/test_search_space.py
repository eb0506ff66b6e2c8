"""The program space: random programs and mutations are always well-formed, runnable programs;
each mutation does what it says; rewrites keep the updates (checked with the torch interpreter)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evodisc.edit import Site, site_position, validate, visible_names
from evodisc.interpreter import compile_program, init_state, step
from evodisc.program import Call, Const, Expr, Program, Var, format_program, parse_program, walk
from search_spaces.mutations import (
    MUTATIONS,
    change_argument,
    change_operator,
    delete_statement,
    insert_statement,
    mutate,
    perturb_constant,
)
from search_spaces.rewrites import equivalent_rewrite
from search_spaces.space import ProgramSpace, random_program
from search_spaces.zoo import load_known

PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


def run_torch(program: Program, steps: int = 3, n: int = 17) -> np.ndarray:
    """Updates over a few steps on seeded inputs (torch, float64)."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(n, generator=gen, dtype=torch.float64)
    state = init_state(program, w)
    compiled = compile_program(program, backend="torch")
    rows = []
    for t in range(1, steps + 1):
        g = torch.randn(n, generator=gen, dtype=torch.float64)
        update, state = step(compiled, w, g, 0.01 * t, t, state)
        rows.append(update.numpy().copy())
        w = w - update
    return np.array(rows)


def assert_well_formed(program: Program) -> None:
    assert parse_program(format_program(program)) == program
    assert run_torch(program).shape == (3, 17)


def _nodes(program: Program) -> list:
    return [node for e in (*(s.expr for s in program.body), *program.returns) for node in walk(e)]


def _ops(program: Program) -> list[str]:
    return [node.op for node in _nodes(program) if hasattr(node, "op")]


def _constants(program: Program) -> list[float]:
    return [node.value for node in _nodes(program) if isinstance(node, Const)]


def _parent(seed: int) -> Program:
    rng = random.Random(seed)
    return random_program(rng) if seed % 2 else load_known("adamw")


def test_random_programs_are_seeded_sized_and_well_formed():
    space = ProgramSpace(min_statements=5, max_statements=15)
    programs = [random_program(random.Random(seed), space) for seed in range(30)]
    for program in programs:
        assert 5 <= len(program.body) <= 15
        assert program.params == ("w", "g", "lr", "t", "m", "v")
        assert program.body[-1].target == "update"
        assert_well_formed(program)
    assert random_program(random.Random(3), space) == programs[3]
    assert len({format_program(p) for p in programs}) == 30
    from_numpy = random_program(np.random.default_rng(5), space)
    assert from_numpy == random_program(np.random.default_rng(5), space)


def test_space_restricts_operators_and_rejects_unknown_ones():
    space = ProgramSpace(ops=("add", "mul", "sign"), state=("m",))
    program = random_program(random.Random(1), space)
    for _ in range(20):
        program = mutate(program, random.Random(len(program.body)), space)
    assert set(_ops(program)) <= {"add", "mul", "sign", "neg"}  # neg: a negated constant argument
    with pytest.raises(ValueError, match="unknown primitive"):
        ProgramSpace(ops=("add", "frobnicate"))


@PROPERTY
@given(seed=SEEDS, name=st.sampled_from(sorted(MUTATIONS)))
def test_every_mutation_gives_a_well_formed_program(seed, name):
    parent = _parent(seed)
    child = MUTATIONS[name](parent, random.Random(seed))
    inputs = [p for p in parent.params if p not in parent.state]
    assert [p for p in child.params if p not in child.state] == inputs  # slots may come and go
    assert_well_formed(child)


def test_each_mutation_does_what_it_says():
    rng = random.Random(0)
    adamw = load_known("adamw")
    unbounded = ProgramSpace(min_statements=0)  # AdamW is at the default min_statements
    for _ in range(20):
        assert len(insert_statement(adamw, rng).body) == len(adamw.body) + 1
        assert len(delete_statement(adamw, rng, unbounded).body) == len(adamw.body) - 1
        assert _ops(change_operator(adamw, rng)) != _ops(adamw)
        before, after = _constants(adamw), _constants(perturb_constant(adamw, rng))
        differing = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
        assert len(differing) == 1
        a, b = differing[0]
        assert 0.49 <= b / a <= 2.01


def _differing_sites(parent: Program, child: Program) -> list[Site]:
    """The topmost sites where ``child``'s expressions differ from ``parent``'s (same statements,
    targets and parameters asserted)."""
    assert child.params == parent.params
    assert [s.target for s in child.body] == [s.target for s in parent.body]
    assert len(child.returns) == len(parent.returns)
    found: list[Site] = []

    def diff(a: Expr, b: Expr, where: str, index: int, path: tuple[int, ...]) -> None:
        if a == b:
            return
        if isinstance(a, Call) and isinstance(b, Call) and a.op == b.op:
            for k, (x, y) in enumerate(zip(a.args, b.args, strict=True)):
                diff(x, y, where, index, (*path, k))
        else:
            found.append((where, index, path))

    for i, (a, b) in enumerate(zip(parent.body, child.body, strict=True)):
        diff(a.expr, b.expr, "body", i, ())
    for j, (a, b) in enumerate(zip(parent.returns, child.returns, strict=True)):
        diff(a, b, "return", j, ())
    return found


def test_change_argument_changes_one_leaf_to_a_visible_name_or_a_constant():
    parents = [load_known(name) for name in ("adamw", "lion", "nadam", "cautious_adamw")]
    parents += [random_program(random.Random(seed)) for seed in range(40)]
    kinds = set()
    for seed in range(200):
        parent = parents[seed % len(parents)]
        child = change_argument(parent, random.Random(seed))
        assert validate(child) is child
        assert parse_program(format_program(child)) == child
        (site,) = _differing_sites(parent, child)
        where, index, path = site
        new = child.body[index].expr if where == "body" else child.returns[index]
        for k in path:
            new = new.args[k]
        if isinstance(new, Var):
            assert new.name in visible_names(parent, site_position(parent, site))
        else:
            assert isinstance(new, Const), new
        kinds.add(type(new))
    assert kinds == {Var, Const}


def test_mutate_uses_all_operators_and_changes_the_program():
    rng = random.Random(1)
    parent = load_known("adamw")
    children = [mutate(parent, rng, ProgramSpace(min_statements=0)) for _ in range(200)]
    sizes = {len(c.body) - len(parent.body) for c in children}
    assert sizes == {-1, 0, 1}
    assert sum(c != parent for c in children) >= 190


def test_deleting_the_only_definition_repairs_later_uses():
    program = parse_program("def train(g, lr):\n    a = sign(g)\n    return lr * a\n")
    child = delete_statement(program, random.Random(0), ProgramSpace(min_statements=0))
    assert child.body == ()
    assert_well_formed(child)


@PROPERTY
@given(seed=SEEDS, exact=st.booleans())
def test_rewrites_keep_the_updates(seed, exact):
    program = _parent(seed)
    rng = random.Random(seed)
    rewritten = program
    for _ in range(4):
        rewritten = equivalent_rewrite(rewritten, rng, exact=exact)
    assert_well_formed(rewritten)
    a, b = run_torch(program), run_torch(rewritten)
    if exact:
        np.testing.assert_array_equal(a, b)
    else:
        finite = np.isfinite(a) & np.isfinite(b)
        np.testing.assert_allclose(a[finite], b[finite], rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize(
    "settings_",
    [
        {"state": ("lr",)},
        {"state": ("m", "m")},
        {"state": ("exp",)},
        {"inputs": ("g", "lr", "x")},
        {"ops": ()},
        {"constants": ()},
        {"update_name": "m"},
        {"min_statements": 4, "max_statements": 2},
    ],
)
def test_a_program_space_that_would_build_malformed_programs_is_rejected(settings_):
    with pytest.raises(ValueError):
        ProgramSpace(**settings_)
