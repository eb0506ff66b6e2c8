"""The funnel: a screening stage that rejects candidates below their population's bar, the full
protocol for the others, a selection stage at the end, and early stopping of stalled runs — with
instant fake evaluators for the controller's invariants, and real training where numbers
matter."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from campaign_helpers import Interrupting, assert_complete, log_rows

from evodisc.app.report import write_report
from evodisc.campaign.config import Campaign, CampaignError, check_tasks, load_campaign
from evodisc.campaign.controller import REJECTED, screen_bar
from evodisc.campaign.fake_pool import LRS, SECONDS, TASKS, FakePool
from evodisc.campaign.run import run_campaign
from evodisc.campaign.selection import SELECTION_FILE, read_selection, top_candidates
from evodisc.campaign.store import CandidateLog, read_checkpoint
from evodisc.hashing import functional_hash
from evodisc.program import load_program, parse_program
from fitness.tasks import load_task
from fitness.trainer import BatchedRun, train_batch
from search_spaces.evolution import RegularizedEvolution


def funnel(evaluations: int, seed: int = 0, **sections) -> Campaign:
    document = {
        "campaign": {"name": "funnel", "seed": seed},
        "space": {"max_statements": 8},
        "evolution": {"population": 12, "tournament": 3, "warm_start": ["adamw", "sgd"]},
        "budget": {"evaluations": evaluations},
        "fitness": {"tasks": list(TASKS), "lrs": list(LRS), "seeds": [0, 1, 2]},
        "resources": {"evaluators": 1, "batch_size": 4, "in_flight": 16},
        "screen": {"enabled": True, "tasks": [TASKS[1]], "seeds": [0], "quantile": 0.5},
    }
    for name, values in sections.items():
        document[name] = {**document.get(name, {}), **values}
    return Campaign.from_dict(document)


class StageSeconds(FakePool):
    """Fake evaluators whose batches take each stage's typical time (a screen's batch is quick,
    a selection's slow), recording the deadline every batch was submitted under."""

    SECONDS = {"screen": 0.5, "full": 20.0, "selection": 90.0}

    def __init__(self, size: int):
        super().__init__(size)
        self.deadlines: list[tuple[str, float | None]] = []

    def submit(self, batch) -> None:
        self.deadlines.append((batch.stage, self.deadline))
        super().submit(batch)

    def poll(self, timeout: float):
        done = super().poll(timeout)
        for completion in done:
            completion.seconds = self.SECONDS[completion.batch.stage]
        return done


def test_the_derived_deadline_follows_the_slowest_stage_and_the_selection_has_its_own(tmp_path):
    """Many quick screen batches do not set the deadline of a full evaluation (ten times the
    full stage's median here, not the 60 s floor), and the selection stage, slower still, is
    not held to the search's: it runs under the default hang detector (a 2-hour campaign once
    ended at its selection, past a 60 s deadline derived from screen batches)."""
    pool = StageSeconds(2)
    run_campaign(funnel(150, selection={"top": 3, "seeds": [0, 1, 2, 3]}), tmp_path, pool=pool)
    stages = [stage for stage, _ in pool.deadlines]
    assert stages.count("screen") > stages.count("full") >= 6
    full = [deadline for stage, deadline in pool.deadlines if stage == "full"]
    assert full[-1] == 10 * StageSeconds.SECONDS["full"]
    assert {d for stage, d in pool.deadlines if stage == "selection"} == {None}
    assert read_selection(tmp_path)["candidates"]


def test_the_screen_rejects_below_the_bar_and_no_rejected_candidate_becomes_a_parent(tmp_path):
    for seed in range(4):
        out = tmp_path / f"run-{seed}"
        pool = FakePool(3, rng=random.Random(seed), crash_rate=0.1)
        run_campaign(funnel(150, seed), out, pool=pool)
        rows = log_rows(out)
        assert_complete(rows, 150)
        rejected = [r for r in rows if r["status"] == REJECTED]
        full = [r for r in rows if r["stage"] == "full"]
        assert rejected and full  # the screen let some on and stopped others
        for row in rejected:
            assert row["stage"] == "screen" and row["fitness"] == 0.0
            assert row["screen_fitness"] is not None and "screen" in json.loads(row["details"])
        # every fully evaluated candidate passed the screen first, and the log shows it
        assert all(r["screen_fitness"] is not None for r in full if r["status"] == "ok")
        # rejected candidates never join a population: none is ever a tournament's parent
        parents = {r["parent_id"] for r in rows}
        assert not parents & {r["id"] for r in rejected}
        # a row's time is its stages' (the fake pool's SECONDS each), each counted once
        for row in rows:
            if row["status"] == REJECTED and not row["cache_hit"]:
                assert row["eval_seconds"] == pytest.approx(SECONDS)
        assert any(r["eval_seconds"] == pytest.approx(2 * SECONDS) for r in full)
        keys = {r["stage"]: r["config_key"] for r in rows}
        assert keys["screen"] != keys["full"]  # each stage has its own cache key


