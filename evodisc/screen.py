"""The screen before training: decide, without training, what a candidate needs.

The one screening of evodisc: a campaign's controller screens every candidate with it, and
:func:`fitness.evaluate_cached` (the API's "fitness through the cache") does too. A candidate is
*cached* (its functional hash has a result under the configuration's key: reused), *invalid*
(worst fitness at once, from its :func:`evodisc.validity.check_candidate` verdict), *waiting* (an
equivalent candidate is already being trained: it gets that result when it comes), or *new* (it
must be trained). Nothing here imports torch.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from enum import Enum

from evodisc.fitness_cache import CachedFitness, FitnessCache
from evodisc.validity import Validity

#: The worst fitness: an invalid candidate's, one that failed, or one diverged everywhere.
WORST_FITNESS = 0.0


class Verdict(Enum):
    INVALID = "invalid"
    CACHED = "cached"
    WAITING = "waiting"
    NEW = "new"


@dataclass(frozen=True)
class Screened:
    """A verdict, and the result when one is known without training."""

    verdict: Verdict
    result: CachedFitness | None = None


class Screen:
    """Cache look-ups and in-flight duplicate detection under one cache key."""

    def __init__(self, cache: FitnessCache, config_key: str):
        self.cache = cache
        self.config_key = config_key
        self._in_flight: dict[str, list[int]] = defaultdict(list)  # hash -> waiting candidates

    def screen(self, candidate_id: int, validity: Validity) -> Screened:
        """What the candidate ``candidate_id`` (of ``validity``) needs; a *new* one is registered
        as in flight."""
        digest = validity.functional_hash
        cached = self.cache.get(digest, self.config_key)
        if cached is not None:
            return Screened(Verdict.CACHED, cached)
        if not validity.valid:
            result = CachedFitness(WORST_FITNESS, "invalid", {"reason": validity.reason})
            self.cache.put(digest, self.config_key, result)
            return Screened(Verdict.INVALID, result)
        if digest in self._in_flight:
            self._in_flight[digest].append(candidate_id)
            return Screened(Verdict.WAITING)
        self._in_flight[digest] = []
        return Screened(Verdict.NEW)

    def resolve(self, digest: str, result: CachedFitness, cache: bool = True) -> list[int]:
        """Record the trained result of ``digest``; returns the candidates that waited for it.

        ``cache=False`` for results that must not be reused (a timeout, a crashed evaluator).
        """
        if cache:
            self.cache.put(digest, self.config_key, result)
        return self._in_flight.pop(digest, [])
