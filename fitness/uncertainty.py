"""How sure a fitness is: the seed-to-seed noise of each task's ratio, carried through the
suite's geometric mean.

A task's ratio compares two means over seeds — the program's metric at its best learning rate
over its ``S`` seeds, and the baseline's over its ``S_b`` seeds — so its logarithm has the
standard error ``sqrt(cv_p² / S + cv_b² / S_b)``, where ``cv`` is a metric's seed-to-seed
coefficient of variation. The program's own CV from two or three seeds is a poor estimate, so
``cv_p`` is the larger of it and its *pooling* with the baseline's (measured on more seeds): a
program as noisy as AdamW gets the task's well-measured noise, a noisier one (a rule whose best
learning rate is near its edge of stability) its own — never less than what its seeds showed.
The suite's value is ``exp(mean_t log r_t)``, so its relative standard error is
``sqrt(Σ_t se_t²) / T``. The reported uncertainty is the *repeatability limit* (ISO 5725):
:data:`COVERAGE` = 2.8 standard errors, the difference that two evaluations of the same program
with other seeds stay below 95 % of the time (1.96 × √2: each of the two carries the noise). Two
candidates whose fitness differs by less than it are not told apart by this evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Standard errors in a reported uncertainty: two evaluations of one program with other seeds
#: differ by less than this many (1.96 × √2, ISO 5725's repeatability limit) 95 % of the time.
COVERAGE = 2.8


def cv(values: Sequence[float] | np.ndarray) -> float:
    """Coefficient of variation of the finite ``values``: sample standard deviation / |mean|
    (NaN for fewer than two values or a zero mean)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 2 or values.mean() == 0:
        return math.nan
    return float(values.std(ddof=1) / abs(values.mean()))


def pooled_cv(own: float, own_seeds: int, baseline: float, baseline_seeds: int) -> float:
    """The task's noise from a program's own CV over ``own_seeds`` and the baseline's over
    ``baseline_seeds``, weighted by their degrees of freedom (a NaN side counts for none)."""
    parts = [
        (value, seeds - 1)
        for value, seeds in ((own, own_seeds), (baseline, baseline_seeds))
        if math.isfinite(value) and seeds > 1
    ]
    weight = sum(dof for _, dof in parts)
    if weight == 0:
        return math.nan
    return math.sqrt(sum(value**2 * dof for value, dof in parts) / weight)


def log_ratio_se(
    values: Sequence[float] | np.ndarray, baseline_cv: float, baseline_seeds: int
) -> float:
    """Standard error of the log of a task's ratio, from the program's per-seed metrics at its
    best learning rate (``values``) and the baseline's CV over ``baseline_seeds`` seeds."""
    seeds = len(values)
    own = cv(values)
    noise = pooled_cv(own, seeds, baseline_cv, baseline_seeds)
    if not math.isfinite(noise):
        return math.nan
    if math.isfinite(own):
        noise = max(noise, own)
    baseline_part = baseline_cv**2 / baseline_seeds if math.isfinite(baseline_cv) else 0.0
    return math.sqrt(noise**2 / seeds + baseline_part)


def suite_uncertainty(value: float, log_ses: Sequence[float]) -> float:
    """:data:`COVERAGE` standard errors of a geometric mean ``value`` of ratios whose logs have
    the standard errors ``log_ses`` (NaN when one of them is unknown)."""
    if not log_ses:
        return math.nan
    relative = math.sqrt(sum(se**2 for se in log_ses)) / len(log_ses)
    return COVERAGE * value * relative