def test_a_higher_quantile_rejects_more(tmp_path):
    shares = []
    for quantile in (0.0, 0.9):  # below the worst member, or below the top tenth
        out = tmp_path / f"q{quantile}"
        run_campaign(funnel(150, screen={"quantile": quantile}), out, pool=FakePool(2))
        rows = log_rows(out)
        shares.append(sum(r["status"] == REJECTED for r in rows) / len(rows))
    assert shares[0] < shares[1]


def test_screen_bar_is_the_quantile_of_the_population():
    assert screen_bar([1.0], 0.5) is None  # too few to set a bar
    assert screen_bar([3.0, 1.0, 2.0], 0.5) == 2.0
    assert screen_bar([1.0, 2.0], 0.25) == pytest.approx(1.25)
    assert screen_bar([1.0, 2.0, 5.0], 1.0 - 1e-12) == pytest.approx(5.0)


def test_an_interrupted_funnel_resumes_with_nothing_lost_and_rejected_out_of_the_population(
    tmp_path,
):
    campaign = funnel(160)
    with pytest.raises(KeyboardInterrupt):
        run_campaign(campaign, tmp_path, pool=Interrupting(12))
    before = log_rows(tmp_path)
    assert 0 < len(before) < 160
    run_campaign(campaign, tmp_path, resume=True, pool=FakePool(2))
    rows = log_rows(tmp_path)
    assert_complete(rows, 160)
    by_id = {r["id"]: r for r in rows}
    assert all(by_id[r["id"]]["program"] == r["program"] for r in before)
    state = read_checkpoint(tmp_path)["evolution"]
    evolution = RegularizedEvolution.from_state(campaign.evolution_config(), state)
    members = [m.candidate.id for island in evolution.populations for m in island]
    assert members and not {i for i in members if by_id[i]["status"] == REJECTED}


def test_the_selection_stage_re_evaluates_the_best_distinct_candidates_once(tmp_path):
    campaign = funnel(120, selection={"top": 5, "seeds": [0, 1, 2, 3, 4, 5]})
    pool = FakePool(2)
    run_campaign(campaign, tmp_path, pool=pool)
    document = read_selection(tmp_path)
    expected = top_candidates(CandidateLog(tmp_path).read(), 5)
    assert sorted(e["id"] for e in document["candidates"]) == sorted(r["id"] for r in expected)
    assert len({e["functional_hash"] for e in document["candidates"]}) == 5
    assert all(r["stage"] == "full" and r["status"] == "ok" for r in expected)
    scores = [e["selection_fitness"] for e in document["candidates"]]
    assert scores == sorted(scores, reverse=True)
    assert document["suite"]["seeds"] == [0, 1, 2, 3, 4, 5]
    # resumed after the end with the same selection: nothing is trained again
    submitted = []
    again = FakePool(2)
    again.submit = lambda batch: submitted.append(batch)
    run_campaign(campaign, tmp_path, resume=True, pool=again)
    assert submitted == [] and read_selection(tmp_path) == document
    # a damaged selection file is evaluated again, with a warning, never a traceback
    (tmp_path / SELECTION_FILE).write_text("{")
    with pytest.warns(UserWarning, match="unreadable selection"):
        run_campaign(campaign, tmp_path, resume=True, pool=FakePool(2))
    assert read_selection(tmp_path)["ids"] == document["ids"]


def test_funnel_keys_are_checked_and_old_campaigns_keep_their_digest(tmp_path):
    plain = load_campaign("experiments/quickstart.toml")
    document = plain.to_dict()
    document["screen"] = {"enabled": False}
    document["fitness"]["stop_stalled"] = 0.0
    assert Campaign.from_dict(document).digest() == plain.digest()
    document["screen"] = {"enabled": True}
    assert Campaign.from_dict(document).digest() != plain.digest()
    for section, key, value in (
        ("screen", "quantile", 1.5),
        ("screen", "seeds", []),
        ("selection", "top", -1),
        ("fitness", "stop_stalled", 1.0),
    ):
        bad = plain.to_dict()
        bad.setdefault(section, {})[key] = value
        with pytest.raises(CampaignError, match=f"{section}.{key}"):
            Campaign.from_dict(bad)
    held_out = plain.to_dict()
    held_out["selection"] = {"top": 3, "tasks": ["diabetes_mlp"]}
    with pytest.raises(CampaignError, match="held-out task"):
        check_tasks(Campaign.from_dict(held_out))


def test_early_stopping_drops_stalled_programs_and_leaves_the_others_alone():
    task = load_task("teacher_student")
    learns = parse_program("def train(g, lr):\n    return lr * g\n")
    stalls = parse_program("def train(g, lr):\n    return 0.0 * lr * g\n")
    programs, lrs, seeds = [learns, stalls, learns], (0.01, 0.1), (0, 1)
    plain = train_batch(task, programs, lrs, seeds, checkpoints=4)
    early = train_batch(task, programs, lrs, seeds, checkpoints=4, stop_stalled=0.25)
    assert plain.stopped is None
    assert early.stopped[1].all() and not early.stopped[[0, 2]].any()
    assert np.isnan(early.metric[1]).all() and np.isfinite(plain.metric[1]).all()
    np.testing.assert_allclose(early.metric[[0, 2]], plain.metric[[0, 2]], rtol=1e-5)
    run = BatchedRun(task, programs, lrs, seeds, stop_stalled=0.25)
    run.train()
    assert run.P == 2  # the stalled program left the batch: no more compute spent on it


