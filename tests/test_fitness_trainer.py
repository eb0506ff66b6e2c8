"""The batched trainer: equal to training each model separately, per-run divergence, devices;
validation in memory-bounded chunks, and how many candidates a batch holds."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from evodisc.analysis import uses_reduction
from evodisc.campaign.evaluators import Evaluator
from evodisc.program import parse_program
from fitness import batch_size, worker
from fitness.config import SuiteConfig
from fitness.device import available_devices
from fitness.messages import Request
from fitness.naive import train_naive
from fitness.suite import suite_baselines
from fitness.tasks import load_task
from fitness.trainer import BatchedRun, train_batch
from fitness.worker import evaluate_request
from search_spaces.zoo import load_known

torch.set_num_threads(1)  # tests run two xdist workers on two cores

# An elementwise rule, a sign-based rule, and one with a per-tensor reduction (RMS-normalised
# momentum): the last takes the trainer's per-parameter path.
NORMALISED = parse_program(
    "def train(g, lr, m):\n    m = interp(g, m, 0.9)\n    return lr * m / (rms(m) + 1e-8), m\n"
)
BLOW_UP = parse_program("def train(g, lr, t):\n    return -lr * g * exp(3 * t)\n")
# SGD for the first half of the run (t <= T/2), then no update at all: reads the horizon T.
HALF = parse_program("def train(g, lr, t, T):\n    return lr * relu(sign(0.5 * T + 0.5 - t)) * g\n")


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


def test_the_horizon_T_is_the_tasks_step_budget():
    """HALF moves the weights for the first half of ``task.steps`` steps, exactly as SGD trained
    for that many steps does, and not at all after; the naive loop agrees."""
    sgd = load_known("sgd")
    for steps in (10, 7):
        run = BatchedRun(short("teacher_student", steps), [HALF, sgd], [0.05], dtype=torch.float64)
        start = run.flat.clone()
        run.train()
        half = BatchedRun(short("teacher_student", steps // 2), [sgd], [0.05], dtype=torch.float64)
        half.train()
        assert not torch.equal(run.flat[0], start[0])
        torch.testing.assert_close(run.flat[0], half.flat[0], rtol=1e-12, atol=1e-15)
        assert not torch.allclose(run.flat[1], half.flat[0])  # SGD itself went on moving
        task = short("teacher_student", steps)
        batched = train_batch(task, [HALF], [0.05], dtype=torch.float64).metric[0, 0, 0]
        assert train_naive(task, HALF, 0.05, dtype=torch.float64) == pytest.approx(batched, 1e-9)


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


# ------------------------------------------------------------- memory: validation and batch size


def _peak_bytes(device: str, fn) -> int:
    """How far ``fn()`` raises the peak memory of ``device`` above its level before."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("peak memory of a CPU process is read from /proc/self/status (Linux)")

    def rss(key: str) -> int:
        line = next(x for x in status.read_text().splitlines() if x.startswith(key))
        return int(line.split()[1]) * 1024

    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) restarts from here
    before = rss("VmRSS:")
    fn()
    return rss("VmHWM:") - before


def test_validation_runs_in_chunks_with_bounded_memory(device, monkeypatch):
    """Models are validated a chunk at a time, each chunk reduced to its scores: the metrics are
    those of validating all at once, and the memory is that of one chunk (markov_lm: ~9 MB of
    activations per model; 32 models at once need ~10x the memory of 3)."""
    task = short("markov_lm", 2)
    programs = [load_known("adamw"), load_known("lion")]
    lrs = (1e-3, 3e-3, 1e-2, 3e-2)
    run = BatchedRun(task, programs, lrs, (0, 1, 2, 3), device=device)  # 32 models
    run.train()
    per_model = batch_size.model_cost(task, torch.float32, device).eval_bytes
    monkeypatch.setattr(batch_size, "EVAL_BYTES", 3 * per_model)
    assert batch_size.models_per_evaluation(task, torch.float32, device) == 3
    results = {}
    chunked = _peak_bytes(device, lambda: results.setdefault("chunked", run.evaluate()))
    at_once = _peak_bytes(device, lambda: results.setdefault("all", run.evaluate(10**6)))
    np.testing.assert_allclose(results["chunked"].metric, results["all"].metric, rtol=1e-5)
    assert chunked < 0.4 * at_once and chunked < 8 * 3 * per_model, (chunked, at_once)


