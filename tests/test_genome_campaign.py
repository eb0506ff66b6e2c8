"""The genome space through the shared machinery: regularized evolution with crossover, its
checkpoint, campaign files, an in-process campaign killed and resumed, and its best program
simplified, recognised and exported like any program. Also: the program space keeps its
checkpoint layout and campaign digests."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from campaign_helpers import Gate, assert_complete, assert_kept, log_rows, run_killed

import evodisc
from evodisc.app.cli import main
from evodisc.campaign.config import (
    ADDED_KEYS,
    ADDED_SECTIONS,
    Campaign,
    CampaignError,
    check_tasks,
    load_campaign,
)
from evodisc.campaign.run import run_campaign
from evodisc.interpreter import compile_program, init_state, step
from evodisc.program import program_from_json
from search_spaces.evolution import EvolutionConfig, RegularizedEvolution
from search_spaces.genome import KNOWN, MUTATIONS, Genome, GenomeSpace, genome_from_json

GENOMES = GenomeSpace()


def fake_fitness(candidate) -> float:
    """Deterministic stand-in for training: a number in [0, 1) from the functional hash."""
    return int(candidate.validity.functional_hash[:8], 16) / 2**32


def run(evolution: RegularizedEvolution, n: int) -> list:
    asked = []
    for _ in range(n):
        candidate = evolution.ask()
        evolution.tell(candidate.id, fake_fitness(candidate))
        asked.append(candidate)
    return asked


def trace(candidates) -> list[tuple]:
    return [(c.id, str(c.program), c.genotype, c.parent_id, c.mutation) for c in candidates]


def genome_config(**settings) -> EvolutionConfig:
    base = dict(
        population=8,
        tournament=3,
        warm_start=("adam", "sgd"),
        random_programs=4,
        crossover=0.5,
        space=GENOMES,
        seed=2,
    )
    return EvolutionConfig(**(base | settings))


# ------------------------------------------------------------------------------ the evolution


def test_the_evolution_searches_genomes_with_crossover():
    evolution = RegularizedEvolution(genome_config())
    candidates = run(evolution, 200)
    by_id = {c.id: c for c in candidates}
    assert candidates[0].genotype == KNOWN["adam"] and candidates[0].mutation == "seed:adam"
    assert str(candidates[0].program) == str(GENOMES.to_program(KNOWN["adam"]))
    crossed = [c for c in candidates if c.mutation.startswith("crossover:")]
    plain = [c for c in candidates if c.mutation in MUTATIONS]
    assert len(crossed) > 50 and len(plain) > 50  # crossover = 0.5
    for child in crossed:
        other, name = child.mutation.removeprefix("crossover:").split("+")
        assert name in MUTATIONS and int(other) < child.id and child.parent_id < child.id
        parents = {by_id[child.parent_id].validity.functional_hash}
        parents.add(by_id[int(other)].validity.functional_hash)
        assert child.validity.functional_hash not in parents  # re-drawn while equal to one
    for c in candidates:
        assert c.program == GENOMES.to_program(c.genotype)
        assert c.validity == GENOMES.check(c.program)
    assert {c.mutation.split("+")[-1] for c in crossed + plain} == set(MUTATIONS)


def test_the_same_seed_gives_the_same_genomes_and_crossover_off_crosses_none():
    assert trace(run(RegularizedEvolution(genome_config()), 120)) == trace(
        run(RegularizedEvolution(genome_config()), 120)
    )
    assert trace(run(RegularizedEvolution(genome_config(seed=3)), 120)) != trace(
        run(RegularizedEvolution(genome_config()), 120)
    )
    none = run(RegularizedEvolution(genome_config(crossover=0.0)), 120)
    assert not [c for c in none if c.mutation.startswith("crossover:")]


def test_a_genome_checkpoint_continues_identically():
    config = genome_config(restart_every=37, islands=2, migration_every=23, random_programs=2)
    original = RegularizedEvolution(config)
    run(original, 90)
    pending = [original.ask() for _ in range(3)]
    state = json.loads(json.dumps(original.state_dict(), allow_nan=False))
    assert state["space"] == "genome"
    assert genome_from_json(state["outstanding"][0]["genotype"]) == pending[0].genotype
    restored = RegularizedEvolution.from_state(config, state)
    assert restored.outstanding == original.outstanding == pending
    continued = []
    for evolution in (original, restored):
        for candidate in pending:
            evolution.tell(candidate.id, fake_fitness(candidate))
        continued.append(trace(run(evolution, 80)))
    assert continued[0] == continued[1]
    assert restored.state_dict() == original.state_dict()
    with pytest.raises(ValueError, match="genome space, the config program"):
        RegularizedEvolution.from_state(EvolutionConfig(islands=2), state)


def test_a_program_space_state_keeps_its_layout_and_one_without_a_space_loads():
    """States written before there were several spaces had no "space" key; otherwise the
    program space's state is as it was: no genotype beside the program JSON."""
    config = EvolutionConfig(population=6, tournament=3, random_programs=2, seed=5)
    original = RegularizedEvolution(config)
    run(original, 40)
    pending = [original.ask() for _ in range(2)]
    state = json.loads(json.dumps(original.state_dict()))
    documents = [m["candidate"] for m in state["islands"][0]["population"]]
    documents += state["outstanding"] + state["islands"][0]["seeds"]
    assert all("genotype" not in doc for doc in documents)
    del state["space"]
    restored = RegularizedEvolution.from_state(config, state)
    assert [c.genotype for c in restored.outstanding] == [c.program for c in pending]
    for evolution in (original, restored):
        for candidate in pending:
            evolution.tell(candidate.id, fake_fitness(candidate))
    assert trace(run(original, 30)) == trace(run(restored, 30))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"crossover": 1.5}, "crossover: expected a number from 0 to 1"),
        ({"warm_start": ("lion",)}, "'lion' is not expressible in the genome space"),
        ({"mutation_weights": {"insert_statement": 1.0}}, "unknown mutation 'insert_statement'"),
        ({"space": GenomeSpace(terms=("rms",)), "warm_start": ("adam",)}, "'adam' is not"),
    ],
)
def test_genome_evolution_settings_are_checked(settings, message):
    with pytest.raises(ValueError, match=message):
        genome_config(**settings)
    with pytest.raises(ValueError, match="the program space defines no crossover"):
        EvolutionConfig(crossover=0.5)


