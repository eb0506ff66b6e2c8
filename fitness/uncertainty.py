"""How sure a fitness is: the seed-to-seed noise of each task's ratio, carried through the
suite's geometric mean, as the GUM (the Guide to the Expression of Uncertainty in Measurement)
does it.

A task's ratio compares two means over seeds — the program's metric at its best learning rate
over its ``S`` seeds, and the baseline's over its ``S_b`` seeds — so its logarithm has the
standard error ``sqrt(cv_p² / S + cv_b² / S_b)``, where ``cv`` is a metric's seed-to-seed
coefficient of variation. The program's own CV from two or three seeds is a poor estimate, so
``cv_p`` is the larger of it and its *pooling* with the baseline's (measured on more seeds): a
program as noisy as AdamW gets the task's well-measured noise, a noisier one (a rule whose best
learning rate is near its edge of stability) its own — never less than what its seeds showed.
Each estimate has degrees of freedom (seeds − 1, summed when pooled); Welch–Satterthwaite gives
those of a sum of such terms.

The suite's value under the geometric mean is ``exp(mean_t log r_t)``, so its relative standard
error is ``sqrt(Σ_t se_t²) / T``; under another aggregate (:mod:`fitness.aggregate`) each task
counts with its sensitivity ``w_t = ∂ log value / ∂ log r_t``: ``sqrt(Σ_t w_t² se_t²)``.
The reported uncertainty is the *repeatability limit* (ISO 5725) at :data:`CONFIDENCE`:
``t × √2`` standard errors, where ``t`` is Student's quantile for the combined degrees of
freedom (1.96 when the noise is well known, 4.3 when it rests on three seeds): the difference
that two evaluations of the same program with other seeds stay below 95 % of the time (√2: each
of the two carries the noise). Two candidates whose fitness differs by less than it are not told
apart by this evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

#: The probability that a re-evaluation with other seeds lands within the reported uncertainty.
CONFIDENCE = 0.95


class RatioError(NamedTuple):
    """The standard error of the log of one task's ratio, and its degrees of freedom
    (``inf``: exactly known, e.g. a program that diverged everywhere)."""

    se: float
    dof: float


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
    return _pool(_estimates(own, own_seeds, baseline, baseline_seeds))[0]


def _pool(estimates: list[tuple[float, int]]) -> tuple[float, int]:
    """The pooled CV of ``(cv, degrees of freedom)`` estimates and its degrees of freedom."""
    dof = sum(d for _, d in estimates)
    if dof == 0:
        return math.nan, 0
    return math.sqrt(sum(value**2 * d for value, d in estimates) / dof), dof


def _estimates(
    own: float, own_seeds: int, baseline: float, baseline_seeds: int
) -> list[tuple[float, int]]:
    """The usable ``(cv, degrees of freedom)`` of the two sides."""
    return [
        (value, seeds - 1)
        for value, seeds in ((own, own_seeds), (baseline, baseline_seeds))
        if math.isfinite(value) and seeds > 1
    ]


def welch_dof(variances: Sequence[float], dofs: Sequence[float]) -> float:
    """Welch–Satterthwaite degrees of freedom of a sum of variance estimates."""
    total = sum(variances)
    denominator = sum(v**2 / d for v, d in zip(variances, dofs, strict=True) if v > 0)
    return math.inf if denominator == 0 else total**2 / denominator


def log_ratio_error(
    values: Sequence[float] | np.ndarray, baseline_cv: float, baseline_seeds: int
) -> RatioError:
    """The :class:`RatioError` of a task's ratio from the program's per-seed metrics at its
    best learning rate (``values``) and the baseline's CV over ``baseline_seeds`` seeds (NaN
    when the task's noise is unknown: one seed against a one-seed baseline)."""
    seeds = len(values)
    own = cv(values)
    estimates = _estimates(own, seeds, baseline_cv, baseline_seeds)
    noise, noise_dof = _pool(estimates)
    if not math.isfinite(noise):
        return RatioError(math.nan, math.nan)
    if math.isfinite(own) and own > noise:
        noise, noise_dof = own, seeds - 1
    parts = [(noise**2 / seeds, noise_dof)]
    if math.isfinite(baseline_cv) and baseline_seeds > 1:
        parts.append((baseline_cv**2 / baseline_seeds, baseline_seeds - 1))
    variances, dofs = zip(*parts, strict=True)
    return RatioError(math.sqrt(sum(variances)), welch_dof(variances, dofs))


def coverage_factor(dof: float) -> float:
    """Standard errors in the repeatability limit at :data:`CONFIDENCE` for an error with
    ``dof`` degrees of freedom: Student's two-sided quantile × √2."""
    from scipy.stats import t

    return float(t.ppf(0.5 + CONFIDENCE / 2, dof)) * math.sqrt(2)


def suite_uncertainty(
    value: float, errors: Sequence[RatioError], weights: Sequence[float] | None = None
) -> float:
    """The repeatability limit of a suite's ``value`` from ratios whose logs have the
    ``errors``, each counting with its sensitivity ``∂ log value / ∂ log ratio`` in ``weights``
    (default ``1/T`` each: the geometric mean; :func:`fitness.normalise.suite_weights` gives
    them for every aggregate); NaN when an error that counts is unknown."""
    weights = [1 / len(errors)] * len(errors) if weights is None else list(weights)
    counted = [(w, e) for w, e in zip(weights, errors, strict=True) if w]
    if not errors or any(not math.isfinite(e.se) for _, e in counted):
        return math.nan
    variances = [(w * e.se) ** 2 for w, e in counted]
    relative = math.sqrt(sum(variances))
    if relative == 0:
        return 0.0
    dof = welch_dof(variances, [e.dof for _, e in counted])
    return coverage_factor(dof) * value * relative


def ratio_uncertainty(
    value: float, limit: float, reference: float, reference_limit: float
) -> float:
    """The repeatability limit of ``value / reference`` for two fitnesses evaluated apart, each
    with its own repeatability limit: its relative standard error is the two relative ones
    combined (each limit is √2 of them, so the root sum of squares is divided by √2, as a
    re-run is judged in :meth:`fitness.quality.QualityStudy.within`)."""
    if reference == 0 or value == 0:
        return math.nan
    return value / reference * math.hypot(limit / value, reference_limit / reference) / math.sqrt(2)
