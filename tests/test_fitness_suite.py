"""Fitness: normalised against a cached, tuned AdamW baseline (1.0 = AdamW)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from evodisc.program import parse_program
from fitness.baselines import Baseline, tuned_baseline
from fitness.config import SuiteConfig
from fitness.device import resolve_device
from fitness.normalise import RATIO_CAP, RATIO_FLOOR, ratio
from fitness.suite import evaluate
from fitness.tasks import load_task
from search_spaces.zoo import load_known

torch.set_num_threads(1)

# One seed for the candidates and the baseline: AdamW is then exactly its own baseline.
CONFIG = SuiteConfig(
    tasks=("ill_conditioned", "teacher_student"),
    lrs=(1e-3, 1e-2, 0.1),
    seeds=(0,),
    baseline_seeds=(0,),
)


def _cached_baselines() -> dict[str, Baseline]:
    """Each task's baseline as the cache holds it now."""
    return {name: tuned_baseline(load_task(name), CONFIG) for name in CONFIG.tasks}


def soft_minimum(ratios) -> float:
    """The default aggregate written out: the power mean with exponent -2 of clipped ratios."""
    clipped = [min(max(r, RATIO_FLOOR), RATIO_CAP) for r in ratios]
    return (math.fsum(r**-2 for r in clipped) / len(clipped)) ** -0.5


def test_each_ratio_is_the_metric_against_the_cached_baseline(fresh_cache):
    never = parse_program("def train(g, lr):\n    return lr * g * 1e-9\n")
    adamw, sgd, stuck = evaluate([load_known("adamw"), load_known("sgd"), never], CONFIG)
    baselines = _cached_baselines()
    assert len(list((fresh_cache / "baselines").glob("*.json"))) == len(CONFIG.tasks)
    # AdamW is normalised by itself: exactly 1 on CPU, where training it beside other programs
    # rounds exactly as alone; on CUDA the batch's size changes kernels and the last bits.
    exact = resolve_device().type == "cpu"

    def same(x: float) -> float:
        return x if exact else pytest.approx(x, rel=1e-6)

    assert adamw.value == same(1.0)
    for name, baseline in baselines.items():
        assert adamw.tasks[name].ratio == same(1.0)
        assert adamw.tasks[name].metric == same(baseline.metric)
        assert adamw.tasks[name].best_lr == baseline.best_lr
        assert baseline.best_lr in CONFIG.lrs
    for fitness in (adamw, sgd, stuck):
        assert set(fitness.tasks) == set(CONFIG.tasks)
        for name, task in fitness.tasks.items():
            higher = load_task(name).higher_is_better
            assert task.ratio == ratio(task.metric, baselines[name].metric, higher)
            assert not higher  # both tasks score a loss: the ratio is baseline / metric, capped
            expected = min(baselines[name].metric / task.metric, RATIO_CAP)
            assert task.ratio == pytest.approx(expected)
        ratios = [t.ratio for t in fitness.tasks.values()]
        assert fitness.value == pytest.approx(soft_minimum(ratios), rel=1e-12)
    assert all(0.0 < t.ratio < 0.5 for t in stuck.tasks.values())  # barely moves: far worse
    assert sgd.tasks["ill_conditioned"].ratio < 0.5  # plain SGD on an ill-conditioned problem


def test_the_cached_baseline_is_what_normalises(fresh_cache):
    (first,) = evaluate([load_known("sgd")], CONFIG)
    files = sorted((fresh_cache / "baselines").glob("*.json"))
    assert [f.name.split("-")[0] for f in files] == ["ill_conditioned", "teacher_student"]
    # doctor the cache: a baseline twice SGD's loss makes SGD exactly twice as good as it
    sgd_loss = first.tasks["ill_conditioned"].metric
    doc = json.loads(files[0].read_text())
    doc["metric"] = 2 * sgd_loss
    files[0].write_text(json.dumps(doc))
    assert tuned_baseline(load_task("ill_conditioned"), CONFIG).metric == 2 * sgd_loss
    (again,) = evaluate([load_known("sgd")], CONFIG)
    assert again.tasks["ill_conditioned"].metric == sgd_loss  # same training, new baseline
    assert again.tasks["ill_conditioned"].ratio == 2.0
    assert again.tasks["teacher_student"] == first.tasks["teacher_student"]
    assert again.value == pytest.approx(soft_minimum([2.0, first.tasks["teacher_student"].ratio]))
    # a different grid, other baseline seeds or checkpoints: a different baseline
    for other in (
        SuiteConfig(tasks=CONFIG.tasks, lrs=(1e-3,), seeds=(0,), baseline_seeds=(0,)),
        SuiteConfig(tasks=CONFIG.tasks, lrs=CONFIG.lrs, seeds=(0,), baseline_seeds=(0, 1)),
        SuiteConfig(
            tasks=CONFIG.tasks, lrs=CONFIG.lrs, seeds=(0,), baseline_seeds=(0,), checkpoints=1
        ),
    ):
        assert tuned_baseline(load_task("ill_conditioned"), other).metric != 2 * sgd_loss


def test_ratio_direction_cap_and_divergence():
    assert ratio(0.5, 1.0, higher_is_better=False) == 2.0  # half AdamW's loss
    assert ratio(0.5, 1.0, higher_is_better=True) == 0.5  # half AdamW's accuracy
    assert ratio(1e-9, 1.0, higher_is_better=False) == RATIO_CAP
    assert ratio(math.nan, 1.0, higher_is_better=False) == 0.0
    assert ratio(1.0, math.inf, higher_is_better=False) == RATIO_CAP  # only AdamW diverged
    assert ratio(0.0, 0.0, higher_is_better=False) == 1.0  # both reach zero loss
    assert ratio(0.0, 0.2, higher_is_better=False) == RATIO_CAP
    # negative metrics (e.g. a log-likelihood) have no meaningful ratio
    assert math.isnan(ratio(-2.0, -1.0, higher_is_better=True))
    assert math.isnan(ratio(2.0, -1.0, higher_is_better=False))
