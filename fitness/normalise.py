"""Normalisation: a program's metric relative to the baseline's, as a ratio where > 1 is better,
and the suite's value: an aggregate of its tasks' ratios (:mod:`fitness.aggregate`; by default
:data:`~fitness.config.DEFAULT_AGGREGATE`, the soft minimum), each clipped to
``[RATIO_FLOOR, RATIO_CAP]`` so that no task — not one far better, not one far worse or
diverged — dominates it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from evodisc.screen import WORST_FITNESS
from fitness.aggregate import AGGREGATES, Aggregate
from fitness.config import DEFAULT_AGGREGATE

#: A per-task ratio is clipped to [0, RATIO_CAP] so that one task cannot dominate the mean.
RATIO_CAP = 10.0
#: ... and counts at least RATIO_FLOOR in the suite's value (a diverged task's ratio, 0,
#: would make it 0; a tenth of the baseline is as bad as the suite distinguishes).
RATIO_FLOOR = 0.1

__all__ = ["RATIO_CAP", "RATIO_FLOOR", "WORST_FITNESS", "ratio", "suite_value", "suite_weights"]


def ratio(metric: float, baseline: float, higher_is_better: bool) -> float:
    """``metric`` relative to ``baseline`` (> 1 is better), clipped to ``[0, RATIO_CAP]``.

    0 when the program diverged, ``RATIO_CAP`` when only the baseline did. Ratios compare
    non-negative metrics (losses, accuracies); with a negative one there is no meaningful ratio
    and the result is NaN.
    """
    if not math.isfinite(metric):
        return 0.0
    if not math.isfinite(baseline):
        return RATIO_CAP
    if metric < 0 or baseline < 0:
        return math.nan
    better, worse = (metric, baseline) if higher_is_better else (baseline, metric)
    if worse == 0:
        return 1.0 if better == 0 else RATIO_CAP
    return float(min(better / worse, RATIO_CAP))


def suite_weights(
    ratios: Sequence[float], aggregate: str | Aggregate = DEFAULT_AGGREGATE
) -> tuple[float, list[float]]:
    """The suite's value of per-task ratios under ``aggregate`` (a name of
    :data:`~fitness.aggregate.AGGREGATES`, or an aggregate function), each ratio clipped to
    ``[RATIO_FLOOR, RATIO_CAP]``, and each task's sensitivity ``∂ log value / ∂ log ratio``
    (what its noise counts for).
    :data:`WORST_FITNESS` (sensitivities 0) when every ratio is 0 (the program diverged on every
    task) or there is none; NaN when a ratio is (a negative metric)."""
    if not ratios or all(r == 0 for r in ratios):
        return WORST_FITNESS, [0.0] * len(ratios)
    if any(math.isnan(r) for r in ratios):
        return math.nan, [math.nan] * len(ratios)
    logs = np.log(np.clip(np.asarray(ratios, dtype=np.float64), RATIO_FLOOR, RATIO_CAP))
    combine = AGGREGATES[aggregate] if isinstance(aggregate, str) else aggregate
    log_value, weights = combine(logs)
    return math.exp(log_value), [float(w) for w in weights]


def suite_value(ratios: Sequence[float], aggregate: str | Aggregate = DEFAULT_AGGREGATE) -> float:
    """The suite's value of per-task ratios (:func:`suite_weights` without the sensitivities)."""
    return suite_weights(ratios, aggregate)[0]
