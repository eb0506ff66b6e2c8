"""The batched trainer: equal to training each model separately, per-run divergence, devices."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from evodisc.analysis import uses_reduction
from evodisc.program import parse_program
from fitness.device import available_devices
from fitness.naive import train_naive
from fitness.tasks import load_task
from fitness.trainer import train_batch
from search_spaces.zoo import load_known

torch.set_num_threads(1)  # tests run two xdist workers on two cores

# An elementwise rule, a sign-based rule, and one with a per-tensor reduction (RMS-normalised
# momentum): the last takes the trainer's per-parameter path.
NORMALISED = parse_program(
    "def train(g, lr, m):\n    m = interp(g, m, 0.9)\n    return lr * m / (rms(m) + 1e-8), m\n"
)
BLOW_UP = parse_program("def train(g, lr, t):\n    return -lr * g * exp(3 * t)\n")


def short(name: str, steps: int):
    return dataclasses.replace(load_task(name), steps=steps)


@pytest.fixture(params=[str(d) for d in available_devices()])
def device(request) -> str:
    """Every device that exists here (CPU, or each visible GPU): no skips."""
    return request.param


def test_batched_equals_each_model_trained_separately():
    task = short("digits_mlp", 25)
    programs = [load_known("adamw"), load_known("lion"), NORMALISED]
    assert uses_reduction(NORMALISED) and not uses_reduction(programs[0])
    lrs, seeds = (1e-3, 3e-2), (0, 1)
    batched = train_batch(task, programs, lrs, seeds, dtype=torch.float64)
    for p, program in enumerate(programs):
        for i, lr in enumerate(lrs):
            for j, seed in enumerate(seeds):
                alone = train_batch(task, [program], [lr], [seed], dtype=torch.float64)
                naive = train_naive(task, program, lr, seed, dtype=torch.float64)
                assert batched.metric[p, i, j] == pytest.approx(alone.metric[0, 0, 0], rel=1e-9)
                assert batched.metric[p, i, j] == pytest.approx(naive, rel=1e-9)
    # the runs really differ from each other (no accidental sharing of weights or state)
    assert len(np.unique(np.round(batched.metric, 8))) == batched.metric.size


def test_cnn_and_transformer_batched_equal_naive():
    for name in ("digits_cnn", "markov_lm"):
        task = short(name, 6)
        batched = train_batch(task, [load_known("adamw")], [1e-2, 1e-3], [3], dtype=torch.float64)
        for i, lr in enumerate((1e-2, 1e-3)):
            naive = train_naive(task, load_known("adamw"), lr, 3, dtype=torch.float64)
            assert batched.metric[0, i, 0] == pytest.approx(naive, rel=1e-9)


def test_a_diverging_program_is_isolated_from_the_others():
    task = short("teacher_student", 30)
    programs = [load_known("sgd"), BLOW_UP, load_known("adamw")]
    lrs = (1e-2, 1e-1)
    result = train_batch(task, programs, lrs, (0,), dtype=torch.float64)
    assert result.diverged[1].all() and np.isnan(result.metric[1]).all()
    best_lr, best_metric = result.best(1)
    assert best_lr is None and math.isnan(best_metric)  # diverged at every learning rate
    assert all(result.best(p)[0] in lrs and math.isfinite(result.best(p)[1]) for p in (0, 2))
    assert not result.diverged[[0, 2]].any()
    for p in (0, 2):
        for i, lr in enumerate(lrs):
            naive = train_naive(task, programs[p], lr, 0, dtype=torch.float64)
            assert result.metric[p, i, 0] == pytest.approx(naive, rel=1e-9)
    assert math.isnan(train_naive(task, BLOW_UP, 1e-2, 0, dtype=torch.float64))


def test_a_too_large_learning_rate_diverges_alone():
    task = short("ill_conditioned", 60)
    # plain gradient descent far above the stable step size on a quadratic
    result = train_batch(task, [load_known("sgd")], [50.0, 1e-3], (0,))
    assert result.diverged[0, :, 0].tolist() == [True, False]


def test_best_learning_rate_is_the_best_finite_one():
    task = short("ill_conditioned", 40)
    lrs = (1e-4, 1e-2, 0.1)
    result = train_batch(task, [load_known("adamw")], lrs, (0, 1))
    best_lr, best = result.best(0)
    means = result.metric[0].mean(axis=1)
    assert best == pytest.approx(means.min()) and best_lr == lrs[int(np.argmin(means))]


def test_trains_on_every_available_device(device):
    """CUDA smoke test where a GPU exists (CUDA graphs on): batched equals the naive loop."""
    task = short("teacher_student", 40)
    programs = [load_known("adamw"), load_known("momentum")]
    result = train_batch(task, programs, (1e-3, 1e-2), (0,), device=device)
    for p, program in enumerate(programs):
        for i, lr in enumerate((1e-3, 1e-2)):
            naive = train_naive(task, program, lr, 0, device=device)
            assert result.metric[p, i, 0] == pytest.approx(naive, rel=1e-4)
