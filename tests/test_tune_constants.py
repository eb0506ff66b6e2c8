"""The search's constant-tuning step (``[evolution] tune_constants``): the value steps shared with
``evodisc tune``, the spaces' tune variants, the evolution queueing them when an island's best
improves (deterministic, checkpointed), and campaigns with it (fake evaluators)."""

from __future__ import annotations

import json
import math

import pytest
from campaign_helpers import Interrupting, assert_complete, log_rows

import fitness.tuning
from evodisc import constant_steps
from evodisc.campaign.config import Campaign, load_campaign
from evodisc.campaign.controller import REJECTED
from evodisc.campaign.fake_pool import LRS, TASKS, FakePool
from evodisc.campaign.run import run_campaign
from evodisc.constant_names import named_constants
from evodisc.constant_steps import candidates, coordinate_step
from evodisc.edit import replace_constants
from evodisc.program import parse_program
from evodisc.settings import SettingError
from search_spaces import programs as program_space
from search_spaces.evolution import EvolutionConfig, RegularizedEvolution
from search_spaces.genome import KNOWN, GenomeSpace
from search_spaces.programs import ProgramSearch
from search_spaces.space import DEFAULT_SPACE
from search_spaces.zoo import load_known

ADAMW = load_known("adamw")
SEARCH = ProgramSearch(DEFAULT_SPACE)
SMALL = dict(population=6, tournament=3, seed=1, tune_constants=True)


# ------------------------------------------------------------------------ the value steps


def test_the_value_steps_are_the_ones_tune_uses():
    """``evodisc tune`` reads them from the core module (its cache keys name them)."""
    assert fitness.tuning.candidates is constant_steps.candidates
    assert fitness.tuning.FACTORS is constant_steps.FACTORS
    assert fitness.tuning.DIGITS == constant_steps.DIGITS


def test_a_coordinate_step_moves_one_constant_and_never_merges_two():
    named = named_constants(ADAMW)
    steps = coordinate_step(named)
    for name, constant in named.items():
        expected = [v for v in candidates(constant.value, constant.role) if v != constant.value]
        assert [v for n, v in steps if n == name] == expected
    # c1 = 0.818 is one of beta1's candidates (0.9 with half the odds): neither takes the other's
    program = parse_program(
        "def train(g, lr, m):\n    m = interp(g, m, 0.9)\n    return lr * 0.818 * m, m\n"
    )
    merged = {c.value for c in named_constants(program).values()}
    assert 0.818 in candidates(0.9, "beta") and merged == {0.9, 0.818}
    assert ("beta", 0.818) not in coordinate_step(named_constants(program))
    assert ("beta", 0.818) in coordinate_step(named_constants(program), distinct=False)


# ------------------------------------------------------------------------ the tune variants


def test_adamw_tune_variants_move_each_named_constant_the_others_held():
    named = named_constants(ADAMW)
    variants = SEARCH.tune_variants(ADAMW)
    assert [label for label, _ in variants] == [f"{n}={v!r}" for n, v in coordinate_step(named)]
    assert {label.split("=")[0] for label, _ in variants} == set(named)
    for label, variant in variants:
        name, value = label.split("=")
        expected = {**{n: c.value for n, c in named.items()}, name: float(value)}
        if float(value) == 0:  # no weight decay: a whole number is not a named constant
            del expected[name]
        assert {n: c.value for n, c in named_constants(variant).items()} == expected
        # the number moved wherever it appears: the β of the bias correction moves with it
        assert variant == replace_constants(ADAMW, {named[name].value: float(value)})


def test_genome_tune_variants_move_the_genes_its_program_reads():
    space = GenomeSpace()
    adamw = KNOWN["adamw"]
    variants = space.tune_variants(adamw)
    genes = ("beta1", "beta2", "eps", "weight_decay")
    for label, variant in variants:
        name, value = label.split("=")
        assert getattr(variant, name) == float(value) != getattr(adamw, name)
        assert all(getattr(variant, g) == getattr(adamw, g) for g in genes if g != name)
        assert variant.alphas == adamw.alphas
    for gene, role in zip(genes, ("beta", "beta", "eps", "weight_decay"), strict=True):
        tried = [float(label.split("=")[1]) for label, _ in variants if label.startswith(gene)]
        value = getattr(adamw, gene)
        assert tried == [v for v in candidates(value, role) if v != value]
    # signum reads only m (β₁); SGD reads no tuned gene and has no weight decay
    assert {label.split("=")[0] for label, _ in space.tune_variants(KNOWN["signum"])} == {"beta1"}
    assert space.tune_variants(KNOWN["sgd"]) == []


# ------------------------------------------------------------------------ the evolution


def tell_all(evolution: RegularizedEvolution, fitness: dict[int, float], n: int) -> list:
    """``n`` asks, each told at once with ``fitness.get(id, 0.5)``."""
    asked = []
    for _ in range(n):
        candidate = evolution.ask()
        evolution.tell(candidate.id, fitness.get(candidate.id, 0.5))
        asked.append(candidate)
    return asked


