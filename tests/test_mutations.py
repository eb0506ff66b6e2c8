"""Mutations keep to the program space: well-formed output, statement and state-slot bounds, β in
(0, 1); state slots can grow and shrink; mutations are chosen by weight among those that apply."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from evodisc.analysis import analyse
from evodisc.edit import validate
from evodisc.program import Const, Program, Var, format_program, parse_program, walk
from evodisc.validity import check_candidate
from search_spaces.mutations import (
    APPLIES,
    MUTATIONS,
    add_state_slot,
    can_apply,
    delete_statement,
    insert_statement,
    perturb_constant,
    pick_mutation,
    remove_state_slot,
)
from search_spaces.space import ProgramSpace, random_program
from search_spaces.zoo import load_known, zoo

ZOO = [load_known(name) for name in zoo()]
WIDE = ProgramSpace(min_statements=0, max_statements=20)


def _parents() -> list[Program]:
    return ZOO + [random_program(random.Random(seed)) for seed in range(20)]


def _constants(program: Program) -> list[float]:
    exprs = [*(s.expr for s in program.body), *program.returns]
    return [node.value for e in exprs for node in walk(e) if isinstance(node, Const)]


def _reads(program: Program, name: str) -> bool:
    exprs = [*(s.expr for s in program.body), program.update]
    return any(getattr(node, "name", None) == name for e in exprs for node in walk(e))


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_every_mutation_gives_a_well_formed_program_within_the_space(name):
    space = ProgramSpace(min_statements=1, max_statements=8, max_state_slots=3)
    for seed, parent in enumerate(_parents() * 3):
        child = MUTATIONS[name](parent, random.Random(seed), space)
        assert validate(child) is child
        assert parse_program(format_program(child)) == child
        check_candidate(child)  # runs on the probe inputs without raising
        if len(parent.body) <= space.max_statements:
            assert len(child.body) <= space.max_statements
        if len(parent.body) >= space.min_statements:
            assert len(child.body) >= space.min_statements
        assert len(child.state) <= max(len(parent.state), space.max_state_slots)


def test_preconditions_are_registered_for_every_mutation():
    assert set(APPLIES) == set(MUTATIONS)


def test_insert_and_delete_respect_the_statement_bounds():
    space = ProgramSpace(min_statements=5, max_statements=6)
    adamw = load_known("adamw")  # 5 statements
    for seed in range(30):
        grown = insert_statement(adamw, random.Random(seed), space)
        assert len(grown.body) == 6
        assert len(insert_statement(grown, random.Random(seed), space).body) == 6
        assert len(delete_statement(grown, random.Random(seed), space).body) == 5
        assert len(delete_statement(adamw, random.Random(seed), space).body) == 5
    assert not can_apply("delete_statement", adamw, space)
    assert not can_apply("insert_statement", grown, space)


def test_deleting_the_only_definition_repairs_later_uses():
    program = parse_program("def train(g, lr):\n    a = sign(g)\n    return lr * a\n")
    child = delete_statement(program, random.Random(0), WIDE)
    assert child.body == ()
    assert validate(child) is child


def test_perturbed_betas_stay_in_the_unit_interval():
    program = parse_program("def train(g, m):\n    m = interp(g, m, 0.9)\n    return m, m\n")
    rng = random.Random(0)
    betas = [_constants(perturb_constant(program, rng))[0] for _ in range(300)]
    assert 0.8 <= min(betas) < 0.86 and 0.94 < max(betas) <= 0.96
    for start in (0.999, 0.5, 1e-8, 0.01):
        value = start
        for _ in range(300):
            one = parse_program(f"def train(g):\n    return g * {value!r}\n")
            value = _constants(perturb_constant(one, rng))[0]
            assert 0 < value < 1
    other = parse_program("def train(g):\n    return g * 3\n")
    scaled = [_constants(perturb_constant(other, rng))[0] for _ in range(100)]
    assert min(scaled) >= 1.5 and max(scaled) <= 6 and max(scaled) > 5


def test_a_perturbed_constant_near_one_moves_its_distance_to_one():
    program = parse_program("def train(g):\n    return g * 0.999\n")
    rng = random.Random(1)
    values = [_constants(perturb_constant(program, rng))[0] for _ in range(200)]
    assert all(0.998 <= v <= 0.9995 for v in values)
    assert len(set(values)) > 20


def test_lion_grows_a_second_state_slot_that_the_update_needs():
    lion = load_known("lion")
    memories = Counter()
    for seed in range(40):
        child = add_state_slot(lion, random.Random(seed))
        assert child.state == ("m", "v")
        assert len(child.body) == len(lion.body) + 1
        assert child.returns[1:] == (lion.returns[1], Var("v"))
        assert _reads(child, "v")
        memories[analyse(child).memory] += 1
    assert memories[2] >= 10  # often the update needs both slots


def test_add_state_slot_respects_the_slot_and_statement_limits():
    adamw = load_known("adamw")
    assert add_state_slot(adamw, random.Random(0), ProgramSpace(max_state_slots=2)).state == (
        "m",
        "v",
    )
    full = ProgramSpace(min_statements=0, max_statements=5)
    assert add_state_slot(adamw, random.Random(0), full).state == ("m", "v")
    grown = add_state_slot(adamw, random.Random(0), ProgramSpace(max_state_slots=3))
    assert len(grown.state) == 3 and grown.state[2] not in ("m", "v")
    restricted = ProgramSpace(ops=("add", "mul", "sign"), state=("m",))
    child = add_state_slot(load_known("lion"), random.Random(3), restricted)
    assert len(child.state) == 2
    (added,) = [s for s in child.body if s.target == child.state[1]]
    assert {getattr(node, "op", "add") for node in walk(added.expr)} <= {"add", "mul", "sign"}


def test_remove_state_slot_drops_a_slot_and_repairs_its_reads():
    adamw = load_known("adamw")
    removed = {remove_state_slot(adamw, random.Random(seed)).state for seed in range(20)}
    assert removed == {("m",), ("v",)}
    signsgd = load_known("signsgd")
    assert not can_apply("remove_state_slot", signsgd)
    lion = remove_state_slot(load_known("lion"), random.Random(0))
    assert lion.state == () and len(lion.returns) == 1
    assert validate(lion) is lion


def test_pick_mutation_follows_the_weights_and_never_uses_a_zero_weight():
    program = random_program(random.Random(0), WIDE)
    weights = {"insert_statement": 1.0, "change_argument": 3.0, "perturb_constant": 0.0}
    rng = random.Random(0)
    counts = Counter(pick_mutation(program, rng, WIDE, weights) for _ in range(2000))
    assert set(counts) == {"insert_statement", "change_argument"}
    assert 0.2 <= counts["insert_statement"] / 2000 <= 0.3


def test_pick_mutation_skips_mutations_that_cannot_apply():
    space = ProgramSpace(min_statements=5, max_statements=15)
    adamw = load_known("adamw")  # at min_statements: no deletion
    rng = random.Random(0)
    picked = {pick_mutation(adamw, rng, space) for _ in range(300)}
    assert picked == set(MUTATIONS) - {"delete_statement"}
    only_delete = {"delete_statement": 1.0}
    assert pick_mutation(adamw, rng, space, only_delete) == "delete_statement"  # falls back
    with pytest.raises(ValueError, match="positive weight"):
        pick_mutation(adamw, rng, space, {"delete_statement": 0.0})
