"""What a fitness evaluation trains (:class:`SuiteConfig`), what it is normalised by, and the
cache key of its results. Importing this module does not import torch (a campaign controller
computes keys without it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from evodisc.fitness_cache import fitness_config_key
from evodisc.program import program_to_json
from fitness.tasks import task_fingerprint, task_names
from search_spaces.zoo import load_known

if TYPE_CHECKING:
    import torch

#: Bump when a built-in task, the training protocol or the format of the cache keys changes,
#: to invalidate cached results. 2: user tasks are keyed by their data and model too, and a
#: task's result records whether its best learning rate is on the edge of the grid. 3: the
#: anytime metric (mean over checkpoints), three seeds per candidate and eight for the
#: baseline, the grid up to 1.0, the geometric mean with a floor, an uncertainty with every
#: fitness, and reworked tasks (markov_lm's chain, digits_cnn held out).
PROTOCOL_VERSION = 3

#: The known optimizer fitness is normalised by (1.0 = this optimizer, tuned on the same grid).
BASELINE = "adamw"

#: The default learning-rate grid (half-decades from 1e-4 to 1.0): wide enough for sign-based
#: rules (best near 1e-4), Adam-like rules (1e-3) and SGD-like rules (0.1-1; at 0.3 as the top,
#: SGD's best was the edge on every task: docs/fitness.md).
DEFAULT_LRS: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)

#: Seeds a candidate trains per learning rate by default (its fitness is the mean over them).
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
#: Seeds the baseline trains per learning rate: more than a candidate's (computed once per
#: task and cached), so that its noise adds little to every ratio.
DEFAULT_BASELINE_SEEDS: tuple[int, ...] = tuple(range(8))
#: Validation points per run: a run's metric is the mean of its validation metric at this many
#: evenly spaced points of training (the anytime metric; 1 = the final value only).
DEFAULT_CHECKPOINTS = 8

DTYPES = ("float32", "float64")

#: The most seeds a replay trains per learning rate (each seed is a full set of models).
MAX_SEEDS = 64


@dataclass(frozen=True)
class SuiteConfig:
    """What a fitness evaluation trains — tasks, learning-rate grid, seeds, precision, the
    baseline's seeds and the validation checkpoints of a run: one stage of evaluation (stages
    that differ in tasks or seeds are different configurations, each with its own cache key)."""

    tasks: tuple[str, ...] = field(default_factory=lambda: tuple(task_names()))
    lrs: tuple[float, ...] = DEFAULT_LRS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    dtype: str = "float32"
    baseline_seeds: tuple[int, ...] = DEFAULT_BASELINE_SEEDS
    checkpoints: int = DEFAULT_CHECKPOINTS

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.checkpoints < 1:
            raise ValueError(f"checkpoints must be at least 1, not {self.checkpoints}")

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.dtype)

    def to_dict(self) -> dict:
        """Plain JSON-able fields (what crosses to a remote evaluator)."""
        fields = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}

    @classmethod
    def from_dict(cls, doc: dict) -> SuiteConfig:
        """The inverse of :meth:`to_dict`."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()})

    def cache_key(self, device_type: str) -> str:
        """The key of this suite's fitness values in a :class:`~evodisc.fitness_cache.FitnessCache`:
        everything that changes a value — the device type (CPU and CUDA kernels round
        differently), the dtype, each task's fingerprint (for a user's task its file, data and
        model: :func:`fitness.tasks.task_fingerprint`, which loads it and so imports torch),
        the grid, the seeds (the baseline's too), the checkpoints, the protocol version and
        the baseline program."""
        return fitness_config_key(
            {
                **self.to_dict(),
                "tasks": [task_fingerprint(t) for t in self.tasks],
                "device": device_type,
                "protocol": PROTOCOL_VERSION,
                "baseline": program_to_json(load_known(BASELINE)),
            }
        )
