"""Normalisation: a program's metric relative to the baseline's, as a ratio where > 1 is better.

Per-task ratios are what the suite's fitness averages, so each is clipped to ``[0, RATIO_CAP]``:
one task cannot dominate the mean.
"""

from __future__ import annotations

import math

#: A per-task ratio is clipped to [0, RATIO_CAP] so that one task cannot dominate the mean.
RATIO_CAP = 10.0

#: Fitness of a program that is invalid, failed, or diverged on every task (every ratio is 0).
WORST_FITNESS = 0.0


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
