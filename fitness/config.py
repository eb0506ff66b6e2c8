"""What a fitness evaluation trains (:class:`SuiteConfig`) and what it is normalised by."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from fitness.runs import DEFAULT_LRS
from fitness.tasks import task_names

#: Bump when a built-in task or the training protocol changes, to invalidate cached results.
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