# ------------------------------------------------------------------------------ campaign files

GENOME_CAMPAIGN = """
[campaign]
seed = {seed}

[space]
kind = "genome"
max_terms = 3

[evolution]
population = 8
tournament = 3
crossover = 0.7
warm_start = ["adam", "signum", "sgd"]
random_programs = 0

[budget]
evaluations = {evaluations}

[fitness]
tasks = ["{task}"]
lrs = [1e-2, 0.1]
seeds = [0]
baseline_seeds = [0, 1]
checkpoints = 4

[resources]
evaluators = 0
batch_size = 4
in_flight = 8
"""


def write_genome_campaign(tmp_path, evaluations=40, seed=0, task="ill_conditioned"):
    path = tmp_path / "genome.toml"
    path.write_text(GENOME_CAMPAIGN.format(evaluations=evaluations, seed=seed, task=task))
    return path


def test_a_genome_campaign_file_resolves_and_round_trips(tmp_path):
    campaign = load_campaign(write_genome_campaign(tmp_path))
    assert campaign.space == GenomeSpace(max_terms=3)
    assert campaign.evolution.mutation_weights == {name: 1.0 for name in MUTATIONS}
    document = json.loads(json.dumps(campaign.to_dict()))
    assert document["space"]["kind"] == "genome" and document["evolution"]["crossover"] == 0.7
    assert Campaign.from_dict(document) == campaign
    assert Campaign.from_dict(document).digest() == campaign.digest()
    document["space"]["kind"] = "program"
    with pytest.raises(
        CampaignError, match=r"space\.terms: a key of the genome space, not of kind 'program'"
    ):
        Campaign.from_dict(document)


