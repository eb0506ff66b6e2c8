"""Proxy tasks, the batched trainer, baselines and fitness (see ``docs/fitness.md``)."""

from fitness.baselines import Fitness, SuiteConfig, TaskFitness, baseline_metric, evaluate
from fitness.cached import Evaluation, evaluate_cached
from fitness.device import available_devices, resolve_device
from fitness.runs import DEFAULT_LRS
from fitness.tasks import Task, TaskData, TaskError, describe, load_task, task_names
from fitness.trainer import BatchResult, train_batch

__all__ = [
    "DEFAULT_LRS",
    "BatchResult",
    "Evaluation",
    "Fitness",
    "SuiteConfig",
    "Task",
    "TaskData",
    "TaskError",
    "TaskFitness",
    "available_devices",
    "baseline_metric",
    "describe",
    "evaluate",
    "evaluate_cached",
    "load_task",
    "resolve_device",
    "task_names",
    "train_batch",
]