def test_variants_are_queued_exactly_when_an_islands_best_improves():
    evolution = RegularizedEvolution(EvolutionConfig(**SMALL))
    seed = evolution.ask()
    evolution.tell(seed.id, 1.0)  # the island's first member: its best
    labels = [f"tune:{label}" for label, _ in SEARCH.tune_variants(ADAMW)]
    variants = [evolution.ask() for _ in labels]
    assert [c.mutation for c in variants] == labels
    assert all(c.parent_id == seed.id for c in variants)
    assert [c.program for c in variants] == [v for _, v in SEARCH.tune_variants(ADAMW)]
    # equal to the best, rejected by a screen (join=False), not finite: no new step
    evolution.tell(variants[0].id, 1.0)
    evolution.tell(variants[1].id, 5.0, join=False)
    evolution.tell(variants[2].id, math.nan)
    following = evolution.ask()  # the plan's next entry: the seed's copies (mutations of it)
    assert following.parent_id == seed.id and not following.mutation.startswith("tune:")
    # a variant strictly better than every earlier member: its own step comes next, replacing
    # the variants of the previous best still queued
    evolution.tell(variants[3].id, 1.5)
    winner = variants[3].program
    expected = [f"tune:{label}" for label, _ in SEARCH.tune_variants(winner)]
    asked = [evolution.ask() for _ in expected]
    assert [c.mutation for c in asked] == expected
    assert all(c.parent_id == variants[3].id for c in asked)
    assert not evolution.ask().mutation.startswith("tune:")


def test_without_the_setting_no_variant_is_asked():
    evolution = RegularizedEvolution(EvolutionConfig(**{**SMALL, "tune_constants": False}))
    fitness = {i: i / 10 for i in range(60)}  # every member a new best
    assert not any(c.mutation.startswith("tune:") for c in tell_all(evolution, fitness, 60))


def test_a_variant_with_its_parents_hash_is_skipped(monkeypatch):
    """``sign(0.5 * m)`` is ``sign(m)`` whatever the positive c1: only β's variants remain."""
    program = parse_program(
        "def train(g, lr, m):\n    m = interp(g, m, 0.9)\n    return lr * sign(0.5 * m), m\n"
    )
    monkeypatch.setattr(program_space, "load_known", lambda name: program)
    evolution = RegularizedEvolution(EvolutionConfig(**SMALL))
    seed = evolution.ask()
    evolution.tell(seed.id, 1.0)
    betas = [v for v in candidates(0.9, "beta") if v != 0.9]
    asked = [evolution.ask() for _ in betas]
    assert [c.mutation for c in asked] == [f"tune:beta={v!r}" for v in betas]
    assert not evolution.ask().mutation.startswith("tune:")  # c1's variants were skipped
    assert {label.split("=")[0] for label, _ in SEARCH.tune_variants(program)} == {"beta", "c1"}


def test_islands_tune_their_own_bests():
    config = EvolutionConfig(**{**SMALL, "islands": 2})
    evolution = RegularizedEvolution(config)
    first = [evolution.ask() for _ in range(2)]  # one seed per island
    evolution.tell(first[1].id, 1.0)  # island 1 only
    asked = [evolution.ask() for _ in range(6)]
    assert [c.island for c in asked] == [0, 1] * 3
    assert all(not c.mutation.startswith("tune:") for c in asked if c.island == 0)
    assert all(c.mutation.startswith("tune:") for c in asked if c.island == 1)
    assert all(c.parent_id == first[1].id for c in asked if c.island == 1)


def stream(config: EvolutionConfig, n: int) -> list[tuple]:
    fitness = {i: (i * 7919 % 101) / 100 for i in range(n)}
    asked = tell_all(RegularizedEvolution(config), fitness, n)
    return [(c.id, str(c.program), c.parent_id, c.mutation) for c in asked]


def test_the_same_seed_gives_the_same_tuned_stream():
    config = EvolutionConfig(**{**SMALL, "random_programs": 2})
    first = stream(config, 120)
    assert first == stream(config, 120)
    assert sum(m.startswith("tune:") for *_, m in first) > 20
    assert first != stream(EvolutionConfig(**{**SMALL, "random_programs": 2, "seed": 2}), 120)