def test_program_campaigns_keep_their_digest(tmp_path):
    """A file of before (no kind, no crossover, no funnel) has the digest of its resolved dict
    without them, as it had; writing the defaults out does not change it; other values do."""
    from evodisc.fitness_cache import fitness_config_key

    path = tmp_path / "c.toml"
    path.write_text("[budget]\nevaluations = 10\n")
    campaign = load_campaign(path)
    document = campaign.to_dict()
    assert document["space"]["kind"] == "program" and document["evolution"]["crossover"] == 0.0
    for (section, key), old in ADDED_KEYS.items():  # these, and the funnel's, came later
        assert document[section].pop(key) == old
    for section in ADDED_SECTIONS:
        del document[section]
    assert fitness_config_key(document) in campaign.digests()
    del document["campaign"]["name"]
    assert fitness_config_key(document) == campaign.digest()
    path.write_text("[budget]\nevaluations = 10\n[space]\nkind = 'program'\n")
    assert load_campaign(path).digest() == campaign.digest()
    path.write_text("[budget]\nevaluations = 10\n[space]\nkind = 'genome'\n")
    assert load_campaign(path).digest() != campaign.digest()


# --------------------------------------------------------------------------- campaigns end to end


def test_a_genome_campaign_runs_and_its_best_is_simplified_recognised_and_exported(tmp_path):
    campaign = check_tasks(load_campaign(write_genome_campaign(tmp_path)))
    summary = run_campaign(campaign, tmp_path / "run", no_ray=True)
    rows = log_rows(tmp_path / "run")
    assert_complete(rows, 40)
    assert rows[0]["mutation"] == "seed:adam"
    for row in rows:  # the genome column is the genome the logged program was written from
        program = program_from_json(row["program_json"])
        assert GENOMES.to_program(genome_from_json(row["genome"])) == program
    assert {r["mutation"].split(":")[0] for r in rows} >= {"seed", "crossover"}
    assert "ok" in {r["status"] for r in rows}
    best_id, best_fitness, _ = summary.best
    best = next(r for r in rows if r["id"] == best_id)
    assert best_fitness == max(r["fitness"] for r in rows)

    program = program_from_json(best["program_json"])
    simplified = evodisc.simplify(program)
    assert simplified.exact and simplified.functional_hash == best["functional_hash"]
    assert simplified.closest is not None
    adam = evodisc.simplify(GENOMES.to_program(KNOWN["adam"]))
    assert (adam.closest.name, adam.closest.exact) == ("adam", True)

    assert_exports_like_the_interpreter(simplified.program)
    scheduled = replace(KNOWN["adam"], warmup=True, cosine_decay=True)  # reads the horizon T
    assert_exports_like_the_interpreter(GENOMES.to_program(scheduled))


def assert_exports_like_the_interpreter(program, steps: int = 5) -> None:
    """The exported optimizer moves a weight as the interpreter does, for ``steps`` steps of a
    run of that many (its horizon ``T``, for a rule that reads it)."""
    optimizer_class = evodisc.to_torch_optimizer(program)
    compiled = compile_program(program)
    gen = torch.Generator().manual_seed(1)
    weight = torch.nn.Parameter(torch.randn(20, generator=gen, dtype=torch.float64))
    optimizer = optimizer_class([weight], lr=0.01, total_steps=steps)
    w, state = weight.detach().clone(), init_state(program, weight.detach())
    for t in range(1, steps + 1):
        weight.grad = torch.randn(20, generator=gen, dtype=torch.float64)
        update, state = step(compiled, w, weight.grad, 0.01, t, state, T=steps)
        w = w - update
        optimizer.step()
        torch.testing.assert_close(weight.detach(), w, rtol=1e-9, atol=1e-12)


def test_a_killed_genome_campaign_resumes_with_nothing_lost(tmp_path):
    out = tmp_path / "run"
    gate = Gate(tmp_path, out, rows=20)
    path = write_genome_campaign(tmp_path, evaluations=60, task=gate.task)
    before = run_killed(path, out, gate)
    assert 20 <= len(before) < 60
    assert main(["run", str(path), "--out", str(out), "--no-ray", "--resume", "--quiet"]) == 0
    after = log_rows(out)
    assert_complete(after, 60)
    assert_kept(before, after)
    assert all(r["genome"] is not None for r in after)
    state = json.loads((out / "checkpoint.json").read_text())["evolution"]
    assert state["space"] == "genome" and state["next_id"] == 60
    evolution = RegularizedEvolution.from_state(load_campaign(path).evolution_config(), state)
    assert isinstance(evolution.ask().genotype, Genome)
