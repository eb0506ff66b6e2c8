"""What a fitness evaluation trains (:class:`SuiteConfig`), what it is normalised by, and the
cache key of its results. Importing this module does not import torch (a campaign controller
computes keys without it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evodisc.fitness_cache import fitness_config_key
from evodisc.program import program_to_json
from evodisc.settings import (
    COUNT,
    FRACTION,
    INT,
    OPEN_FRACTION,
    POSITIVE,
    POSITIVE_INT,
    TEXT,
    check_settings,
    list_of,
    one_of,
    setting,
)
from fitness.aggregate import AGGREGATES
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

#: How the tasks' ratios make one fitness (:data:`fitness.aggregate.AGGREGATES`; measured:
#: docs/fitness.md, *Aggregates*).
DEFAULT_AGGREGATE = "softmin"

#: The most seeds a replay trains per learning rate (each seed is a full set of models).
MAX_SEEDS = 64


@dataclass(frozen=True)
class SuiteConfig:
    """What a fitness evaluation trains — tasks, learning-rate grid, seeds, precision, the
    baseline's seeds and the validation checkpoints of a run — and how the tasks' ratios make
    one fitness (``aggregate``; the baselines do not depend on it): one stage of evaluation
    (stages that differ in tasks or seeds are different configurations, each with its own cache
    key).
    A campaign file's ``[fitness]`` (the task names are checked by
    :func:`evodisc.campaign.config.check_tasks`, which may load a user's task file)."""

    tasks: tuple[str, ...] = setting(
        list_of(TEXT, "task names", distinct=True, most=64),
        lambda: tuple(task_names()),
        "proxy tasks (`evodisc tasks`) or FILE.py:FACTORY",
        shown="the search suite",
    )
    lrs: tuple[float, ...] = setting(
        list_of(POSITIVE, "numbers > 0", distinct=True, most=64), DEFAULT_LRS, "learning-rate grid"
    )
    seeds: tuple[int, ...] = setting(
        list_of(INT, "integers", distinct=True, most=MAX_SEEDS),
        DEFAULT_SEEDS,
        "training seeds of each candidate",
    )
    dtype: str = setting(one_of(DTYPES), "float32", "floating-point precision")
    baseline_seeds: tuple[int, ...] = setting(
        list_of(INT, "integers", distinct=True, most=MAX_SEEDS),
        DEFAULT_BASELINE_SEEDS,
        "training seeds of the AdamW baseline",
    )
    checkpoints: int = setting(
        POSITIVE_INT, DEFAULT_CHECKPOINTS, "validations per run; the metric is their mean"
    )
    stop_stalled: float = setting(
        FRACTION,
        0.0,
        "stop a run whose validation metric has not improved after this fraction of its steps; "
        "0 never",
    )
    keep_lrs: int = setting(
        COUNT,
        0,
        "learning-rate halving: after keep_lrs_after of its steps only each program's best "
        "keep_lrs learning rates train on; 0 the whole grid",
    )
    keep_lrs_after: float = setting(
        OPEN_FRACTION, 0.25, "the fraction of the steps after which learning-rate halving cuts"
    )
    aggregate: str = setting(
        one_of(AGGREGATES),
        DEFAULT_AGGREGATE,
        "how the tasks' ratios make the fitness (docs/fitness.md#aggregates)",
    )

    def __post_init__(self) -> None:
        check_settings(self)

    @property
    def halving(self) -> bool:
        """Whether learning-rate halving cuts the grid (``keep_lrs`` below its size)."""
        return 0 < self.keep_lrs < len(self.lrs)

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
        the grid, the seeds (the baseline's too), the checkpoints, early stopping, learning-rate
        halving and the aggregate (each left out at the value that was the only one before
        there was a choice — no early stopping, no halving, the geometric mean — so that keys
        written before stay valid), the protocol version and the baseline program."""
        fields = self.to_dict()
        if not self.stop_stalled:
            del fields["stop_stalled"]
        if not self.halving:
            del fields["keep_lrs"], fields["keep_lrs_after"]
        if fields["aggregate"] == "geomean":
            del fields["aggregate"]
        return fitness_config_key(
            {
                **fields,
                "tasks": [task_fingerprint(t) for t in self.tasks],
                "device": device_type,
                "protocol": PROTOCOL_VERSION,
                "baseline": program_to_json(load_known(BASELINE)),
            }
        )