def test_a_checkpoint_mid_queue_continues_identically():
    config = EvolutionConfig(**{**SMALL, "islands": 2, "migration_every": 9})
    original = RegularizedEvolution(config)
    fitness = {i: (i * 7919 % 101) / 100 for i in range(200)}
    tell_all(original, fitness, 30)
    pending = [original.ask() for _ in range(3)]
    state = json.loads(json.dumps(original.state_dict(), allow_nan=False))
    queued = [s["label"] for island in state["islands"] for s in island["plan"]]
    assert any(label.startswith("tune:") for label in queued)  # mid-queue
    restored = RegularizedEvolution.from_state(config, state)
    continued = []
    for evolution in (original, restored):
        for candidate in pending:
            evolution.tell(candidate.id, fitness[candidate.id])
        asked = tell_all(evolution, fitness, 80)
        continued.append([(c.id, str(c.program), c.parent_id, c.mutation) for c in asked])
    assert continued[0] == continued[1]
    assert any(m.startswith("tune:") for *_, m in continued[0])
    assert restored.state_dict() == original.state_dict()


def test_a_state_written_before_islands_kept_their_best_resumes():
    """Such a state has no island ``best``: the best of the island's population stands in."""
    config = EvolutionConfig(**SMALL)
    evolution = RegularizedEvolution(config)
    tell_all(evolution, {0: 2.0}, 3)
    state = evolution.state_dict()
    assert state["islands"][0].pop("best") == 2.0
    restored = RegularizedEvolution.from_state(config, state)
    assert restored.state_dict() == evolution.state_dict()


def test_a_space_without_tune_variants_cannot_tune(monkeypatch):
    monkeypatch.delattr(ProgramSearch, "tune_variants")
    with pytest.raises(SettingError, match="tune_constants"):
        EvolutionConfig(**SMALL)


# ------------------------------------------------------------------------ campaigns


def campaign(evaluations: int, **evolution) -> Campaign:
    return Campaign.from_dict(
        {
            "campaign": {"name": "tune", "seed": 3},
            "space": {"max_statements": 8},
            "evolution": {
                "population": 12,
                "tournament": 3,
                "warm_start": ["adamw", "sgd"],
                "tune_constants": True,
                "islands": 2,
                **evolution,
            },
            "budget": {"evaluations": evaluations},
            "fitness": {"tasks": list(TASKS), "lrs": list(LRS), "seeds": [0, 1]},
            "resources": {"evaluators": 1, "batch_size": 4, "in_flight": 16},
            "screen": {"enabled": True, "tasks": [TASKS[1]], "seeds": [0], "quantile": 0.5},
        }
    )


def check_tuning(rows: list[dict]) -> int:
    """In log order (the order of the tells), each tune row's parent was, when told, a valid
    member strictly fitter than every earlier member of its island; its program is its
    parent's with the one named constant its label names moved. The number of tune rows."""
    improved, best = set(), {}
    for row in rows:  # the tells, in log order
        if row["status"] != REJECTED and row["fitness"] > best.get(row["island"], -math.inf):
            best[row["island"]] = row["fitness"]
            improved.add(row["id"])
    by_id = {row["id"]: row for row in rows}
    tuned = [row for row in rows if row["mutation"].startswith("tune:")]
    for row in tuned:
        assert row["parent_id"] in improved
        name, value = row["mutation"].removeprefix("tune:").split("=")
        parent = parse_program(by_id[row["parent_id"]]["program"])
        old = named_constants(parent)[name].value
        assert parse_program(row["program"]) == replace_constants(parent, {old: float(value)})
    return len(tuned)


def test_a_funnel_campaign_tunes_the_bests_of_its_islands(tmp_path):
    runs = []
    for name in ("a", "b"):
        run_campaign(campaign(160), tmp_path / name, pool=FakePool(2))
        runs.append(log_rows(tmp_path / name))
    rows = runs[0]
    assert_complete(rows, 160)
    assert check_tuning(rows) > 0
    assert [r["program"] for r in rows] == [r["program"] for r in runs[1]]  # deterministic
    rejected = {r["id"] for r in rows if r["status"] == REJECTED}
    assert rejected and not rejected & {r["parent_id"] for r in rows}


def test_an_interrupted_tuning_campaign_resumes_with_nothing_lost(tmp_path):
    setup = campaign(160)
    with pytest.raises(KeyboardInterrupt):
        run_campaign(setup, tmp_path, pool=Interrupting(10))
    before = log_rows(tmp_path)
    assert 0 < len(before) < 160 and check_tuning(before) > 0  # stopped mid-tuning
    run_campaign(setup, tmp_path, resume=True, pool=FakePool(2))
    rows = log_rows(tmp_path)
    assert_complete(rows, 160)
    by_id = {r["id"]: r for r in rows}
    assert all(by_id[r["id"]]["program"] == r["program"] for r in before)
    assert check_tuning(rows) > check_tuning(before)


def test_a_campaign_file_without_the_key_keeps_its_digest(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[budget]\nevaluations = 10\n")
    before = load_campaign(path)
    assert before.evolution.tune_constants is False
    path.write_text("[budget]\nevaluations = 10\n[evolution]\ntune_constants = false\n")
    assert load_campaign(path).digest() == before.digest()
    path.write_text("[budget]\nevaluations = 10\n[evolution]\ntune_constants = true\n")
    assert load_campaign(path).digest() != before.digest()
