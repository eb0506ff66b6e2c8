"""Fair baselines: a known optimizer with its named constants tuned (DESIGN.md §4 — a rule is a
discovery only when it beats the best zoo optimizer *with tuned constants*, not at defaults).

:func:`tune` is a coordinate search over a program's named constants
(:func:`evodisc.export.named_constants`: ``beta1``, ``beta2``, ``eps``, ``weight_decay``,
``c1``, …) on the suite's own protocol — its tasks, learning-rate grid (swept for every variant,
so each gets its own best learning rate) and seeds:

1. The default program is trained with the first constant's candidates.
2. For each constant in turn, a handful of candidate values around its current one
   (:func:`candidates`: steps in log-odds for a β or another number in (0, 1); ×{1/100 … 100}
   for ``eps``; ×{0, 1/10, 1/3, 1, 3, 10} for ``weight_decay``; ×{1/4 … 4} for the others),
   the other constants held. Every variant not trained yet is trained in one batched
   :func:`fitness.suite.evaluate` call; the constant takes the value of the best variant by the
   suite's fitness, and keeps its current value unless another is strictly better.
3. ``rounds`` passes over all constants (fewer when a pass changes nothing).

A variant is the program with every occurrence of the number replaced
(:func:`evodisc.edit.replace_constants`: AdamW's ``1 - β ** t`` moves with its β). The current
values are always among the candidates, so the tuned fitness is at least the default's on the
same seeds — and, being the best of many on those seeds, optimistic by about its uncertainty:
compare a rule with a tuned baseline on other seeds or on held-out tasks. Deterministic where
training is (on CPU, bit for bit: the same call gives the same constants).

The result is cached as JSON under ``$EVODISC_CACHE/tuned/`` like the baselines
(:mod:`fitness.baselines`), keyed by the program's canonical JSON, the suite's cache key
(:meth:`~fitness.config.SuiteConfig.cache_key`), the device type and the search settings; a
second call with the same inputs trains nothing, and a damaged file is recomputed with a
:class:`~evodisc.fitness_cache.CacheWarning`.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from evodisc.constant_names import named_constants
from evodisc.constant_steps import DIGITS, FACTORS, candidates
from evodisc.edit import replace_constants
from evodisc.files import FileReadError, atomic_write, read_text
from evodisc.fitness_cache import CacheWarning, fitness_config_key
from evodisc.program import Program, program_from_json, program_to_json
from fitness.baselines import cache_dir
from fitness.config import SuiteConfig
from fitness.device import resolve_device
from fitness.suite import Fitness, TaskFitness, evaluate, suite_baselines
from fitness.uncertainty import RatioError

#: Bump when the search or the file's format changes, to invalidate cached results.
TUNE_VERSION = 1

#: A tuning file holds a program and two fitnesses; anything much larger is not one.
_MAX_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class Tuned:
    """A program with its named constants tuned on a suite.

    ``default`` and ``tuned`` map each named constant (the names of the *given* program) to its
    value before and after; ``program`` is the tuned program; ``fitness`` and
    ``default_fitness`` are the two on the same seeds, each with its uncertainty; ``variants``
    is how many distinct programs the search trained (the default included), and ``cached``
    says this result was read from the cache (nothing was trained)."""

    program: Program
    default: dict[str, float]
    tuned: dict[str, float]
    fitness: Fitness
    default_fitness: Fitness
    variants: int
    cached: bool = False

    @property
    def changed(self) -> list[str]:
        """The constants whose tuned value differs from their default."""
        return [name for name, value in self.default.items() if self.tuned[name] != value]


def tuning_path(program: Program, config: SuiteConfig, device=None, rounds: int = 2) -> Path:
    """The cache file of :func:`tune`'s result for these inputs (inside the cache directory)."""
    device = resolve_device(device)
    key = {
        "version": TUNE_VERSION,
        "program": program_to_json(program),
        "suite": config.cache_key(device.type),
        "device": device.type,
        "rounds": rounds,
        "factors": {role: list(f) for role, f in FACTORS.items()},
        "digits": DIGITS,
    }
    return cache_dir() / "tuned" / f"{fitness_config_key(key)}.json"


def cached_tune(
    program: Program, config: SuiteConfig | None = None, device=None, rounds: int = 2
) -> Tuned | None:
    """:func:`tune`'s result when it is in the cache, else None: nothing is trained."""
    return _read(tuning_path(program, config or SuiteConfig(), device, rounds))


def tune(
    program: Program,
    config: SuiteConfig | None = None,
    device=None,
    rounds: int = 2,
) -> Tuned:
    """``program`` with its named constants tuned by coordinate search on ``config``'s suite
    (default: :class:`SuiteConfig`'s), ``rounds`` passes over the constants (see the module's
    docstring); read from the cache, or searched once and cached. A program without named
    constants is only evaluated. Raises :class:`~fitness.tasks.TaskError` for a task that
    cannot be trained, as :func:`~fitness.suite.evaluate` does."""
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, not {rounds!r}")
    config = config or SuiteConfig()
    device = resolve_device(device)
    path = tuning_path(program, config, device, rounds)
    cached = _read(path)
    if cached is not None:
        return cached
    tuned = _search(program, config, device, rounds)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(_to_dict(tuned)))  # a reader never sees half a file
    return tuned


