"""What counts as a discovery (DESIGN.md §4): a rule against the zoo *with tuned constants*.

A search tunes constants freely, so a rule is compared with known optimizers whose named
constants were tuned too (:func:`fitness.tuning.tune`, cached under ``$EVODISC_CACHE/tuned/``):
its fitness over theirs, with the uncertainty of that ratio, and one verdict word:

- **re-tuned**: the rule is a zoo family up to constants (:func:`evodisc.inspect.rules.family`)
  with other constants than the zoo's — whatever its fitness, it is that optimizer re-tuned;
- **new**: a structure no zoo family has, better than the best zoo optimizer with tuned
  constants known here by more than the ratio's uncertainty (on the suite: confirm it on the
  held-out tasks with ``evodisc replay``, DESIGN.md §4);
- **no gain**: anything else (a zoo optimizer at its own constants; a new structure that does
  not beat the tuned best).

Without a tuned reference (none cached and none asked for), a rule outside the zoo's families
has no verdict: :func:`assess` says which optimizer to tune.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from evodisc.hashing import functional_hash
from evodisc.inspect.recognise import FAMILIES
from evodisc.inspect.rules import family
from evodisc.program import Program, format_constant
from fitness.config import SuiteConfig
from fitness.tuning import Tuned, cached_tune, tune
from fitness.uncertainty import ratio_uncertainty
from search_spaces.zoo import load_known, zoo


@dataclass(frozen=True)
class Against:
    """A rule's fitness against one zoo optimizer with tuned constants."""

    name: str  # the zoo optimizer ("lion")
    tuned: Tuned
    ratio: float  # the rule's fitness / the tuned optimizer's (NaN: the rule's is not known)
    uncertainty: float  # the ratio's repeatability limit (NaN: unknown)

    @property
    def better(self) -> bool:
        """Above 1 by more than the uncertainty (never when the uncertainty is unknown)."""
        return self.ratio - 1 > self.uncertainty

    def describe(self) -> str:
        """``Lion with tuned constants (β₁ = 0.95, β₂ = 0.98): 0.6721 ± 0.0310; this rule
        1.042 ± 0.031 of it``."""
        values = ", ".join(f"{n} = {format_constant(v)}" for n, v in self.tuned.tuned.items())
        text = f"{_title(self.name)} with tuned constants"
        text += f" ({values})" if values else ""
        text += f": {_plus_minus(self.tuned.fitness.value, self.tuned.fitness.uncertainty, 4)}"
        if math.isnan(self.ratio):
            return text + "; this rule's fitness is not known"
        return text + f"; this rule {_plus_minus(self.ratio, self.uncertainty, 3)} of it"


def _title(name: str) -> str:
    return FAMILIES[name].title if name in FAMILIES else name


def _plus_minus(value: float, limit: float, digits: int) -> str:
    spread = f" ± {limit:.{digits}f}" if math.isfinite(limit) else ""
    return f"{value:.{digits}f}{spread}"


@dataclass(frozen=True)
class Assessment:
    """A rule against the zoo with tuned constants: its family up to constants, whether it is
    that zoo program itself, the comparisons made (its family's first, then the best other
    tuned optimizer known), and the verdict — or, when there is none, why (``missing``)."""

    family: str | None
    zoo_program: bool
    against: tuple[Against, ...]
    verdict: str | None
    missing: str = ""

    def lines(self) -> list[str]:
        """What the report and ``evodisc simplify`` print."""
        if self.family is None:
            lines = ["family: none (no zoo optimizer has this structure, up to constants)"]
        else:
            what = "its own constants" if self.zoo_program else "other constants"
            lines = [f"family: {_title(self.family)} up to constants ({what})"]
        lines += [f"against {a.describe()}" for a in self.against]
        lines.append(f"verdict: {self.verdict or 'unknown, ' + self.missing}")
        return lines


def _against(name: str, tuned: Tuned, value: float | None, limit: float) -> Against:
    reference = tuned.fitness
    if value is None or not reference.value > 0:
        return Against(name, tuned, math.nan, math.nan)
    ratio = value / reference.value
    uncertainty = ratio_uncertainty(value, limit, reference.value, reference.uncertainty)
    return Against(name, tuned, ratio, uncertainty)


def tuned_zoo(config: SuiteConfig, device=None) -> dict[str, Tuned]:
    """The zoo optimizers whose tuned result for ``config`` is in the cache (nothing trains)."""
    found = {name: cached_tune(load_known(name), config, device) for name in zoo()}
    return {name: tuned for name, tuned in found.items() if tuned is not None}


def assess(
    program: Program,
    value: float | None,
    uncertainty: float,
    config: SuiteConfig,
    *,
    closest: str | None = None,
    device=None,
    tune_now: bool = False,
    known: dict[str, Tuned] | None = None,
) -> Assessment:
    """``program`` (whose fitness on ``config``'s suite is ``value`` ± ``uncertainty``; None:
    not known) against the zoo with tuned constants (see the module's docstring). The tuned
    results are ``known`` (default: :func:`tuned_zoo`); ``tune_now`` tunes the reference that is
    missing — the rule's family, else ``closest`` (the known optimizer
    :func:`~evodisc.inspect.recognise.recognise` puts first) — and adds it to ``known``: that
    trains (minutes on a CPU per task)."""
    name = family(program)
    reference = name or closest
    known = tuned_zoo(config, device) if known is None else known
    if tune_now and reference is not None and reference not in known:
        known[reference] = tune(load_known(reference), config, device)
    chosen = _chosen([_against(n, t, value, uncertainty) for n, t in known.items()], name)
    zoo_program = name is not None and functional_hash(program) == functional_hash(load_known(name))
    if name is not None:
        return Assessment(name, zoo_program, chosen, "no gain" if zoo_program else "re-tuned")
    if value is None:
        return Assessment(None, False, chosen, None, "this rule's fitness is not known")
    if not chosen:
        what = reference or "a zoo optimizer"
        return Assessment(
            None,
            False,
            chosen,
            None,
            f"no tuned zoo optimizer known for this suite (tune {what}: report --tune, "
            "simplify --tuned)",
        )
    return Assessment(None, False, chosen, "new" if chosen[-1].better else "no gain")


def _chosen(against: Sequence[Against], name: str | None) -> tuple[Against, ...]:
    """The comparisons shown: with the family's tuned result, then with the best tuned zoo
    optimizer (the highest tuned fitness) when that is another."""
    own = [a for a in against if a.name == name]
    best = max(against, key=lambda a: a.tuned.fitness.value, default=None)
    return tuple(own + ([best] if best is not None and best.name != name else []))
