"""The robust default fitness (protocol 3): the anytime metric over validation checkpoints, the
geometric mean with its floor and cap, the baseline's noise, and the uncertainty of a fitness —
checked against the naive loop, against a simulation, and end to end through the cache."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from evodisc.fitness_cache import SCHEMA, CachedFitness, FitnessCache, fitness_config_key
from evodisc.program import parse_program
from fitness.baselines import tuned_baseline
from fitness.config import DEFAULT_BASELINE_SEEDS, DEFAULT_SEEDS, SuiteConfig
from fitness.naive import train_naive
from fitness.normalise import RATIO_CAP, RATIO_FLOOR, WORST_FITNESS, suite_value, suite_weights
from fitness.quality import fitness_on_seeds
from fitness.runs import checkpoint_steps
from fitness.suite import evaluate
from fitness.tasks import load_task
from fitness.trainer import train_batch
from fitness.uncertainty import (
    RatioError,
    coverage_factor,
    cv,
    log_ratio_error,
    pooled_cv,
    suite_uncertainty,
    welch_dof,
)
from search_spaces.zoo import load_known

torch.set_num_threads(1)

BLOW_UP = parse_program("def train(g, lr, t):\n    return -lr * g * exp(3 * t)\n")


def test_checkpoints_are_evenly_spaced_and_end_at_the_last_step():
    assert checkpoint_steps(200, 8) == (25, 50, 75, 100, 125, 150, 175, 200)
    assert checkpoint_steps(200, 1) == (200,)
    assert checkpoint_steps(3, 8) == (1, 2, 3)  # fewer steps than checkpoints: every step
    with pytest.raises(ValueError, match="at least 1"):
        checkpoint_steps(10, 0)
    with pytest.raises(ValueError, match="checkpoints: expected a positive integer"):
        SuiteConfig(checkpoints=0)


def test_the_anytime_metric_is_the_mean_of_the_curve_and_equals_the_naive_loop():
    task = dataclasses.replace(load_task("digits_mlp"), steps=12)
    programs = [load_known("adamw"), load_known("lion"), BLOW_UP]
    lrs, seeds = (1e-3, 1e-2), (0, 1)
    result = train_batch(task, programs, lrs, seeds, dtype=torch.float64, checkpoints=4)
    assert result.checkpoint_steps == (3, 6, 9, 12)
    assert result.curve.shape == (3, 2, 2, 4)
    final = train_batch(task, programs, lrs, seeds, dtype=torch.float64)
    for p, program in enumerate(programs[:2]):
        for i, lr in enumerate(lrs):
            for j, seed in enumerate(seeds):
                naive = train_naive(task, program, lr, seed, dtype=torch.float64, checkpoints=4)
                assert result.metric[p, i, j] == pytest.approx(naive, rel=1e-9)
                assert result.metric[p, i, j] == pytest.approx(result.curve[p, i, j].mean())
                # the last checkpoint is the end of training: the final-value metric
                assert result.curve[p, i, j, -1] == pytest.approx(final.metric[p, i, j])
                # the run learned, so the curve falls and its mean is above its end
                assert result.curve[p, i, j, 0] > result.curve[p, i, j, -1]
    # a run that diverged has no curve and no metric; the others are untouched
    assert np.isnan(result.metric[2]).all() and np.isnan(result.curve[2]).all()
    assert result.diverged[2].all() and not result.diverged[:2].any()
    assert math.isnan(train_naive(task, BLOW_UP, 1e-3, 0, dtype=torch.float64, checkpoints=4))


def test_the_suite_value_is_a_geometric_mean_with_a_floor_and_a_cap():
    def geomean(ratios):
        return suite_value(ratios, "geomean")

    assert geomean([2.0, 0.5]) == pytest.approx(1.0)  # an arithmetic mean would say 1.25
    assert geomean([4.0, 1.0, 0.25, 1.0]) == pytest.approx(1.0)
    # a task far worse (or diverged: ratio 0) counts as RATIO_FLOOR, one far better as the cap
    assert geomean([0.0, 1.0]) == pytest.approx(math.sqrt(RATIO_FLOOR))
    assert geomean([1e-6, 1.0]) == geomean([0.0, 1.0])
    assert geomean([1e6, 1.0]) == pytest.approx(math.sqrt(RATIO_CAP))
    assert geomean([0.0, 0.0]) == WORST_FITNESS == geomean([])  # diverged everywhere
    # the default is the soft minimum: the power mean with exponent -2 (fitness.aggregate)
    assert suite_value([2.0, 0.5]) == pytest.approx((0.5 * (2.0**-2 + 0.5**-2)) ** -0.5)


def test_pooled_noise_and_standard_errors():
    assert cv([1.0, 1.0]) == 0.0 and math.isnan(cv([1.0]))
    assert cv([0.9, 1.1]) == pytest.approx(math.sqrt(0.02) / 1.0)
    # degrees of freedom weight the two estimates; a side without any counts for none
    assert pooled_cv(0.1, 3, 0.1, 8) == pytest.approx(0.1)
    assert pooled_cv(0.2, 3, 0.1, 8) == pytest.approx(math.sqrt((0.04 * 2 + 0.01 * 7) / 9))
    assert pooled_cv(math.nan, 1, 0.1, 8) == pytest.approx(0.1)
    assert math.isnan(pooled_cv(math.nan, 1, math.nan, 1))
    assert welch_dof([1.0, 1.0], [4, 4]) == pytest.approx(8.0)
    assert welch_dof([1.0, 0.0], [4, 1]) == pytest.approx(4.0)
    # one seed against an 8-seed baseline with CV 10 %: se² = 0.1²/1 + 0.1²/8, both terms
    # resting on the baseline's 7 degrees of freedom
    one = log_ratio_error([2.0], 0.1, 8)
    assert one.se == pytest.approx(math.sqrt(0.01 + 0.01 / 8))
    assert one.dof == pytest.approx(welch_dof([0.01, 0.01 / 8], [7, 7]))
    # a program far noisier than the baseline keeps its own noise, on its own 2 degrees
    noisy = log_ratio_error([1.0, 1.5, 2.0], 0.01, 8)
    assert noisy.se == pytest.approx(math.sqrt(cv([1.0, 1.5, 2.0]) ** 2 / 3 + 0.01**2 / 8))
    assert 2.0 <= noisy.dof < 2.01
    # the coverage factor: Student's quantile × √2 (repeatability), 1.96 × √2 when well known
    assert coverage_factor(math.inf) == pytest.approx(1.959964 * math.sqrt(2))
    assert coverage_factor(2) == pytest.approx(4.302653 * math.sqrt(2))
    known = [RatioError(0.1, math.inf), RatioError(0.1, math.inf)]
    assert suite_uncertainty(1.0, known) == pytest.approx(coverage_factor(math.inf) * 0.1 / 2**0.5)
    assert suite_uncertainty(1.0, [RatioError(0.0, math.inf)]) == 0.0  # diverged: certain
    assert math.isnan(suite_uncertainty(1.0, [known[0], RatioError(math.nan, math.nan)]))


@pytest.mark.parametrize("aggregate", ["geomean", "softmin", "worst_half"])
@pytest.mark.parametrize(
    ("noisier", "tolerance", "repeatable"),
    [(1.0, 0.15, (0.92, 0.99)), (3.0, 0.25, (0.85, 0.99))],
)
def test_the_uncertainty_matches_the_spread_of_simulated_reruns(
    noisier, tolerance, repeatable, aggregate
):
    """Metrics drawn with a known seed-to-seed noise per task — the program as noisy as the
    baseline, or three times noisier (its own spread must then count, not the baseline's) —
    and the fitness computed the way the suite computes it, re-run many times: it spreads as
    its standard error says, and two re-runs differ by less than the reported uncertainty (the
    repeatability limit) about 95 % of the time — under each aggregate, whose sensitivities
    weigh the tasks' noise."""
    rng = np.random.default_rng(0)
    noise = np.array([0.02, 0.05, 0.10])  # per task: CV of one seed's metric
    program_level = np.array([0.9, 1.1, 0.7])  # the program's true metric / the baseline's
    seeds, baseline_seeds = len(DEFAULT_SEEDS), len(DEFAULT_BASELINE_SEEDS)

    def rerun() -> tuple[float, float, float]:
        ratios, errors = [], []
        for t in range(noise.size):
            base = np.exp(rng.normal(0, noise[t], baseline_seeds))
            mine = program_level[t] * np.exp(rng.normal(0, noisier * noise[t], seeds))
            ratios.append(base.mean() / mine.mean())  # a loss: lower is better
            errors.append(log_ratio_error(mine, cv(base), baseline_seeds))
        value, weights = suite_weights(ratios, aggregate)
        se = value * math.sqrt(sum((w * e.se) ** 2 for w, e in zip(weights, errors, strict=True)))
        return value, se, suite_uncertainty(value, errors, weights)

    # value, standard error, uncertainty: of a run, and of a re-run with other seeds
    runs = np.array([[*rerun(), *rerun()] for _ in range(3000)])
    assert np.median(runs[:, 1]) == pytest.approx(np.std(runs[:, 0]), rel=tolerance)
    within = np.mean(np.abs(runs[:, 0] - runs[:, 3]) < runs[:, 2])
    assert repeatable[0] < within < repeatable[1]


def test_fitness_carries_its_uncertainty_into_the_cache(tmp_path, fresh_cache, monkeypatch):
    tasks = ("ill_conditioned", "teacher_student")
    config = SuiteConfig(
        tasks=tasks, lrs=(1e-2, 3e-2, 0.1), seeds=(0, 1, 2), baseline_seeds=(0, 1, 2, 3)
    )
    short = {n: dataclasses.replace(load_task(n), steps=40) for n in tasks}
    monkeypatch.setattr("fitness.suite.load_task", short.__getitem__)
    adamw, sgd = evaluate([load_known("adamw"), load_known("sgd")], config)
    for name in tasks:
        baseline = tuned_baseline(short[name], config)
        assert baseline.seeds == 4 and 0 < baseline.cv < 0.5  # the baseline's own noise
        doc = json.loads(next((fresh_cache / "baselines").glob(f"{name}-*.json")).read_text())
        assert doc["cv"] == baseline.cv and doc["seeds"] == 4
    for fit in (adamw, sgd):
        assert 0 < fit.uncertainty < 0.5 * fit.value
        assert all(0 < t.error.se < 0.5 and t.error.dof > 1 for t in fit.tasks.values())
    # AdamW on 3 of the baseline's 4 seeds: 1 within its uncertainty, but not exactly 1
    assert adamw.value != 1.0 and abs(adamw.value - 1.0) < adamw.uncertainty
    cached = adamw.as_cached()
    assert cached.uncertainty == adamw.uncertainty
    assert cached.details["tasks"]["ill_conditioned"]["log_se"] > 0
    cache = FitnessCache(tmp_path / "cache")
    cache.put("a" * 32, "k", cached)
    cache.flush()
    assert FitnessCache(tmp_path / "cache").get("a" * 32, "k") == cached


def test_a_cache_part_written_before_the_uncertainty_column_still_loads(tmp_path):
    key = fitness_config_key({"old": True})
    old = pa.table(
        {
            "functional_hash": ["a" * 32],
            "config_key": [key],
            "fitness": [0.5],
            "status": ["ok"],
            "details": ["{}"],
        }
    )
    (tmp_path / "c").mkdir()
    pq.write_table(old, tmp_path / "c" / "part-000000-00000000.parquet")
    with_column = pa.table({**{n: old.column(n) for n in old.column_names}, "uncertainty": [0.1]})
    assert with_column.schema.names == SCHEMA.names
    cache = FitnessCache(tmp_path / "c")
    assert cache.get("a" * 32, key) == CachedFitness(0.5, "ok", {}, None)
    assert not (tmp_path / "c" / "quarantine").exists()


def test_fitness_on_other_seeds_is_the_suite_code_on_those_seeds(monkeypatch):
    """The quality benchmark's re-run check uses exactly the fitness function: training once on
    many seeds and selecting some gives what evaluating on those seeds gives."""
    task = dataclasses.replace(load_task("teacher_student"), steps=30)
    monkeypatch.setattr("fitness.suite.load_task", lambda name: task)
    names = ["adamw", "sgd"]
    programs = [load_known(n) for n in names]
    lrs = (1e-2, 0.1)
    result = train_batch(task, programs, lrs, range(5), checkpoints=4)
    picked = fitness_on_seeds({task.name: result}, names, "adamw", (3, 4), (0, 1, 2))
    config = SuiteConfig(
        tasks=(task.name,), lrs=lrs, seeds=(3, 4), baseline_seeds=(0, 1, 2), checkpoints=4
    )
    direct = evaluate(programs, config)
    for name, fit in zip(names, direct, strict=True):
        assert picked[name].value == pytest.approx(fit.value, rel=1e-12)
        assert picked[name].uncertainty == pytest.approx(fit.uncertainty, rel=1e-12)
