"""What crosses between a campaign and its evaluators, typed, and torch-free so that a
controller can hold them without loading torch: a :class:`Request` (programs, suite, tuned
baselines), a :class:`Result` per program, and the :class:`Baseline` of a task.

Each turns into a JSON-able dict (``to_dict``) and back (``from_dict``) only where it crosses a
process boundary (a Ray actor's); programs cross as canonical JSON IR, parsed on arrival, never
unpickled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from evodisc.fitness_cache import CachedFitness
from evodisc.program import Program, program_from_json, program_to_json
from fitness.config import SuiteConfig


@dataclass(frozen=True)
class Baseline:
    """A tuned baseline on one task: its metric (mean over ``seeds`` seeds at ``best_lr``) and
    the seed-to-seed coefficient of variation of that metric (NaN with one seed)."""

    metric: float
    best_lr: float | None
    cv: float
    seeds: int

    def to_dict(self) -> dict:
        """JSON-able (NaN as None), for the cache file and for a remote evaluator."""
        return {
            k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, doc: dict) -> Baseline:
        """The inverse of :meth:`to_dict`; a ValueError or TypeError on anything else."""
        metric, best_lr, noise, seeds = doc["metric"], doc["best_lr"], doc["cv"], doc["seeds"]
        if not isinstance(metric, int | float) or not math.isfinite(metric):
            raise ValueError(f"metric {metric!r} is not a finite number")
        if best_lr is not None and not isinstance(best_lr, int | float):
            raise ValueError(f"best_lr {best_lr!r} is not a number")
        if noise is not None and not isinstance(noise, int | float):
            raise ValueError(f"cv {noise!r} is not a number")
        if not isinstance(seeds, int) or seeds < 1:
            raise ValueError(f"seeds {seeds!r} is not a positive integer")
        return cls(
            float(metric),
            None if best_lr is None else float(best_lr),
            math.nan if noise is None else float(noise),
            seeds,
        )


@dataclass(frozen=True)
class Request:
    """Programs to train on a suite, normalised by its tuned baselines."""

    programs: tuple[Program, ...]
    config: SuiteConfig
    baselines: Mapping[str, Baseline]

    def to_dict(self) -> dict:
        """A JSON-able dict (programs as canonical JSON), to send to another process."""
        return {
            "programs": [program_to_json(p) for p in self.programs],
            "suite": self.config.to_dict(),
            "baselines": {task: b.to_dict() for task, b in self.baselines.items()},
        }

    @classmethod
    def from_dict(cls, doc: Mapping) -> Request:
        return cls(
            tuple(program_from_json(text) for text in doc["programs"]),
            SuiteConfig.from_dict(doc["suite"]),
            {task: Baseline.from_dict(b) for task, b in doc["baselines"].items()},
        )


@dataclass(frozen=True)
class Result:
    """One program's result, how long its share of the batch took, and who trained it."""

    fitness: CachedFitness
    seconds: float
    worker: str

    def to_dict(self) -> dict:
        """A JSON-able dict, to send to another process."""
        f = self.fitness
        return {"status": f.status, "fitness": f.fitness, "details": dict(f.details)} | {
            "uncertainty": f.uncertainty,
            "seconds": self.seconds,
            "worker": self.worker,
        }

    @classmethod
    def from_dict(cls, doc: Mapping) -> Result:
        fitness = CachedFitness(doc["fitness"], doc["status"], doc["details"], doc["uncertainty"])
        return cls(fitness, doc["seconds"], doc["worker"])