def test_learning_rate_halving_keeps_each_programs_best_runs_exactly():
    task = load_task("teacher_student")
    sgd = parse_program("def train(g, lr):\n    return lr * g\n")
    sign = parse_program("def train(g, lr):\n    return lr * sign(g)\n")
    programs, lrs, seeds = [sgd, sign], (1e-4, 1e-3, 1e-2, 0.1, 1.0), (0, 1)
    plain = train_batch(task, programs, lrs, seeds, checkpoints=4)
    halved = train_batch(task, programs, lrs, seeds, checkpoints=4, keep_lrs=2, keep_lrs_after=0.25)
    for p in range(len(programs)):
        kept = np.isfinite(halved.metric[p]).all(axis=1)
        diverged = ~np.isfinite(plain.metric[p]).all(axis=1)
        assert kept.sum() <= 2  # the others' runs stopped at a quarter of the steps
        assert halved.stopped[p].any(axis=1).sum() >= len(lrs) - 2 - diverged.sum()
        assert plain.best(p)[0] in {lrs[i] for i in np.flatnonzero(kept)}
        assert halved.best(p) == plain.best(p)  # the kept runs are those of the whole grid
        np.testing.assert_allclose(halved.metric[p][kept], plain.metric[p][kept], rtol=1e-5)
        assert np.isnan(halved.metric[p][~kept]).all()
    assert plain.best(0)[0] != plain.best(1)[0]  # each program keeps its own learning rates
    run = BatchedRun(task, programs, lrs, seeds, keep_lrs=2, keep_lrs_after=0.25)
    run.train()
    assert run.B == sum(run.counts) <= 2 * 2 * len(seeds)  # the cut learning rates left the batch


def test_halving_is_in_the_cache_key_only_when_it_cuts():
    from fitness.config import SuiteConfig

    plain = SuiteConfig(tasks=("teacher_student",))
    assert SuiteConfig(tasks=("teacher_student",), keep_lrs=9).cache_key("cpu") == plain.cache_key(
        "cpu"
    )
    assert SuiteConfig(tasks=("teacher_student",), keep_lrs=3).cache_key("cpu") != plain.cache_key(
        "cpu"
    )
    with pytest.raises(ValueError, match="keep_lrs_after"):
        SuiteConfig(keep_lrs=3, keep_lrs_after=0.0)


def test_a_real_funnel_campaign_trains_screens_and_selects(tmp_path):
    campaign = Campaign.from_dict(
        {
            "campaign": {"name": "real", "seed": 1},
            "evolution": {"population": 6, "tournament": 2, "warm_start": ["adam", "sgd"]},
            "budget": {"evaluations": 16},
            "fitness": {
                "tasks": ["teacher_student", "ill_conditioned"],
                "lrs": [1e-3, 1e-2, 0.1],
                "seeds": [0, 1],
                "baseline_seeds": [0, 1],
                "checkpoints": 2,
            },
            "screen": {"enabled": True, "tasks": ["ill_conditioned"], "seeds": [0]},
            "selection": {"top": 2, "seeds": [0, 1, 2]},
            "resources": {"evaluators": 0, "batch_size": 8, "in_flight": 8},
        }
    )
    run_campaign(campaign, tmp_path)
    rows = log_rows(tmp_path)
    assert_complete(rows, 16)
    screened = [r for r in rows if r["screen_fitness"] is not None]
    assert screened and {r["stage"] for r in rows} <= {"screen", "full"}
    trained = [json.loads(r["details"])["screen"] for r in screened if r["status"] != "invalid"]
    assert trained
    for screen in trained:
        assert list(screen["details"]["tasks"]) == ["ill_conditioned"]
    document = read_selection(tmp_path)
    assert len(document["candidates"]) == 2
    best = document["candidates"][0]
    assert list(best["details"]["tasks"]) == ["teacher_student", "ill_conditioned"]
    assert best["selection_uncertainty"] is not None
    summary = "\n".join(write_report(tmp_path).summary)
    rejected = sum(r["status"] == REJECTED for r in rows)
    assert f"{len(screened)} candidates screened, {rejected} rejected" in summary
    assert f"#1 candidate {best['id']}:" in summary and "selection (3 seeds" in summary
    # the report's best.py is the selection's winner, simplified: the same function
    written = load_program(tmp_path / "report" / "best.py")
    assert functional_hash(written) == best["functional_hash"]
    assert (
        f"the selection's #1, candidate {best['id']}"
        in (tmp_path / "report" / "best.py").read_text()
    )