def _search(program: Program, config: SuiteConfig, device, rounds: int) -> Tuned:
    named = named_constants(program)
    default = {name: c.value for name, c in named.items()}
    baselines = suite_baselines(config, device)
    trained: dict[tuple[float, ...], Fitness] = {}

    def variant(values: Mapping[str, float]) -> Program:
        return replace_constants(program, {default[n]: v for n, v in values.items()})

    def train(options: list[dict[str, float]]) -> None:
        new = [o for o in options if tuple(o.values()) not in trained]
        if new:
            fitnesses = evaluate([variant(o) for o in new], config, device, baselines)
            trained.update(zip((tuple(o.values()) for o in new), fitnesses, strict=True))

    def value(values: Mapping[str, float]) -> float:
        v = trained[tuple(values.values())].value
        return v if not math.isnan(v) else -math.inf

    current = dict(default)
    if not named:  # nothing to tune: the default alone (else it is among the first candidates)
        train([current])
    for _ in range(rounds):
        moved = False
        for name, constant in named.items():
            others = {v for n, v in current.items() if n != name}
            options = [
                {**current, name: v}
                for v in candidates(current[name], constant.role)
                if v == current[name] or v not in others  # two constants never merge
            ]
            train(options)  # the current values are among them
            best = max(options, key=value)
            if value(best) > value(current):
                current, moved = best, True
        if not moved:
            break
    return Tuned(
        variant(current),
        default,
        current,
        trained[tuple(current.values())],
        trained[tuple(default.values())],
        len(trained),
    )


# --------------------------------------------------------------------------------- the file


def _number(x: float | None):
    """A float as JSON: finite as itself, the others as ``"nan"``, ``"inf"``, ``"-inf"``."""
    return x if x is None or math.isfinite(x) else repr(float(x))


def _float(x) -> float:
    if isinstance(x, str) and x in ("nan", "inf", "-inf"):
        return float(x)
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise ValueError(f"{x!r} is not a number")
    return float(x)


def _fitness_to_dict(fitness: Fitness) -> dict:
    tasks = [
        {
            "task": t.task,
            "metric": _number(t.metric),
            "best_lr": t.best_lr,
            "ratio": _number(t.ratio),
            "edge": t.edge,
            "log_se": _number(t.error.se),
            "log_se_dof": _number(t.error.dof),
        }
        for t in fitness.tasks.values()
    ]
    return {
        "value": _number(fitness.value),
        "uncertainty": _number(fitness.uncertainty),
        "tasks": tasks,
    }


def _fitness_from_dict(doc: Mapping) -> Fitness:
    tasks = {}
    for t in doc["tasks"]:
        best_lr = t["best_lr"]
        tasks[t["task"]] = TaskFitness(
            str(t["task"]),
            _float(t["metric"]),
            None if best_lr is None else _float(best_lr),
            _float(t["ratio"]),
            t["edge"] if t["edge"] in ("low", "high") else None,
            RatioError(_float(t["log_se"]), _float(t["log_se_dof"])),
        )
    return Fitness(_float(doc["value"]), tasks, _float(doc["uncertainty"]))


def _to_dict(tuned: Tuned) -> dict:
    return {
        "program": program_to_json(tuned.program),
        "default": tuned.default,
        "tuned": tuned.tuned,
        "fitness": _fitness_to_dict(tuned.fitness),
        "default_fitness": _fitness_to_dict(tuned.default_fitness),
        "variants": tuned.variants,
    }


def _read(path: Path) -> Tuned | None:
    """The cached result, or None when there is none or it is damaged (warned)."""
    if not path.exists():
        return None
    try:
        doc = json.loads(read_text(path, _MAX_FILE_BYTES))
        default = {str(k): _float(v) for k, v in doc["default"].items()}
        tuned = {str(k): _float(v) for k, v in doc["tuned"].items()}
        if set(default) != set(tuned) or not isinstance(doc["variants"], int):
            raise ValueError("the constants before and after differ")
        return Tuned(
            program_from_json(doc["program"], str(path)),
            default,
            {name: tuned[name] for name in default},
            _fitness_from_dict(doc["fitness"]),
            _fitness_from_dict(doc["default_fitness"]),
            doc["variants"],
            cached=True,
        )
    except (FileReadError, ValueError, KeyError, TypeError, AttributeError) as exc:
        warnings.warn(
            f"{path}: damaged tuning cache file ({type(exc).__name__}: {exc}); recomputing",
            CacheWarning,
            stacklevel=3,
        )
        return None
