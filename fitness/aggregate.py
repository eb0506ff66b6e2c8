"""How the suite's per-task ratios become one fitness (the ``[fitness] aggregate`` key), and the
Pareto ranking across tasks.

Every aggregate works on the logs of the ratios, each clipped to ``[RATIO_FLOOR, RATIO_CAP]``
(:mod:`fitness.normalise`), and gives the log of the suite's value together with its
*sensitivities* ``w_t = ∂ log value / ∂ log r_t`` (non-negative, summing to 1), which carry the
tasks' noise into the value's uncertainty (:func:`fitness.uncertainty.suite_uncertainty`):

- ``geomean``: the geometric mean, ``w_t = 1/T``. A task twice as good and one half as good
  cancel — so one task's large ratio can outweigh small losses on all the others.
- ``softmin`` (the default, :data:`fitness.config.DEFAULT_AGGREGATE`): the power mean with
  exponent :data:`SOFTMIN_POWER` (< 0), ``(mean r^p)^(1/p)``: between the geometric mean
  (p → 0) and the worst task (p → −∞); ``w_t ∝ r_t^p``, so the worse a task the more it counts.
  It ranks the zoo closest to the held-out tasks at the geometric mean's uncertainty
  (docs/fitness.md, *Aggregates*).
- ``worst_half``: the geometric mean of the worse half of the tasks (⌈T/2⌉ of them): a rule's
  best tasks do not count at all (a lower-tail mean, as CVaR is).
- ``min``: the worst task's ratio.

:func:`pareto_ranks` is the non-dominated sorting (DEAP's ``sortNondominated``, Deb et al.
2002) of programs by their tasks' ratios: rank 1 is the front no program beats on every task.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

#: The power mean's exponent of ``softmin`` (measured: docs/fitness.md, *Aggregates*).
SOFTMIN_POWER = -2.0

#: An aggregate: the logs of the clipped ratios → (log of the value, sensitivities).
Aggregate = Callable[[np.ndarray], tuple[float, np.ndarray]]


def geomean(logs: np.ndarray) -> tuple[float, np.ndarray]:
    """The geometric mean: the mean of the logs, every task weighing ``1/T``."""
    return float(logs.mean()), np.full(logs.size, 1 / logs.size)


def power_mean(power: float) -> Aggregate:
    """The power mean ``(mean r^p)^(1/p)`` for ``power`` < 0 (a soft minimum)."""
    if not power < 0:
        raise ValueError(f"a soft minimum needs a negative power, not {power!r}")

    def aggregate(logs: np.ndarray) -> tuple[float, np.ndarray]:
        scaled = power * logs
        top = scaled.max()  # log-sum-exp without overflow
        weights = np.exp(scaled - top)
        total = weights.sum()
        return float((top + math.log(total / logs.size)) / power), weights / total

    return aggregate


def worst(count: Callable[[int], int]) -> Aggregate:
    """The geometric mean of the ``count(T)`` worst of ``T`` tasks."""

    def aggregate(logs: np.ndarray) -> tuple[float, np.ndarray]:
        k = min(max(count(logs.size), 1), logs.size)
        chosen = np.argsort(logs, kind="stable")[:k]
        weights = np.zeros(logs.size)
        weights[chosen] = 1 / k
        return float(logs[chosen].mean()), weights

    return aggregate


#: The aggregates a campaign may choose (``[fitness] aggregate``), by name.
AGGREGATES: dict[str, Aggregate] = {
    "geomean": geomean,
    "softmin": power_mean(SOFTMIN_POWER),
    "worst_half": worst(lambda tasks: math.ceil(tasks / 2)),
    "min": worst(lambda tasks: 1),
}


def pareto_ranks(ratios: Sequence[Sequence[float]]) -> list[int]:
    """The Pareto rank of each program from its per-task ratios (the same tasks, in the same
    order, for every program): 1 for the programs that no other beats on every task, 2 for
    those only rank-1 programs beat, and so on."""
    from deap import base, tools  # 0.3 s to import: only where a ranking is made

    class Ratios(base.Fitness):
        """A program's per-task ratios, each maximised (DEAP's dominance rules)."""

        def __init__(self, values: Sequence[float]):
            self.weights = (1.0,) * len(values)  # one objective per task, before the values
            super().__init__(tuple(values))

    class Entry:
        def __init__(self, values: Sequence[float]):
            self.fitness = Ratios(values)

    if len({len(r) for r in ratios}) > 1:
        raise ValueError("pareto_ranks: every program needs a ratio for the same tasks")
    entries = [Entry(r) for r in ratios]
    fronts = tools.sortNondominated(entries, len(entries)) if entries else []
    rank = {id(entry): level for level, front in enumerate(fronts, 1) for entry in front}
    return [rank[id(entry)] for entry in entries]
