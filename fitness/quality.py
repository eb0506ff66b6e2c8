"""How good a fitness signal is: the seed-to-seed noise of a task's baseline, how well a task
separates known optimizers, and whether the search suite ranks them as held-out tasks do.

On the arrays of :class:`fitness.trainer.BatchResult` (``metric[program, lr, seed]``, NaN where
a run diverged); :func:`study` trains the zoo and computes them all, and
``tools/bench_fitness_quality.py`` prints its :class:`QualityStudy`. The task
statistics are computed **per seed**: each seed tunes its own learning rate (the best of the
grid for that seed alone), and a program's ratio on a seed is against the baseline's best on the
same seed (same initial weights and batch order), so the spread over seeds is the noise that a
one-seed fitness evaluation carries. :func:`fitness_on_seeds` is the fitness itself (the code
of :mod:`fitness.suite`) on chosen seeds, to check that it reproduces on other seeds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fitness.baselines import baseline_of
from fitness.config import DEFAULT_AGGREGATE, DEFAULT_CHECKPOINTS
from fitness.normalise import ratio
from fitness.suite import Fitness, task_fitness
from fitness.tasks import load_task
from fitness.trainer import BatchResult, train_batch
from fitness.uncertainty import cv
from search_spaces.zoo import load_known


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
    aggregate: str = DEFAULT_AGGREGATE,
) -> dict[str, Fitness]:
    """Every program's suite fitness — exactly what :func:`fitness.suite.evaluate` computes
    with ``aggregate`` — from results that trained them all on a superset of the seeds: the
    programs on ``seeds``, normalised by the baseline (one of ``names``) tuned on
    ``baseline_seeds``."""
    per_program: dict[str, dict] = {n: {} for n in names}
    for task, result in results.items():
        index = {s: i for i, s in enumerate(result.seeds)}
        tuned = baseline_of(
            result.select_seeds([index[s] for s in baseline_seeds]), names.index(baseline)
        )
        trained = result.select_seeds([index[s] for s in seeds])
        for i, name in enumerate(names):
            per_program[name][task] = task_fitness(trained, i, tuned)
    return {name: Fitness.of(tasks, aggregate) for name, tasks in per_program.items()}


@dataclass(frozen=True)
class QualityStudy:
    """The fitness-quality protocol's results (``tools/bench_fitness_quality.py`` prints them):
    the zoo (``names``, the baseline first) trained on every task of ``suite`` with ``seeds``
    seeds and of ``heldout`` with ``heldout_seeds``; per task its :class:`TaskQuality`; the
    fitness at the default settings (``candidate_seeds`` against ``baseline_seeds``) on the
    first seeds and on disjoint later ones, on all suite seeds, and on the held-out tasks."""

    names: list[str]
    suite: list[str]
    heldout: list[str]
    seeds: int
    heldout_seeds: int
    candidate_seeds: int
    baseline_seeds: int
    results: dict[str, BatchResult]
    qualities: dict[str, TaskQuality]
    first: dict[str, Fitness]
    second: dict[str, Fitness]
    every: dict[str, Fitness]
    held: dict[str, Fitness]

    def moved(self, name: str) -> float:
        """How far ``name``'s fitness moved between the two disjoint seed sets."""
        return abs(self.first[name].value - self.second[name].value)

    def within(self, name: str) -> bool:
        """Did the re-run stay within the reported uncertainty (the repeatability limit of the
        difference of two evaluations, each reported with its own)?"""
        limit = math.hypot(self.first[name].uncertainty, self.second[name].uncertainty)
        return self.moved(name) < limit / math.sqrt(2)

    def rho(self, every_seed: bool = False) -> float:
        """Spearman's ρ between the zoo's ranking by suite fitness (at the default settings, or
        on all suite seeds) and by held-out fitness."""
        suite = self.every if every_seed else self.first
        return spearman(
            [suite[n].value for n in self.names], [self.held[n].value for n in self.names]
        )


def study(
    names: Sequence[str],
    suite: Sequence[str],
    heldout: Sequence[str],
    lrs: Sequence[float],
    *,
    seeds: int,
    heldout_seeds: int,
    candidate_seeds: int,
    baseline_seeds: int,
    device: str = "cpu",
    checkpoints: int = DEFAULT_CHECKPOINTS,
    trained: Callable[[str, float], None] | None = None,
) -> QualityStudy:
    """Run the fitness-quality protocol (see :class:`QualityStudy`); ``names[0]`` is the
    baseline. ``trained(task, seconds)`` is called after each task."""
    other = max(candidate_seeds, baseline_seeds)
    if seeds < 2 * other:
        raise ValueError(f"seeds must be at least {2 * other}: two disjoint seed sets")
    names, baseline = list(names), names[0]
    programs = [load_known(n) for n in names]
    results, qualities = {}, {}
    for name in [*suite, *heldout]:
        task = load_task(name)
        started = time.perf_counter()
        results[name] = train_batch(
            task,
            programs,
            lrs,
            tuple(range(seeds if name in suite else heldout_seeds)),
            device,
            checkpoints=checkpoints,
        )
        qualities[name] = task_quality(
            name, results[name].metric, names, baseline, task.higher_is_better
        )
        if trained:
            trained(name, time.perf_counter() - started)
    on_suite = {t: results[t] for t in suite}
    cand, base = range(candidate_seeds), range(baseline_seeds)
    later = range(other, other + candidate_seeds), range(other, other + baseline_seeds)
    held = range(heldout_seeds)
    return QualityStudy(
        names=names,
        suite=list(suite),
        heldout=list(heldout),
        seeds=seeds,
        heldout_seeds=heldout_seeds,
        candidate_seeds=candidate_seeds,
        baseline_seeds=baseline_seeds,
        results=results,
        qualities=qualities,
        first=fitness_on_seeds(on_suite, names, baseline, cand, base),
        second=fitness_on_seeds(on_suite, names, baseline, *later),
        every=fitness_on_seeds(on_suite, names, baseline, range(seeds), range(seeds)),
        held=fitness_on_seeds({t: results[t] for t in heldout}, names, baseline, held, held),
    )
