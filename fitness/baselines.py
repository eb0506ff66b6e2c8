"""Fitness: per task the best validation metric over the learning-rate grid, normalised against
AdamW tuned on the same grid and budget (1.0 = AdamW), averaged over the suite.

The AdamW reference of each task is computed once and cached as JSON under ``$EVODISC_CACHE``
(default ``~/.cache/evodisc``), keyed by a digest of everything that determines it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from evodisc.cache import fitness_config_key
from evodisc.program import Program, program_to_json
from fitness.device import resolve_device
from fitness.runs import DEFAULT_LRS, ratio
from fitness.tasks import Task, load_task, task_names
from fitness.trainer import BatchResult, train_batch
from search_spaces.zoo import load_known

#: Bump when a built-in task or the training protocol changes, to invalidate cached baselines.
PROTOCOL_VERSION = 1

#: The known optimizer fitness is normalised by (1.0 = this optimizer, tuned on the same grid).
BASELINE = "adamw"

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class SuiteConfig:
    """What a fitness evaluation trains: tasks, learning-rate grid, seeds, precision."""

    tasks: tuple[str, ...] = field(default_factory=lambda: tuple(task_names()))
    lrs: tuple[float, ...] = DEFAULT_LRS
    seeds: tuple[int, ...] = (0,)
    dtype: str = "float32"

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]


@dataclass(frozen=True)
class TaskFitness:
    """One task's result for one program."""

    task: str
    metric: float  # best over the learning-rate grid (mean over seeds); NaN if all diverged
    best_lr: float | None
    ratio: float  # vs the AdamW baseline, clipped to [0, RATIO_CAP]; 0 if all diverged


@dataclass(frozen=True)
class Fitness:
    """A program's fitness: the mean of its per-task ratios (1.0 = tuned AdamW)."""

    value: float
    tasks: dict[str, TaskFitness]

    @property
    def diverged(self) -> bool:
        """True when the program diverged at every learning rate on every task."""
        return all(t.best_lr is None for t in self.tasks.values())


def cache_dir() -> Path:
    """Where baselines are cached (``$EVODISC_CACHE`` or ``~/.cache/evodisc``)."""
    return Path(os.environ.get("EVODISC_CACHE", Path.home() / ".cache" / "evodisc"))


def _digest(task: Task, program: Program, config: SuiteConfig, device: torch.device) -> str:
    key = {
        "version": PROTOCOL_VERSION,
        "device": device.type,  # CPU and CUDA kernels round differently: AdamW's exact 1.0
        "task": [task.name, task.steps, task.batch_size, task.metric, task.higher_is_better],
        "program": program_to_json(program),
        "lrs": list(config.lrs),
        "seeds": list(config.seeds),
        "dtype": config.dtype,
    }
    return fitness_config_key(key)


def baseline_metric(
    task: Task, config: SuiteConfig, device=None, name: str = BASELINE
) -> tuple[float, float | None]:
    """``(metric, best_lr)`` of the known optimizer ``name`` tuned on ``config``'s grid; read
    from the cache, or trained once and cached."""
    program = load_known(name)
    digest = _digest(task, program, config, resolve_device(device))
    path = cache_dir() / "baselines" / f"{task.name}-{name}-{digest}.json"
    if path.is_file():
        doc = json.loads(path.read_text())
        return float(doc["metric"]), doc["best_lr"]
    result = train_batch(task, [program], config.lrs, config.seeds, device, config.torch_dtype)
    best_lr, metric = result.best(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(
        json.dumps({"task": task.name, "baseline": name, "metric": metric, "best_lr": best_lr})
    )
    tmp.replace(path)  # atomic: concurrent evaluators never read a half-written file
    return metric, best_lr


def task_fitness(result: BatchResult, program: int, baseline: float) -> TaskFitness:
    """One program's :class:`TaskFitness` from a batched result and the task's baseline."""
    best_lr, metric = result.best(program)
    return TaskFitness(
        result.task, metric, best_lr, ratio(metric, baseline, result.higher_is_better)
    )


def evaluate(
    programs: Sequence[Program], config: SuiteConfig | None = None, device=None
) -> list[Fitness]:
    """The fitness of each program on the suite; all programs are trained together per task."""
    config = config or SuiteConfig()
    per_program: list[dict[str, TaskFitness]] = [{} for _ in programs]
    for name in config.tasks:
        task = load_task(name)
        baseline, _ = baseline_metric(task, config, device)
        result = train_batch(task, programs, config.lrs, config.seeds, device, config.torch_dtype)
        for i in range(len(programs)):
            per_program[i][task.name] = task_fitness(result, i, baseline)
    return [
        Fitness(sum(t.ratio for t in tasks.values()) / len(tasks), tasks) for tasks in per_program
    ]
