"""Fitness: normalised against a cached, tuned AdamW baseline (1.0 = AdamW)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from evodisc.program import parse_program
from fitness.baselines import baseline_metric
from fitness.config import SuiteConfig
from fitness.normalise import RATIO_CAP, ratio
from fitness.suite import evaluate
from fitness.tasks import load_task
from search_spaces.zoo import load_known

torch.set_num_threads(1)

CONFIG = SuiteConfig(tasks=("ill_conditioned", "teacher_student"), lrs=(1e-3, 1e-2, 0.1))


def test_adamw_has_fitness_one_and_the_baseline_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("EVODISC_CACHE", str(tmp_path))
    never = parse_program("def train(g, lr):\n    return lr * g * 1e-9\n")
    adamw, sgd, stuck = evaluate([load_known("adamw"), load_known("sgd"), never], CONFIG)
    assert adamw.value == pytest.approx(1.0, abs=1e-6)
    assert all(t.ratio == pytest.approx(1.0, abs=1e-6) for t in adamw.tasks.values())
    assert adamw.tasks["ill_conditioned"].best_lr in CONFIG.lrs
    assert sgd.value != pytest.approx(1.0, abs=1e-3)
    assert stuck.value < 0.5  # a rule that barely moves is far worse than AdamW

    files = sorted((tmp_path / "baselines").glob("*.json"))
    assert [f.name.split("-")[0] for f in files] == ["ill_conditioned", "teacher_student"]
    # the cache is what is used: doctor it and the baseline follows
    doc = json.loads(files[0].read_text())
    doc["metric"] = 123.0
    files[0].write_text(json.dumps(doc))
    assert baseline_metric(load_task("ill_conditioned"), CONFIG)[0] == 123.0
    # a different grid is a different baseline
    other = SuiteConfig(tasks=CONFIG.tasks, lrs=(1e-3,))
    assert baseline_metric(load_task("ill_conditioned"), other)[0] != 123.0


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
