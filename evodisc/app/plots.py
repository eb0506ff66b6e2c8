"""The campaign report's plots (matplotlib, PNG): fitness over evaluations, cache-hit and invalid
shares, fitness against size and memory with the Pareto front, evaluations per second."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from deap import base, tools  # noqa: E402

#: Width of the rolling window (candidates) for medians and shares.
WINDOW = 50


class _Objectives(base.Fitness):
    """Fitness up, size down: the two objectives of a Pareto front (DEAP's dominance rules)."""

    weights = (1.0, -1.0)


class _Point:
    def __init__(self, fitness: float, size: float):
        self.fitness = _Objectives((fitness, size))


def pareto_front(fitness: Sequence[float], size: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats in both fitness (higher) and size (lower),
    via DEAP's non-dominated sort."""
    points = [_Point(f, s) for f, s in zip(fitness, size, strict=True)]
    if not points:
        return []
    front = tools.sortNondominated(points, len(points), first_front_only=True)[0]
    chosen = {id(p) for p in front}
    return [i for i, p in enumerate(points) if id(p) in chosen]


def _rolling(values: np.ndarray, reduce) -> np.ndarray:
    return np.array([reduce(values[max(0, i + 1 - WINDOW) : i + 1]) for i in range(len(values))])


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def fitness_over_time(fitness: np.ndarray, path: Path) -> Path:
    """Best-so-far and rolling median fitness against the number of candidates."""
    figure, axes = plt.subplots(figsize=(7, 3.6))
    n = np.arange(1, len(fitness) + 1)
    axes.plot(n, np.maximum.accumulate(fitness), label="best so far", color="C3")
    axes.plot(n, _rolling(fitness, np.median), label=f"median of last {WINDOW}", color="C0")
    axes.axhline(1.0, color="grey", linestyle=":", label="tuned AdamW = 1.0")
    axes.set(xlabel="candidates", ylabel="fitness", title="Fitness over the campaign")
    axes.legend(loc="upper left", fontsize="small")
    return _save(figure, path)


def shares_over_time(cache_hit: np.ndarray, invalid: np.ndarray, path: Path) -> Path:
    """Rolling shares of cache hits and invalid candidates."""
    figure, axes = plt.subplots(figsize=(7, 3.2))
    n = np.arange(1, len(cache_hit) + 1)
    axes.plot(n, 100 * _rolling(cache_hit, np.mean), label="cache hits", color="C2")
    axes.plot(n, 100 * _rolling(invalid, np.mean), label="invalid", color="C1")
    axes.set(xlabel="candidates", ylabel=f"% of last {WINDOW}", ylim=(0, 100))
    axes.set_title("Candidates not trained: cache hits and invalid programs")
    axes.legend(loc="upper right")
    return _save(figure, path)


def fitness_against(
    size: np.ndarray, fitness: np.ndarray, label: str, title: str, path: Path
) -> Path:
    """Each distinct program's fitness against a size measure, the Pareto front joined."""
    figure, axes = plt.subplots(figsize=(5.2, 3.8))
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(size))
    axes.scatter(size + jitter, fitness, s=9, alpha=0.45, color="C0", label="programs")
    front = sorted(pareto_front(fitness, size), key=lambda i: size[i])
    axes.plot(size[front], fitness[front], "o-", color="C3", label="Pareto front")
    axes.set(xlabel=label, ylabel="fitness", title=title)
    axes.legend(loc="lower right")
    return _save(figure, path)


def rate_over_time(wall_time: np.ndarray, path: Path) -> Path:
    """Candidates logged per second, in time bins."""
    figure, axes = plt.subplots(figsize=(7, 3.2))
    if len(wall_time):
        span = max(float(wall_time.max()), 1e-9)
        bins = max(1, min(40, int(span // 2) or 1))
        counts, edges = np.histogram(wall_time, bins=bins, range=(0.0, span))
        width = edges[1] - edges[0]
        axes.bar(edges[:-1], counts / width, width=width, align="edge", color="C4")
    axes.set(xlabel="seconds since the start", ylabel="candidates / s")
    axes.set_title("Evaluation throughput")
    return _save(figure, path)
