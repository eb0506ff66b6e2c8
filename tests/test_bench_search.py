"""``tools/bench_search.py``'s pieces: the arms' campaigns and the "first reached" computation on
a hand-made log (the benchmark itself is not run here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from evodisc.campaign.fake_pool import FakePool
from evodisc.campaign.run import run_campaign
from evodisc.campaign.store import CandidateLog
from evodisc.program import program_to_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import bench_search  # noqa: E402
from bench_search import (  # noqa: E402
    ARMS,
    Reach,
    arm_campaign,
    best_program,
    first_reached,
    run_record,
    tables,
    trace,
)


def row(cid, fitness, status="ok", cache_hit=False, stage="full", seconds=1.0, wall=None):
    return {
        "id": cid,
        "fitness": fitness,
        "status": status,
        "cache_hit": cache_hit,
        "stage": stage,
        "eval_seconds": 0.0 if cache_hit or status == "invalid" else seconds,
        "wall_time": float(cid + 1) if wall is None else wall,
    }


# Out of id order, as a log may hold them; a screen-stage row and a cache hit before the first
# full result that reaches 0.5 (id 5).
LOG = [
    row(5, 0.6, seconds=2.0),
    row(0, 0.2),
    row(1, 0.0, status="invalid"),
    row(2, 0.9, status="rejected", stage="screen", seconds=0.5),  # a screen value never counts
    row(3, 0.2, cache_hit=True),
    row(4, 0.4, seconds=3.0),
    row(6, 0.8),
]


def test_first_reached_counts_candidates_trained_compute_and_wall_in_id_order():
    steps = trace(LOG)
    assert [s["id"] for s in steps] == list(range(7))
    assert first_reached(steps, 0.5) == Reach(candidates=6, trained=4, compute=6.5, wall=6.0)
    assert first_reached(steps, 0.7) == Reach(candidates=7, trained=5, compute=7.5, wall=7.0)
    assert first_reached(steps, 0.2) == Reach(candidates=1, trained=1, compute=1.0, wall=1.0)
    assert first_reached(steps, 0.95) is None


def test_a_diverged_or_screened_row_never_reaches_even_with_a_high_fitness():
    log = [row(0, 0.9, status="diverged"), row(1, 0.9, stage="screen"), row(2, 0.3)]
    assert first_reached(trace(log), 0.5) is None
    assert first_reached(trace(log), 0.3) == Reach(3, 3, 3.0, 3.0)


def test_a_run_record_and_its_table():
    goals = {"momentum": 0.5, "tuned best": 0.95}
    record = run_record("re", 0, 7, LOG)
    assert record["best"] == 0.8 and record["trained"] == 5 and record["candidates"] == 7
    assert record["compute"] == 7.5 and record["wall"] == 7.0
    other = run_record("re", 1, 7, [row(0, 0.55, seconds=4.0)])
    text = tables([record, other], goals, ["re"], 7, {"re-s0-b7": 0.7, "re-s1-b7": 0.5})
    assert text.startswith("- `re`: regularized evolution, random start\n")
    assert "| re | 2/2 | 3.5 [1–6] | 2.5 [1–4] | 5.2 [4.0–6.5] | 3.5 [1.0–6.0] |" in text
    assert "| re | 0/2 | — | — | — | — |" in text
    at_budget = "| re | 3 [1–5] | 5.8 [4.0–7.5] | 4.0 [1.0–7.0] | 0.675 [0.550–0.800] |"
    assert at_budget + " 0.600 [0.500–0.700] |" in text


def test_every_arm_has_a_note_for_the_legend():
    assert set(bench_search.ARM_NOTES) == set(ARMS)


def test_a_bad_option_is_one_line_not_a_traceback(capsys):
    with pytest.raises(SystemExit) as exit_:
        bench_search.main(["--budget", "0", "--tables-only"])
    assert exit_.value.code == 2
    assert "--budget: expected a positive integer, got '0'" in capsys.readouterr().err


@pytest.mark.parametrize("arm", list(ARMS))
def test_every_arm_is_a_valid_campaign_with_the_same_budget_and_seed(arm):
    campaign = arm_campaign(arm, 40, 2)
    assert campaign.budget.evaluations == (160 if arm == "random_search_4x" else 40)
    assert campaign.seed == 2
    assert list(campaign.fitness.tasks) == bench_search.SUITE["tasks"]
    assert campaign.resources.evaluators == 0


def test_the_arms_differ_from_the_base_in_what_they_name():
    base = arm_campaign("re", 40, 0)
    assert base.resources.reuse_results and not base.screen.enabled
    assert base.evolution.merge_scale_variants and base.evolution.random_programs == 16
    assert not arm_campaign("re_no_cache", 40, 0).resources.reuse_results
    assert arm_campaign("re_funnel", 40, 0).screen.enabled
    assert not arm_campaign("re_no_merge", 40, 0).evolution.merge_scale_variants
    warm = arm_campaign("re_warm_adamw", 40, 0).evolution
    assert warm.warm_start == ("adamw",) and warm.random_programs == 0
    assert not warm.tune_constants
    tuned = arm_campaign("re_warm_tune", 40, 0).evolution
    assert tuned.tune_constants and tuned.warm_start == ("adamw",)
    ga = arm_campaign("genome_ga", 40, 0)
    assert ga.to_dict()["space"]["kind"] == "genome" and ga.evolution.crossover == 1.0
    for arm in ("random_search", "random_genome", "random_search_4x"):  # all random seeds
        campaign = arm_campaign(arm, 40, 0)
        population = campaign.evolution.population
        assert population == campaign.evolution.random_programs == campaign.budget.evaluations


def test_the_best_program_of_a_run_is_its_fittest_full_result(tmp_path):
    run_campaign(arm_campaign("re_funnel", 60, 0), tmp_path, pool=FakePool(1))
    rows = CandidateLog(tmp_path).read().to_pylist()
    full = [r for r in rows if r["stage"] == "full" and r["status"] == "ok"]
    fittest = max(full, key=lambda r: r["fitness"])
    assert any(r["stage"] == "screen" for r in rows)  # screen rows were there to be skipped
    assert program_to_json(best_program(tmp_path)) == fittest["program_json"]
