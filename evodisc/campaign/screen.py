"""The controller's side of an evaluation: decide, without training, what a candidate needs.

A candidate is *invalid* (worst fitness at once; :func:`evodisc.validity.check_candidate` was run
by the evolution), *cached* (its functional hash has a result under the campaign's key: reused),
*waiting* (an equivalent candidate is already being trained: it gets that result when it comes),
or *new* (it must be trained). Nothing here imports torch.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from enum import Enum

from evodisc.fitness_cache import CachedFitness, FitnessCache
from search_spaces.evolution import Candidate

#: Fitness of an invalid candidate (as :data:`fitness.normalise.WORST_FITNESS`).
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
    """Cache look-ups and in-flight duplicate detection for one campaign (one cache key)."""

    def __init__(self, cache: FitnessCache, config_key: str):
        self.cache = cache
        self.config_key = config_key
        self._in_flight: dict[str, list[int]] = defaultdict(list)  # hash -> waiting candidates

    def screen(self, candidate: Candidate) -> Screened:
        """What ``candidate`` needs; a *new* one is registered as in flight."""
        digest = candidate.validity.functional_hash
        cached = self.cache.get(digest, self.config_key)
        if cached is not None:
            return Screened(Verdict.CACHED, cached)
        if not candidate.validity.valid:
            result = CachedFitness(WORST_FITNESS, "invalid", {"reason": candidate.validity.reason})
            self.cache.put(digest, self.config_key, result)
            return Screened(Verdict.INVALID, result)
        if digest in self._in_flight:
            self._in_flight[digest].append(candidate.id)
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
