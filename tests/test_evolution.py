"""Regularized evolution without Ray or torch: selection, aging, mutation weights, seeding,
restarts, islands and migration, determinism, and a checkpoint that continues identically."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from collections import Counter

import pytest

from evodisc.program import format_program
from evodisc.validity import check_candidate
from search_spaces import mutations
from search_spaces.evolution import (
    Candidate,
    EvolutionConfig,
    Member,
    RegularizedEvolution,
    age,
    migrants,
    tournament,
)
from search_spaces.zoo import load_known

SMALL = dict(population=6, tournament=3, seed=1)
ADAMW = load_known("adamw")


def fake_fitness(candidate: Candidate) -> float:
    """Deterministic stand-in for training: a number in [0, 1) from the functional hash."""
    if not candidate.validity.valid:
        return 0.0
    return int(candidate.validity.functional_hash[:8], 16) / 2**32


def run(evolution: RegularizedEvolution, n: int, fitness=fake_fitness) -> list[Candidate]:
    """``n`` candidates asked and told one at a time."""
    asked = []
    for _ in range(n):
        candidate = evolution.ask()
        evolution.tell(candidate.id, fitness(candidate))
        asked.append(candidate)
    return asked


def trace(candidates: list[Candidate]) -> list[tuple]:
    return [(c.id, str(c.program), c.parent_id, c.mutation, c.island) for c in candidates]


def member(id_: int, fitness: float) -> Member:
    program = load_known("sgd")
    return Member(Candidate(id_, program, None, "random", 0, check_candidate(program)), fitness)


# ------------------------------------------------------------------------- the pure operators


def test_tournament_takes_the_fittest_of_its_sample_with_ties_to_the_lower_id():
    members = [member(i, f) for i, f in enumerate([0.3, 0.9, 0.1, 0.9, 0.5, 0.2])]
    for seed in range(50):
        sample = random.Random(seed).choices(members, k=3)
        winner = tournament(members, 3, random.Random(seed))
        assert winner.fitness == max(m.fitness for m in sample)
        fittest = [m.candidate.id for m in sample if m.fitness == winner.fitness]
        assert winner.candidate.id == min(fittest)
    assert tournament(members, 100, random.Random(0)).candidate.id == 1
    assert tournament(members[:1], 3, random.Random(0)) is members[0]


def test_aging_drops_the_oldest_not_the_worst():
    population = [member(0, 0.9), member(1, 0.1), member(2, 0.5)]
    aged = age(population, member(3, 0.0), size=3)
    assert [m.candidate.id for m in aged] == [1, 2, 3]
    assert [m.candidate.id for m in age(population, member(3, 0.0), size=5)] == [0, 1, 2, 3]


def test_migrants_are_the_best_of_the_previous_island():
    islands = [[member(0, 0.1), member(1, 0.7)], [member(2, 0.4), member(3, 0.2)], []]
    arriving = migrants(islands, size=1)
    assert [[m.candidate.id for m in a] for a in arriving] == [[], [1], [2]]


# ------------------------------------------------------------------------------ the evolution


def test_warm_start_puts_the_zoo_programs_first_and_unchanged():
    config = EvolutionConfig(
        population=5, tournament=5, warm_start=("adamw", "lion"), random_programs=1
    )
    evolution = RegularizedEvolution(config)
    adamw, adamw_copy, lion, lion_copy, random_one = [evolution.ask() for _ in range(5)]
    assert (adamw.mutation, adamw.parent_id, adamw.program) == ("seed:adamw", None, ADAMW)
    assert (lion.mutation, lion.parent_id, lion.program) == ("seed:lion", None, load_known("lion"))
    assert adamw.validity.valid and lion.validity.valid
    assert adamw_copy.parent_id == adamw.id and lion_copy.parent_id == lion.id
    assert {adamw_copy.mutation, lion_copy.mutation} <= set(mutations.MUTATIONS)
    assert (random_one.mutation, random_one.parent_id) == ("random", None)
    # No member told yet: further asks mutate a seed.
    more = [evolution.ask() for _ in range(10)]
    assert {c.parent_id for c in more} <= {adamw.id, lion.id, random_one.id}


def test_random_initial_population_without_warm_start():
    evolution = RegularizedEvolution(
        EvolutionConfig(population=4, tournament=4, warm_start=(), random_programs=4)
    )
    seeds = [evolution.ask() for _ in range(4)]
    assert [c.mutation for c in seeds] == ["random"] * 4
    assert all(c.parent_id is None for c in seeds)
    assert len({format_program(c.program) for c in seeds}) == 4


def test_children_record_their_parent_and_mutation_and_differ_from_it(monkeypatch):
    attempts = []
    for name, function in list(mutations.MUTATIONS.items()):

        def counted(program, rng, space, function=function):
            attempts.append(program)
            return function(program, rng, space)

        monkeypatch.setitem(mutations.MUTATIONS, name, counted)
    evolution = RegularizedEvolution(EvolutionConfig(max_retries=3, **SMALL))
    candidates, calls = [], {}  # calls: mutation attempts per candidate id
    for _ in range(150):
        before = len(attempts)
        candidates.append(evolution.ask())
        calls[candidates[-1].id] = len(attempts) - before
        evolution.tell(candidates[-1].id, fake_fitness(candidates[-1]))
    by_id = {c.id: c for c in candidates}
    children = [c for c in candidates if c.mutation in mutations.MUTATIONS]
    assert len(children) >= 140
    for child in children:
        parent = by_id[child.parent_id]
        assert parent.id < child.id and parent.island == child.island
        assert 1 <= calls[child.id] <= 4
        if child.validity.functional_hash == parent.validity.functional_hash:
            assert calls[child.id] == 4  # retries exhausted
        assert child.validity == check_candidate(child.program, 15, 3)
    assert sum(calls[c.id] > 1 for c in children) >= 5  # retries happen
    assert [c.id for c in candidates] == list(range(150))


def test_tournament_parents_come_from_the_population():
    evolution = RegularizedEvolution(EvolutionConfig(**SMALL))
    run(evolution, 30)
    for _ in range(20):
        members = {m.candidate.id for m in evolution.populations[0]}
        child = evolution.ask()
        assert child.parent_id in members
        evolution.tell(child.id, fake_fitness(child))


def test_the_population_ages_by_telling_order():
    evolution = RegularizedEvolution(EvolutionConfig(**SMALL))
    asked = [evolution.ask() for _ in range(8)]
    for candidate, fitness in zip(asked, [10, 0, 0, 0, 0, 0, 0, 0], strict=True):
        evolution.tell(candidate.id, fitness)
    population = evolution.populations[0]
    assert [m.candidate.id for m in population] == [2, 3, 4, 5, 6, 7]  # the fittest aged out
    assert evolution.best[:2] == (0, 10.0)  # the hall of fame keeps it


def test_retries_stop_at_max_retries_when_every_mutation_keeps_the_hash(monkeypatch):
    calls = []

    def identity(program, rng, space):
        calls.append(program)
        return program

    monkeypatch.setitem(mutations.MUTATIONS, "identity", identity)
    config = EvolutionConfig(
        population=2, tournament=2, mutation_weights={"identity": 1.0}, max_retries=4
    )
    evolution = RegularizedEvolution(config)
    first, second = evolution.ask(), evolution.ask()
    assert second.parent_id == first.id and second.mutation == "identity"
    assert second.validity.functional_hash == first.validity.functional_hash
    assert len(calls) == 5


def test_mutation_weights_choose_the_mutations():
    weights = {"perturb_constant": 1.0, "change_argument": 3.0, "insert_statement": 0.0}
    config = EvolutionConfig(population=4, tournament=4, mutation_weights=weights, seed=3)
    evolution = RegularizedEvolution(config)
    counts = Counter(c.mutation for c in run(evolution, 400)[4:])
    assert set(counts) == {"perturb_constant", "change_argument"}
    assert 0.15 <= counts["perturb_constant"] / 396 <= 0.35


def test_nan_and_inf_fitness_count_as_the_worst():
    evolution = RegularizedEvolution(EvolutionConfig(**SMALL))
    asked = [evolution.ask() for _ in range(6)]
    fitnesses = [math.nan, math.inf, -math.inf, 0.5, math.nan, 0.1]
    for candidate, fitness in zip(asked, fitnesses, strict=True):
        evolution.tell(candidate.id, fitness)
    assert evolution.best[:2] == (3, 0.5)
    fitnesses = sorted(m.fitness for m in evolution.populations[0])
    assert fitnesses[:4] == [-math.inf] * 4
    state = json.dumps(evolution.state_dict(), allow_nan=False)  # strict JSON
    restored = RegularizedEvolution.from_state(evolution.config, json.loads(state))
    assert [m.fitness for m in restored.populations[0]] == [
        m.fitness for m in evolution.populations[0]
    ]
    run(evolution, 20)


def test_telling_an_unknown_candidate_is_an_error():
    evolution = RegularizedEvolution(EvolutionConfig(**SMALL))
    candidate = evolution.ask()
    evolution.tell(candidate.id, 1.0)
    with pytest.raises(KeyError, match="not outstanding"):
        evolution.tell(candidate.id, 1.0)


def test_outstanding_candidates_in_id_order():
    evolution = RegularizedEvolution(EvolutionConfig(**SMALL))
    asked = [evolution.ask() for _ in range(5)]
    evolution.tell(asked[2].id, 0.3)
    assert [c.id for c in evolution.outstanding] == [0, 1, 3, 4]


def test_restarts_reseed_an_island_from_the_best_program():
    config = EvolutionConfig(population=4, tournament=2, restart_every=10, islands=2, seed=2)
    evolution = RegularizedEvolution(config)
    run(evolution, 10)
    best_id, _, best_program = evolution.best
    assert evolution.populations[0] == []  # island 0 restarts first
    assert len(evolution.populations[1]) == 4
    asked = [evolution.ask() for _ in range(8)]
    island0 = [c for c in asked if c.island == 0]
    assert island0[0].mutation == f"restart:{best_id}"
    assert island0[0].program == best_program and island0[0].parent_id == best_id
    assert all(c.parent_id == island0[0].id for c in island0[1:])
    for candidate in asked:
        evolution.tell(candidate.id, fake_fitness(candidate))
    run(evolution, 2)  # the 20th result restarts island 1
    assert evolution.populations[1] == []
    assert evolution.ask().island == 0
    assert evolution.ask().mutation.startswith("restart:")


def test_islands_stay_within_population_and_migration_copies_the_best():
    config = EvolutionConfig(population=5, tournament=2, islands=3, migration_every=15, seed=4)
    evolution = RegularizedEvolution(config)
    run(evolution, 15)
    assert all(len(p) == 5 for p in evolution.populations)
    best = [max(p, key=lambda m: (m.fitness, -m.candidate.id)) for p in evolution.populations]
    asked = [evolution.ask() for _ in range(3)]
    for candidate in asked:
        source = best[candidate.island - 1].candidate
        assert candidate.mutation == f"migration:{source.id}"
        assert candidate.program == source.program and candidate.parent_id == source.id
    for candidate in asked:
        evolution.tell(candidate.id, fake_fitness(candidate))
    migrated = 0
    for candidate in run(evolution, 200):
        populations = evolution.populations
        assert all(len(p) <= 5 for p in populations)
        assert all(m.candidate.island == i for i, p in enumerate(populations) for m in p)
        migrated += candidate.mutation.startswith("migration:")
    assert migrated == 3 * 13  # every 15 results, one migrant per island


def test_same_seed_same_stream_and_another_seed_another():
    def stream(seed: int) -> list[tuple]:
        config = EvolutionConfig(
            population=6, tournament=6, random_programs=2, restart_every=25, seed=seed
        )
        return trace(run(RegularizedEvolution(config), 80))

    assert stream(5) == stream(5)
    assert stream(5) != stream(6)


def test_checkpoint_round_trip_continues_identically():
    config = EvolutionConfig(
        population=6,
        tournament=6,
        random_programs=2,
        restart_every=17,
        islands=2,
        migration_every=11,
        seed=7,
    )
    original = RegularizedEvolution(config)
    run(original, 40)
    pending = [original.ask() for _ in range(3)]  # outstanding across the checkpoint
    state = json.loads(json.dumps(original.state_dict(), allow_nan=False))
    restored = RegularizedEvolution.from_state(config, state)
    assert restored.outstanding == original.outstanding == pending
    assert restored.best == original.best
    continued = []
    for evolution in (original, restored):
        for candidate in pending:
            evolution.tell(candidate.id, fake_fitness(candidate))
        continued.append(trace(run(evolution, 60)))
    assert continued[0] == continued[1]
    assert restored.state_dict() == original.state_dict()


def test_state_from_another_config_shape_is_refused():
    evolution = RegularizedEvolution(EvolutionConfig(**SMALL))
    run(evolution, 3)
    with pytest.raises(ValueError, match="island"):
        RegularizedEvolution.from_state(EvolutionConfig(islands=2), evolution.state_dict())
    with pytest.raises(ValueError, match="format"):
        RegularizedEvolution.from_state(EvolutionConfig(), {"format": "other"})


def test_lion_seed_grows_a_second_state_slot():
    weights = {"add_state_slot": 1.0}
    config = EvolutionConfig(
        population=3, tournament=3, warm_start=("lion",), mutation_weights=weights
    )
    evolution = RegularizedEvolution(config)
    seed, *children = [evolution.ask() for _ in range(3)]
    assert seed.program.state == ("m",)
    for child in children:
        assert child.mutation == "add_state_slot" and child.program.state == ("m", "v")


@pytest.mark.parametrize(
    "settings",
    [
        {"population": 0},
        {"tournament": 0},
        {"islands": 0},
        {"restart_every": -1},
        {"random_programs": 65},
        {"warm_start": ("adamw", "lion"), "population": 2, "random_programs": 1},
        {"mutation_weights": {"insert_statment": 1.0}},
        {"mutation_weights": {"insert_statement": -1.0}},
        {"mutation_weights": {"insert_statement": 0.0}},
        {"warm_start": ("adamww",)},  # not a known optimizer
        {"warm_start": (), "random_programs": 0},  # an empty initial population
    ],
)
def test_invalid_configs_are_rejected(settings):
    with pytest.raises(ValueError):
        EvolutionConfig(**settings)


def test_the_module_imports_neither_torch_nor_ray():
    code = (
        "import sys, search_spaces.evolution; print('torch' in sys.modules, 'ray' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "False"]
