"""Proxy tasks, the batched trainer, baselines and fitness (see ``docs/fitness.md``)."""

from fitness.baselines import baseline_metric
from fitness.config import SuiteConfig
from fitness.device import DeviceError, available_devices, resolve_device
from fitness.evaluation import Evaluation, evaluate_cached
from fitness.runs import DEFAULT_LRS
from fitness.suite import Fitness, TaskFitness, evaluate
from fitness.tasks import Task, TaskData, TaskError, describe, load_task, task_names
from fitness.trainer import BatchResult, train_batch

__all__ = [
    "DEFAULT_LRS",
    "BatchResult",
    "DeviceError",
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
