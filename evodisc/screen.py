"""The screen before training: decide, without training, what a candidate needs.

The one screening of evodisc: a campaign's controller screens every candidate with it, and
:func:`fitness.evaluate_cached` (the API's "fitness through the cache") does too. A candidate is
*cached* (its key has a result under the configuration's key: reused), *invalid* (worst fitness
at once, from its :func:`evodisc.validity.check_candidate` verdict), *waiting* (an equivalent
candidate is already being trained: it gets that result when it comes), or *new* (it must be
trained). Nothing here imports torch.

A candidate's key is its functional hash, or, when the screen merges scale variants, its rule
identity (:attr:`evodisc.validity.Validity.rule`: ``c·u`` and ``u`` are one rule when ``u`` is
linear in ``lr``). A result is then stored in the rule's *unit form* (each task's ``best_lr``
times the trained program's scale) and given to a variant at its own scale (divided by it): the
variant at ``lr`` is the trained program at ``lr · scale_variant / scale_trained``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

import pyarrow as pa

from evodisc.fitness_cache import CachedFitness, FitnessCache
from evodisc.hashing import RuleIdentity
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
    """Cache look-ups and in-flight duplicate detection under one cache key; with
    ``merge_scale_variants``, keyed by rule identity (see the module docstring). With
    ``reuse=False`` no result is reused: every valid candidate is *new* (trained), even when an
    equivalent one has a result or is in flight (a search-quality benchmark's arm without the
    functional cache); results are still recorded."""

    def __init__(
        self,
        cache: FitnessCache,
        config_key: str,
        merge_scale_variants: bool = False,
        reuse: bool = True,
    ):
        self.cache = cache
        self.config_key = config_key
        self.merge_scale_variants = merge_scale_variants
        self.reuse = reuse
        #: key -> the candidates waiting for it, with their scales
        self._in_flight: dict[str, list[tuple[int, float]]] = defaultdict(list)

    def rule(self, validity: Validity) -> RuleIdentity | None:
        """The candidate's rule identity when this screen merges scale variants and it is valid,
        else None (an invalid candidate's verdict is its own: a limit on statements or memory
        holds for the program, not for its rule)."""
        return validity.rule if self.merge_scale_variants and validity.valid else None

    def key(self, validity: Validity) -> str:
        """What the candidate's result is keyed by: its rule identity or its functional hash."""
        rule = self.rule(validity)
        return validity.functional_hash if rule is None else rule.digest

    def _scale(self, validity: Validity) -> float:
        rule = self.rule(validity)
        return 1.0 if rule is None else rule.scale

    def screen(self, candidate_id: int, validity: Validity) -> Screened:
        """What the candidate ``candidate_id`` (of ``validity``) needs; a *new* one is registered
        as in flight."""
        key = self.key(validity)
        cached = self.cache.get(key, self.config_key) if self.reuse else None
        if cached is not None:
            return Screened(Verdict.CACHED, at_scale(cached, 1.0 / self._scale(validity)))
        if not validity.valid:
            result = CachedFitness(WORST_FITNESS, "invalid", {"reason": validity.reason})
            self.cache.put(key, self.config_key, result)
            return Screened(Verdict.INVALID, result)
        if self.reuse and key in self._in_flight:
            self._in_flight[key].append((candidate_id, self._scale(validity)))
            return Screened(Verdict.WAITING)
        self._in_flight[key] = []
        return Screened(Verdict.NEW)

    def resolve(
        self, validity: Validity, result: CachedFitness, cache: bool = True
    ) -> list[tuple[int, CachedFitness]]:
        """Record the trained result of the candidate of ``validity``; returns the candidates
        that waited for it, each with the result at its own scale.

        ``cache=False`` for results that must not be reused (a timeout, a crashed evaluator).
        """
        key = self.key(validity)
        unit = at_scale(result, self._scale(validity))
        if cache:
            self.cache.put(key, self.config_key, unit)
        return [(cid, at_scale(unit, 1.0 / scale)) for cid, scale in self._in_flight.pop(key, [])]

    def ingest(self, log: pa.Table) -> int:
        """Learn the results of campaign log rows (``functional_hash``, ``identity``, ``scale``,
        ``config_key``, ``fitness``, ``status``, ``details``, ``uncertainty``), keyed as this
        screen keys them (when it merges, a valid row without an identity is skipped); returns
        the number of new entries."""
        if self.merge_scale_variants:
            columns = [log.column(c).to_pylist() for c in ("functional_hash", "identity")]
            statuses, scales = log.column("status").to_pylist(), log.column("scale").to_pylist()
            keys = [h if s == "invalid" else i for h, i, s in zip(*columns, statuses, strict=True)]
            details = [
                json.dumps(_scaled_details(json.loads(text or "{}"), scale or 1.0))
                for text, scale in zip(log.column("details").to_pylist(), scales, strict=True)
            ]
            log = log.drop_columns(["functional_hash", "details"])
            log = log.append_column("functional_hash", pa.array(keys, pa.string()))
            log = log.append_column("details", pa.array(details, pa.string()))
        return self.cache.ingest(log)


def at_scale(result: CachedFitness, factor: float) -> CachedFitness:
    """``result`` with each task's best learning rate multiplied by ``factor``."""
    if factor == 1.0:
        return result
    return replace(result, details=_scaled_details(result.details, factor))


def _scaled_details(details: Mapping[str, Any], factor: float) -> dict[str, Any]:
    tasks = details.get("tasks")
    if not isinstance(tasks, Mapping) or factor == 1.0:
        return dict(details)
    scaled = {
        name: {**task, "best_lr": task["best_lr"] * factor}
        if task.get("best_lr") is not None
        else task
        for name, task in tasks.items()
    }
    return {**details, "tasks": scaled}