def test_candidates_per_batch_fill_free_memory_up_to_the_knee(monkeypatch):
    tasks = ["markov_lm", "digits_mlp"]
    worst = batch_size.candidate_bytes(load_task("markov_lm"), 8)
    assert worst > batch_size.candidate_bytes(load_task("digits_mlp"), 8)
    assert worst == 8 * batch_size.candidate_bytes(load_task("markov_lm"), 1)
    share = batch_size.MEMORY_SHARE
    room = [(5.5 * worst + batch_size.EVAL_BYTES) / share, 0, 1e15]  # validation reserved
    for free, expected in zip(room, [5, 1, batch_size.KNEE["cpu"]], strict=True):
        monkeypatch.setattr(batch_size, "free_memory", lambda device=None, f=free: int(f))
        assert batch_size.candidates_per_batch(tasks, lrs=8, device="cpu") == expected
    # the programs' own state and temporaries, when known, instead of the default allowance
    lion = batch_size.candidate_bytes(load_task("markov_lm"), 8, programs=[load_known("lion")])
    assert lion < worst


def test_evaluators_sharing_a_device_together_plan_within_its_memory_share():
    task, models = load_task("markov_lm"), 8 * 64  # 8 learning rates x 64 seeds: memory binds
    per_candidate = batch_size.candidate_bytes(task, models)
    reserve, share = batch_size.EVAL_BYTES, batch_size.MEMORY_SHARE

    def plan(candidates: int) -> int:  # what an evaluator plans: its batch and its validation
        return candidates * per_candidate + reserve

    free = int(4 * (plan(1) + per_candidate // 2) / share)  # a quarter share: 1.5 candidates
    count = {
        sharing: batch_size.candidates_per_batch(
            ["markov_lm"], lrs=8, seeds=64, device="cpu", sharing=sharing, free=free
        )
        for sharing in (1, 4)
    }
    alone, shared = count[1], count[4]
    assert 1 < alone < batch_size.KNEE["cpu"]  # the memory decides, not the knee
    assert plan(alone) <= share * free < plan(alone + 1)  # alone: it fills the whole share
    assert shared == 1 and 4 * plan(shared) <= share * free < 4 * plan(shared + 1)
    # whatever the free memory, evaluators sharing a device together stay within its share
    for free in (2**30, 3 * 2**30, 10**10, 4 * 10**10):
        for sharing in (1, 2, 3, 4):
            n = batch_size.candidates_per_batch(
                ["markov_lm"], lrs=8, seeds=64, device="cpu", sharing=sharing, free=free
            )
            assert n == 1 or sharing * plan(n) <= share * free, (free, sharing, n)


def test_candidate_bytes_bound_the_measured_training_memory(device):
    """The estimate is an upper bound of what training really takes (and not far above)."""
    task = short("markov_lm", 3)
    programs = [load_known("adamw"), load_known("lion"), NORMALISED] * 4
    lrs = (1e-3, 1e-2, 0.1, 0.3)
    count = len(programs)
    estimate = batch_size.batch_bytes(task, count, len(lrs), torch.float32, device, programs)
    measured = _peak_bytes(device, lambda: train_batch(task, programs, lrs, (0,), device))
    assert 0 < measured < estimate < 10 * measured, (measured, estimate)


def test_the_evaluator_decides_the_batch_size_and_the_worker_splits_by_it(monkeypatch):
    config = SuiteConfig(tasks=("ill_conditioned",), lrs=(1e-2, 0.1), seeds=(0,))
    programs = tuple(load_known(n) for n in ("adamw", "sgd", "momentum", "signsgd", "lion"))
    request = Request(programs, config, suite_baselines(config))
    whole = evaluate_request(request)
    batches = []
    real = worker._train
    monkeypatch.setattr(worker, "_train", lambda ps, *a: batches.append(len(ps)) or real(ps, *a))
    decided = []

    def two(tasks, lrs, seeds, dtype, device, programs, sharing):
        decided.append(programs)
        return 2

    monkeypatch.setattr(batch_size, "candidates_per_batch", two)
    split = Evaluator("e", "cpu").evaluate(request)
    assert batches == [2, 2, 1] and len(decided) == 1  # decided once, with the programs
    assert list(decided[0]) == list(programs)
    assert [r.fitness for r in split] == [r.fitness for r in whole]
