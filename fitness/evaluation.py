"""Fitness through the cache: screen, deduplicate by functional hash, train only what is new.

This is the evaluation entry point a search uses. For each candidate it

1. checks it (:func:`evodisc.validity.check_candidate`, which also computes the functional
   hash); an *invalid* program (update not finite on the probe inputs, or never reading ``g``)
   gets the worst fitness (0) without any training;
2. looks the hash up in the :class:`~evodisc.fitness_cache.FitnessCache` under the suite's
   configuration key, and reuses a result found there;
3. trains the remaining programs — one per distinct hash, all together (``fitness.evaluate``) —
   and stores their results in the cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from evodisc.fitness_cache import CachedFitness, FitnessCache
from evodisc.program import Program
from evodisc.validity import check_candidate
from fitness.config import SuiteConfig
from fitness.device import resolve_device
from fitness.normalise import WORST_FITNESS
from fitness.suite import evaluate


@dataclass(frozen=True)
class Evaluation:
    """One candidate's result and where it came from."""

    functional_hash: str
    result: CachedFitness
    cache_hit: bool  # found in the cache, or equivalent to an earlier candidate of this call


def evaluate_cached(
    programs: Sequence[Program],
    cache: FitnessCache,
    config: SuiteConfig | None = None,
    device=None,
) -> list[Evaluation]:
    """The fitness of each program, training only programs whose function is new to ``cache``."""
    config = config or SuiteConfig()
    key = config.cache_key(resolve_device(device).type)
    digests: list[str] = []
    known: dict[str, CachedFitness] = {}  # results available before training
    hits: list[bool] = []
    to_train: dict[str, Program] = {}
    for program in programs:
        validity = check_candidate(program)
        digest = validity.functional_hash
        digests.append(digest)
        if digest in known or digest in to_train:
            hits.append(True)
            continue
        cached = cache.get(digest, key)
        hits.append(cached is not None)
        if cached is not None:
            known[digest] = cached
        elif not validity.valid:
            known[digest] = CachedFitness(WORST_FITNESS, "invalid", {"reason": validity.reason})
            cache.put(digest, key, known[digest])
        else:
            to_train[digest] = program
    if to_train:
        fitnesses = evaluate(list(to_train.values()), config, device)
        for digest, fitness in zip(to_train, fitnesses, strict=True):
            known[digest] = fitness.as_cached()
            cache.put(digest, key, known[digest])
    return [
        Evaluation(digest, known[digest], hit) for digest, hit in zip(digests, hits, strict=True)
    ]
