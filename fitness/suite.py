"""The fitness function: per task the best validation metric over the learning-rate grid,
normalised against the tuned baseline (1.0 = AdamW, :mod:`fitness.normalise`), averaged over
the suite. All programs are trained together, one batched run per task."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from evodisc.fitness_cache import CachedFitness
from evodisc.program import Program
from fitness.baselines import baseline_metric
from fitness.config import SuiteConfig
from fitness.normalise import ratio
from fitness.tasks import load_task
from fitness.trainer import BatchResult, train_batch


@dataclass(frozen=True)
class TaskFitness:
    """One task's result for one program."""

    task: str
    metric: float  # best over the learning-rate grid (mean over seeds); NaN if all diverged
    best_lr: float | None
    ratio: float  # vs the AdamW baseline, clipped to [0, RATIO_CAP]; 0 if all diverged
    edge: str | None = None  # "low"/"high": best_lr is on that edge of the grid (re-evaluate)


@dataclass(frozen=True)
class Fitness:
    """A program's fitness: the mean of its per-task ratios (1.0 = tuned AdamW)."""

    value: float
    tasks: dict[str, TaskFitness]

    @property
    def diverged(self) -> bool:
        """True when the program diverged at every learning rate on every task."""
        return all(t.best_lr is None for t in self.tasks.values())

    def as_cached(self) -> CachedFitness:
        """The result as caches and logs store it: status ``ok`` or ``diverged``, details
        JSON-able (a task's metric is None when it diverged; ``edge`` is ``"low"``/``"high"``
        when its best learning rate is on that edge of the grid, so that a later stage can
        re-evaluate it on a wider grid, else None)."""
        tasks = {
            name: {
                "metric": t.metric if math.isfinite(t.metric) else None,
                "best_lr": t.best_lr,
                "ratio": t.ratio,
                "edge": t.edge,
            }
            for name, t in self.tasks.items()
        }
        return CachedFitness(self.value, "diverged" if self.diverged else "ok", {"tasks": tasks})


def baseline_metrics(config: SuiteConfig, device=None) -> dict[str, float]:
    """The baseline's metric on every task of the suite (cached; see :func:`baseline_metric`)."""
    return {name: baseline_metric(load_task(name), config, device)[0] for name in config.tasks}


def task_fitness(result: BatchResult, program: int, baseline: float) -> TaskFitness:
    """One program's :class:`TaskFitness` from a batched result and the task's baseline."""
    best_lr, metric = result.best(program)
    return TaskFitness(
        result.task,
        metric,
        best_lr,
        ratio(metric, baseline, result.higher_is_better),
        result.edge(program),
    )


def evaluate(
    programs: Sequence[Program],
    config: SuiteConfig | None = None,
    device=None,
    baselines: Mapping[str, float] | None = None,
) -> list[Fitness]:
    """The fitness of each program on the suite; all programs are trained together per task.

    ``baselines`` (task name → the baseline's metric) skips :func:`baseline_metric`: a campaign
    computes them once and ships them to its evaluators.
    """
    config = config or SuiteConfig()
    per_program: list[dict[str, TaskFitness]] = [{} for _ in programs]
    for name in config.tasks:
        task = load_task(name)
        if baselines is not None:
            baseline = baselines[name]
        else:
            baseline, _ = baseline_metric(task, config, device)
        result = train_batch(task, programs, config.lrs, config.seeds, device, config.torch_dtype)
        for i in range(len(programs)):
            per_program[i][task.name] = task_fitness(result, i, baseline)
    return [
        Fitness(sum(t.ratio for t in tasks.values()) / len(tasks), tasks) for tasks in per_program
    ]
