"""The values a named constant tries (:func:`evodisc.constant_names.named_constants`): a
handful of candidates around its current value, by role — steps in log-odds for a β or another
number in (0, 1), ×{1/100 … 100} for ``eps``, ×{0, 1/10, 1/3, 1, 3, 10} for ``weight_decay``,
×{1/4 … 4} for the others.

Both coordinate searches over constants use them: :func:`fitness.tune` (a known optimizer's
constants, for fair baselines) and the search's constant-tuning step
(``[evolution] tune_constants``: a search space's ``tune_variants``, :func:`coordinate_step`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from evodisc.constant_names import Constant

#: Factors a constant's current value is multiplied by, per role: for a number in (0, 1) that
#: is not ``eps`` or ``weight_decay`` (a β, or a ``c`` there) they multiply its odds β / (1 − β)
#: — steps of log 2 in log-odds, ≈ (1 − β) × {4 … 1/4} near 1, and always inside (0, 1).
FACTORS: dict[str, tuple[float, ...]] = {
    "odds": (1 / 4, 1 / 2, 1.0, 2.0, 4.0),
    "eps": (1 / 100, 1 / 10, 1.0, 10.0, 100.0),
    "weight_decay": (0.0, 1 / 10, 1 / 3, 1.0, 3.0, 10.0),
    "c": (1 / 4, 1 / 2, 1.0, 2.0, 4.0),
}

#: Candidates other than the current value are rounded to this many significant digits (of
#: 1 − β for a β above 1/2), so that tuned programs read like hand-written ones.
DIGITS = 3


def _round(value: float) -> float:
    """``value`` to :data:`DIGITS` significant digits (a number just below 1 through 1 − it)."""
    if 0.5 < value < 1:
        return float(f"{1 - float(f'{1 - value:.{DIGITS}g}'):.12g}")
    return float(f"{value:.{DIGITS}g}")


def candidates(value: float, role: str) -> list[float]:
    """The values tried for a constant of ``role`` (:func:`~evodisc.constant_names.
    named_constants`) whose current value is ``value``, ascending; ``value`` itself is one of
    them, exactly."""
    odds = role not in ("eps", "weight_decay") and 0 < value < 1
    factors = FACTORS["odds" if odds else role if role in FACTORS else "c"]
    out = {value}
    for factor in factors:
        if factor == 1.0:
            continue
        if odds:
            scaled = value / (1 - value) * factor
            new = _round(scaled / (1 + scaled))
        else:
            new = _round(value * factor)
        if math.isfinite(new) and (not odds or 0 < new < 1):
            out.add(new)
    return sorted(out)


def coordinate_step(
    constants: Mapping[str, Constant], distinct: bool = True
) -> list[tuple[str, float]]:
    """One coordinate step around the current values: ``(name, value)`` for each constant, in
    order, and each of its :func:`candidates` other than its current value, the others held.
    With ``distinct``, a value that another constant holds is left out (in a program, where a
    number is replaced wherever it appears, the two constants would merge into one)."""
    steps = []
    for name, constant in constants.items():
        others = {c.value for n, c in constants.items() if n != name} if distinct else set()
        steps += [
            (name, value)
            for value in candidates(constant.value, constant.role)
            if value != constant.value and value not in others
        ]
    return steps
