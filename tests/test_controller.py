"""The controller's invariants with instant fake evaluators (:class:`FakePool`), over many
seeds, orders of arrival and crashed batches: no candidate id lost or logged twice, no function
trained twice, the same sequence for the same seed. The real end-to-end runs (in-process, Ray,
kill -9, Ctrl-C) are in ``test_campaign_run.py`` and ``test_campaign_ray.py``."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from campaign_helpers import assert_complete, log_rows

from evodisc.campaign import controller as controller_module
from evodisc.campaign.config import Campaign
from evodisc.campaign.controller import MAX_CRASHES, Controller
from evodisc.campaign.fake_pool import LRS, TASKS, FakePool
from evodisc.campaign.run import run_campaign
from evodisc.campaign.store import CandidateLog
from evodisc.fitness_cache import FitnessCache
from evodisc.program import program_to_json
from evodisc.screen import Screen
from search_spaces.evolution import RegularizedEvolution

TIMING = ("eval_seconds", "wall_time", "time", "worker", "node")


def campaign(evaluations: int, batch_size: int, in_flight: int, seed: int = 0) -> Campaign:
    return Campaign.from_dict(
        {
            "campaign": {"name": "fake", "seed": seed},
            "space": {"max_statements": 8},
            "evolution": {"population": 12, "tournament": 3, "warm_start": ["adamw", "sgd"]},
            "budget": {"evaluations": evaluations},
            "fitness": {"tasks": list(TASKS), "lrs": list(LRS)},
            "resources": {"evaluators": 1, "batch_size": batch_size, "in_flight": in_flight},
        }
    )


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


@pytest.mark.parametrize(("batch_size", "in_flight", "evaluators"), [(1, 4, 4), (4, 16, 3)])
def test_no_candidate_is_lost_or_trained_twice_in_any_order_of_arrival(
    tmp_path, batch_size, in_flight, evaluators
):
    crashes = 0
    for seed in range(8):
        out = tmp_path / f"run-{seed}"
        pool = FakePool(evaluators, rng=random.Random(seed), crash_rate=0.2)
        summary = run_campaign(campaign(120, batch_size, in_flight, seed), out, pool=pool)
        rows = log_rows(out)
        assert summary.candidates == 120
        assert_complete(rows, 120)
        # a batch that crashed MAX_CRASHES times is logged as errors; no other row is
        errors = [r for r in rows if r["status"] == "error"]
        assert all("crashed" in r["details"] for r in errors)
        crashes += pool.crashes
        # a child's parent was logged before it was asked (its id is smaller)
        assert all(r["parent_id"] is None or r["parent_id"] < r["id"] for r in rows)
    assert crashes > 0 and MAX_CRASHES > 1  # the retry path was taken


def test_the_same_seed_gives_the_same_sequence_and_another_seed_another(tmp_path):
    runs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        run_campaign(campaign(150, 4, 16, seed), tmp_path / name, pool=FakePool(2))
        runs.append(without_timing(log_rows(tmp_path / name)))
    assert runs[0] == runs[1]
    assert [r["program"] for r in runs[0]] != [r["program"] for r in runs[2]]
    assert any(r["cache_hit"] for r in runs[0])  # repeats happen and the cache answers them


def test_the_eta_is_the_nearer_of_the_two_budgets(tmp_path, monkeypatch):
    now = 1000.0  # the controller's clock, fixed: the rate is exactly 100 candidates a second
    monkeypatch.setattr(controller_module, "time", SimpleNamespace(monotonic=lambda: now))
    for evaluations, expected in ((1000, 9.0), (10_000_000, 3599.0)):
        document = campaign(evaluations, 4, 16).to_dict()
        document["budget"]["wall_seconds"] = 3600.0
        chosen = Campaign.from_dict(document)
        directory = tmp_path / str(evaluations)
        directory.mkdir()
        evolution = RegularizedEvolution(chosen.evolution_config())
        log = CandidateLog(directory, writer=True)
        screen = Screen(FitnessCache(), "key")
        controller = Controller(
            chosen, directory, FakePool(1), evolution, {"full": screen}, {}, log
        )
        controller.logged = controller.logged_now = 100
        controller.start = now - 1.0  # one second spent, 100 candidates logged
        assert controller.stats().eta_seconds == expected


class CountingPool(FakePool):
    """A :class:`FakePool` that records every program it is asked to train."""

    def __init__(self, size: int):
        super().__init__(size)
        self.trained: list[str] = []

    def submit(self, batch) -> None:
        self.trained += [program_to_json(p) for p in batch.request.programs]
        super().submit(batch)


def test_without_result_reuse_every_valid_candidate_is_trained_even_a_repeated_function(
    tmp_path,
):
    document = campaign(150, 4, 16, seed=3).to_dict()
    document["resources"]["reuse_results"] = False
    pool = CountingPool(2)
    run_campaign(Campaign.from_dict(document), tmp_path / "off", pool=pool)
    rows = log_rows(tmp_path / "off")
    valid = [r for r in rows if r["status"] != "invalid"]
    assert not any(r["cache_hit"] for r in rows)
    assert sorted(pool.trained) == sorted(r["program_json"] for r in valid)
    hashes = [r["functional_hash"] for r in valid]
    assert len(set(hashes)) < len(hashes)  # some function came again and was trained again
    on = CountingPool(2)
    run_campaign(campaign(150, 4, 16, seed=3), tmp_path / "on", pool=on)
    assert any(r["cache_hit"] for r in log_rows(tmp_path / "on"))
    assert len(on.trained) < len([r for r in log_rows(tmp_path / "on") if r["status"] != "invalid"])
