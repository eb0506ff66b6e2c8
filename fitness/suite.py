"""The fitness function: per task the best (anytime) validation metric over the learning-rate
grid, mean over the seeds, normalised against the tuned baseline (1.0 = AdamW); the suite's
value is an aggregate of the tasks' ratios (the ``aggregate`` of :class:`SuiteConfig`, by
default their soft minimum: :mod:`fitness.normalise`, :mod:`fitness.aggregate`), with its
uncertainty from the seed-to-seed noise (:mod:`fitness.uncertainty`). All programs are trained
together, one batched run per task."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from evodisc.fitness_cache import CachedFitness
from evodisc.program import Program
from fitness.aggregate import Aggregate
from fitness.baselines import tuned_baseline
from fitness.config import DEFAULT_AGGREGATE, SuiteConfig
from fitness.messages import Baseline
from fitness.normalise import ratio, suite_weights
from fitness.tasks import load_task
from fitness.trainer import BatchResult, train_batch
from fitness.uncertainty import RatioError, log_ratio_error, suite_uncertainty


@dataclass(frozen=True)
class TaskFitness:
    """One task's result for one program."""

    task: str
    metric: float  # best over the learning-rate grid (mean over seeds); NaN if all diverged
    best_lr: float | None
    ratio: float  # vs the AdamW baseline, clipped to [0, RATIO_CAP]; 0 if all diverged
    edge: str | None = None  # "low"/"high": best_lr is on that edge of the grid (re-evaluate)
    #: standard error of log(ratio) from the seeds' spread, and its degrees of freedom
    error: RatioError = RatioError(math.nan, math.nan)
    #: runs (learning rates × seeds) stopped early for not improving; None: early stopping off
    stopped: int | None = None


@dataclass(frozen=True)
class Fitness:
    """A program's fitness: the aggregate of its per-task ratios (1.0 = tuned AdamW; by default
    their soft minimum), and its uncertainty (the repeatability limit,
    :mod:`fitness.uncertainty`; NaN when a task's noise is unknown: one seed and a one-seed
    baseline)."""

    value: float
    tasks: dict[str, TaskFitness]
    uncertainty: float = math.nan

    @classmethod
    def of(
        cls, tasks: dict[str, TaskFitness], aggregate: str | Aggregate = DEFAULT_AGGREGATE
    ) -> Fitness:
        """The suite's fitness from its tasks' results, under ``aggregate`` (a name of
        :data:`fitness.aggregate.AGGREGATES`, or an aggregate function)."""
        value, weights = suite_weights([t.ratio for t in tasks.values()], aggregate)
        uncertainty = suite_uncertainty(value, [t.error for t in tasks.values()], weights)
        return cls(value, tasks, uncertainty)

    @property
    def diverged(self) -> bool:
        """True when the program diverged at every learning rate on every task."""
        return all(t.best_lr is None for t in self.tasks.values())

    def as_cached(self) -> CachedFitness:
        """The result as caches and logs store it: status ``ok`` or ``diverged``, details
        JSON-able (a task's metric is None when it diverged; ``edge`` is ``"low"``/``"high"``
        when its best learning rate is on that edge of the grid, so that a later stage can
        re-evaluate it on a wider grid, else None; ``log_se`` the standard error of the log of
        its ratio and ``log_se_dof`` its degrees of freedom; ``stopped`` the runs stopped early,
        present only with early stopping; an unknown or infinite number is None)."""
        tasks = {
            name: {
                "metric": _number(t.metric),
                "best_lr": t.best_lr,
                "ratio": t.ratio,
                "edge": t.edge,
                "log_se": _number(t.error.se),
                "log_se_dof": _number(t.error.dof),
                **({} if t.stopped is None else {"stopped": t.stopped}),
            }
            for name, t in self.tasks.items()
        }
        status = "diverged" if self.diverged else "ok"
        return CachedFitness(self.value, status, {"tasks": tasks}, _number(self.uncertainty))


def _number(x: float) -> float | None:
    return x if math.isfinite(x) else None


def suite_baselines(config: SuiteConfig, device=None) -> dict[str, Baseline]:
    """The tuned baseline of every task of the suite (cached; see :func:`tuned_baseline`)."""
    return {name: tuned_baseline(load_task(name), config, device) for name in config.tasks}


def task_fitness(result: BatchResult, program: int, baseline: Baseline) -> TaskFitness:
    """One program's :class:`TaskFitness` from a batched result and the task's baseline."""
    best_lr, metric = result.best(program)
    diverged = best_lr is None
    return TaskFitness(
        result.task,
        metric,
        best_lr,
        ratio(metric, baseline.metric, result.higher_is_better),
        result.edge(program),
        RatioError(0.0, math.inf)
        if diverged
        else log_ratio_error(result.best_seeds(program), baseline.cv, baseline.seeds),
        None if result.stopped is None else int(result.stopped[program].sum()),
    )


def evaluate(
    programs: Sequence[Program],
    config: SuiteConfig | None = None,
    device=None,
    baselines: Mapping[str, Baseline] | None = None,
) -> list[Fitness]:
    """The fitness of each program on the suite; all programs are trained together per task.

    ``baselines`` (task name → its :class:`Baseline`) skips :func:`tuned_baseline`: a campaign
    computes them once and ships them to its evaluators.
    """
    config = config or SuiteConfig()
    per_program: list[dict[str, TaskFitness]] = [{} for _ in programs]
    for name in config.tasks:
        task = load_task(name)
        if baselines is not None:
            baseline = baselines[name]
        else:
            baseline = tuned_baseline(task, config, device)
        result = train_batch(
            task,
            programs,
            config.lrs,
            config.seeds,
            device,
            config.torch_dtype,
            checkpoints=config.checkpoints,
            stop_stalled=config.stop_stalled,
            keep_lrs=config.keep_lrs,
            keep_lrs_after=config.keep_lrs_after,
        )
        for i in range(len(programs)):
            per_program[i][task.name] = task_fitness(result, i, baseline)
    return [Fitness.of(tasks, config.aggregate) for tasks in per_program]
