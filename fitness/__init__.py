"""Proxy tasks, the batched trainer, baselines and fitness (see ``docs/fitness.md``).

Like ``evodisc``, importing the package is light: the names below resolve on first use, so that
``fitness.config`` and ``fitness.tasks`` (names, fingerprints, cache keys) do not import torch.
"""

from evodisc.lazy import on_first_use

#: Public name -> the module that defines it, imported on first use.
_ON_FIRST_USE = {
    "DEFAULT_LRS": "fitness.config",
    "SuiteConfig": "fitness.config",
    "tuned_baseline": "fitness.baselines",
    "Baseline": "fitness.messages",
    "Request": "fitness.messages",
    "Result": "fitness.messages",
    "DeviceError": "fitness.device",
    "available_devices": "fitness.device",
    "resolve_device": "fitness.device",
    "Evaluation": "fitness.evaluation",
    "evaluate_cached": "fitness.evaluation",
    "Fitness": "fitness.suite",
    "TaskFitness": "fitness.suite",
    "evaluate": "fitness.suite",
    "Task": "fitness.tasks",
    "TaskData": "fitness.tasks",
    "TaskError": "fitness.tasks",
    "describe": "fitness.tasks",
    "heldout_task_names": "fitness.tasks",
    "load_task": "fitness.tasks",
    "task_names": "fitness.tasks",
    "Tuned": "fitness.tuning",
    "tune": "fitness.tuning",
    "BatchResult": "fitness.trainer",
    "train_batch": "fitness.trainer",
}

__all__ = list(_ON_FIRST_USE)


__getattr__, __dir__ = on_first_use(globals(), _ON_FIRST_USE)
