"""How good a fitness signal is: the seed-to-seed noise of a task's baseline, how well a task
separates known optimizers, and whether the search suite ranks them as held-out tasks do.

On the arrays of :class:`fitness.trainer.BatchResult` (``metric[program, lr, seed]``, NaN where
a run diverged); ``tools/bench_fitness_quality.py`` trains the zoo and prints these. The task
statistics are computed **per seed**: each seed tunes its own learning rate (the best of the
grid for that seed alone), and a program's ratio on a seed is against the baseline's best on the
same seed (same initial weights and batch order), so the spread over seeds is the noise that a
one-seed fitness evaluation carries. :func:`fitness_on_seeds` is the fitness itself (the code
of :mod:`fitness.suite`) on chosen seeds, to check that it reproduces on other seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fitness.baselines import baseline_of
from fitness.normalise import ratio
from fitness.suite import Fitness, task_fitness
from fitness.trainer import BatchResult
from fitness.uncertainty import cv


def best_per_seed(metric: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """``(S,)`` best metric over the learning rates of each seed, from an ``(L, S)`` array in
    which a diverged run is NaN (NaN for a seed that diverged at every learning rate)."""
    metric = np.asarray(metric, dtype=np.float64)
    best = np.full(metric.shape[1], math.nan)
    for s in range(metric.shape[1]):
        finite = metric[:, s][np.isfinite(metric[:, s])]
        if finite.size:
            best[s] = finite.max() if higher_is_better else finite.min()
    return best


def seed_ratios(best: np.ndarray, baseline: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Per-seed ratios (> 1: better than the baseline on that seed; clipped as the fitness is,
    :func:`fitness.normalise.ratio`)."""
    return np.array(
        [ratio(float(m), float(b), higher_is_better) for m, b in zip(best, baseline, strict=True)]
    )


@dataclass(frozen=True)
class TaskQuality:
    """One task: the baseline's noise, every program's per-seed ratios, and the separation."""

    task: str
    baseline_cv: float  # seed-to-seed CV of the baseline's best metric
    ratios: dict[str, np.ndarray]  # program -> (S,) per-seed ratios (the baseline: all 1)
    separation: float  # spread of the mean ratios / noise of one seed's ratio (see below)
    spread: float = math.nan  # standard deviation of the programs' mean ratios

    def mean(self, name: str) -> float:
        return float(np.mean(self.ratios[name]))


def task_quality(
    task: str,
    metric: np.ndarray,
    names: Sequence[str],
    baseline: str,
    higher_is_better: bool,
) -> TaskQuality:
    """The quality of one task from ``metric[program, lr, seed]`` of the programs ``names``
    (one of which is ``baseline``).

    ``separation`` is the standard deviation of the programs' mean ratios (the baseline's is 1)
    divided by the pooled seed-to-seed standard deviation of the other programs' ratios: how
    many noise units apart the programs are on one seed. Below about 1 a one-seed fitness
    cannot tell the programs apart; a task on which every ratio is 1 separates nothing (0).
    """
    bests = {n: best_per_seed(metric[i], higher_is_better) for i, n in enumerate(names)}
    ratios = {n: seed_ratios(b, bests[baseline], higher_is_better) for n, b in bests.items()}
    means = np.array([r.mean() for r in ratios.values()])
    others = [r for n, r in ratios.items() if n != baseline and r.size > 1]
    noise = math.sqrt(np.mean([r.var(ddof=1) for r in others])) if others else math.nan
    spread = float(means.std(ddof=1)) if means.size > 1 else 0.0
    if spread == 0:
        separation = 0.0
    elif noise == 0:
        separation = math.inf
    else:
        separation = spread / noise
    return TaskQuality(task, cv(bests[baseline]), ratios, separation, spread)


def ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks from 1 (smallest) with ties given their average rank."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    result = np.empty(values.size)
    i = 0
    while i < values.size:
        j = i
        while j + 1 < values.size and values[order[j + 1]] == values[order[i]]:
            j += 1
        result[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return result


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's on average ranks; NaN when one side is constant)."""
    if len(a) != len(b):
        raise ValueError(f"spearman: {len(a)} values against {len(b)}")
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = math.sqrt(float((ra**2).sum() * (rb**2).sum()))
    return math.nan if denominator == 0 else float((ra * rb).sum() / denominator)


def summary(qualities: Mapping[str, TaskQuality], names: Sequence[str]) -> dict:
    """JSON-able per-task numbers (CV, separation, each program's per-seed ratios)."""
    return {
        task: {
            "baseline_cv": q.baseline_cv,
            "separation": q.separation,
            "spread": q.spread,
            "ratios": {n: [float(x) for x in q.ratios[n]] for n in names},
        }
        for task, q in qualities.items()
    }


def fitness_on_seeds(
    results: Mapping[str, BatchResult],
    names: Sequence[str],
    baseline: str,
    seeds: Sequence[int],
    baseline_seeds: Sequence[int],
) -> dict[str, Fitness]:
    """Every program's suite fitness — exactly what :func:`fitness.suite.evaluate` computes —
    from results that trained them all on a superset of the seeds: the programs on ``seeds``,
    normalised by the baseline (one of ``names``) tuned on ``baseline_seeds``."""
    per_program: dict[str, dict] = {n: {} for n in names}
    for task, result in results.items():
        index = {s: i for i, s in enumerate(result.seeds)}
        tuned = baseline_of(
            result.select_seeds([index[s] for s in baseline_seeds]), names.index(baseline)
        )
        trained = result.select_seeds([index[s] for s in seeds])
        for i, name in enumerate(names):
            per_program[name][task] = task_fitness(trained, i, tuned)
    return {name: Fitness.of(tasks) for name, tasks in per_program.items()}
