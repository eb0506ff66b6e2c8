"""Fitness through the cache: screen, deduplicate by functional hash, train only what is new.

The programs are screened as a campaign screens its candidates (:class:`evodisc.screen.Screen`):
each is checked (:func:`evodisc.validity.check_candidate`, which also computes the functional
hash); an *invalid* program (update not finite on the probe inputs, or never reading ``g``) gets
the worst fitness (0) without any training; a hash with a result in the
:class:`~evodisc.fitness_cache.FitnessCache` under the suite's configuration key reuses it; the
remaining programs — one per distinct hash — are trained together (``fitness.evaluate``), and
their results stored in the cache and given to their equivalents. With
``merge_scale_variants`` the key is the rule identity instead of the hash: positive multiples of
an lr-linear update are trained once (:mod:`evodisc.screen`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from evodisc.fitness_cache import CachedFitness, FitnessCache
from evodisc.program import Program
from evodisc.screen import Screen, Verdict
from evodisc.validity import Validity, check_candidate
from fitness.config import SuiteConfig
from fitness.device import resolve_device
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
    merge_scale_variants: bool = False,
) -> list[Evaluation]:
    """The fitness of each program, training only programs whose function is new to ``cache``;
    with ``merge_scale_variants``, only programs whose rule is (``c·u`` is ``u`` for an
    lr-linear ``u``: :class:`~evodisc.screen.Screen`), a variant's best learning rates mapped."""
    config = config or SuiteConfig()
    screen = Screen(cache, config.cache_key(resolve_device(device).type), merge_scale_variants)
    digests: list[str] = []
    hits: list[bool] = []  # in the cache, or equivalent to an earlier program of this call
    known: dict[int, CachedFitness] = {}  # results available before training, by index
    to_train: list[tuple[int, Validity]] = []  # the first index of each new key, its validity
    for index, program in enumerate(programs):
        validity = check_candidate(program)
        digests.append(validity.functional_hash)
        screened = screen.screen(index, validity)
        hits.append(screened.verdict in (Verdict.CACHED, Verdict.WAITING))
        if screened.verdict is Verdict.NEW:
            to_train.append((index, validity))
        elif screened.result is not None:
            known[index] = screened.result
    if to_train:
        trained = [programs[index] for index, _ in to_train]
        fitnesses = evaluate(trained, config, device)
        for (index, validity), fitness in zip(to_train, fitnesses, strict=True):
            known[index] = fitness.as_cached()
            for waiter, result in screen.resolve(validity, known[index]):
                known[waiter] = result
    return [
        Evaluation(digest, known[index], hit)
        for index, (digest, hit) in enumerate(zip(digests, hits, strict=True))
    ]
