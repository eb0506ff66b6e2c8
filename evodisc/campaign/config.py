"""Campaign files (``experiments/*.toml``): read, validated in full before anything starts, and
resolved into frozen dataclasses with every default filled in.

Each section is a dataclass whose fields are the section's keys, declared with :func:`setting`
(what the key accepts, its default, what it means). That one declaration drives validation,
defaults, :meth:`Campaign.to_dict` and the documentation table (:func:`defaults_table`, printed
by ``python -m evodisc.campaign.config``). A problem is one :class:`CampaignError` line naming the
file, the key and what was expected.

Torch-free: task names are checked by :func:`check_tasks`, a separate step (the task registry
imports torch).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from evodisc.fitness_cache import fitness_config_key
from evodisc.primitives import PRIMITIVES
from fitness.config import (
    DEFAULT_BASELINE_SEEDS,
    DEFAULT_CHECKPOINTS,
    DEFAULT_LRS,
    DEFAULT_SEEDS,
    DTYPES,
    SuiteConfig,
)
from search_spaces.evolution import EvolutionConfig
from search_spaces.mutations import MUTATIONS
from search_spaces.space import DEFAULT_SPACE, ProgramSpace
from search_spaces.zoo import zoo


class CampaignError(ValueError):
    """A campaign file that cannot run; the message is one line naming the file and the key."""


# What a key accepts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """What a key accepts: ``expected`` (said in errors), ``accepts(value)`` for a TOML or JSON
    value, and ``convert`` from that value to the field's value."""

    expected: str
    accepts: Callable[[Any], bool]
    convert: Callable[[Any], Any] = lambda value: value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _list_of(item: Check, items: str, empty: bool = False) -> Check:
    return Check(
        f"a {'' if empty else 'non-empty '}list of {items}",
        lambda v: isinstance(v, list) and (empty or bool(v)) and all(map(item.accepts, v)),
        lambda v: tuple(map(item.convert, v)),
    )


INT = Check("an integer", _is_int)
POSITIVE_INT = Check("a positive integer", lambda v: _is_int(v) and v > 0)
COUNT = Check("an integer >= 0", lambda v: _is_int(v) and v >= 0)
NUMBER = Check("a number", _is_number, float)
POSITIVE = Check("a number > 0", lambda v: _is_number(v) and v > 0, float)
NON_NEGATIVE = Check("a number >= 0", lambda v: _is_number(v) and v >= 0, float)
TEXT = Check("a non-empty string", lambda v: isinstance(v, str) and bool(v))


def _default_weights() -> dict[str, float]:
    return dict(EvolutionConfig().mutation_weights)


MUTATION_WEIGHTS = Check(
    "a table of numbers >= 0",
    lambda v: isinstance(v, dict) and all(map(NON_NEGATIVE.accepts, v.values())),
    lambda v: {**_default_weights(), **{name: float(weight) for name, weight in v.items()}},
)
DTYPE = Check(f"one of {', '.join(map(repr, DTYPES))}", lambda v: v in DTYPES)


def setting(check: Check, default: Any, doc: str, shown: str | None = None) -> Any:
    """A section key: its check, its default (a value, or a function computing it), its meaning,
    and how the documentation shows the default when not as JSON (``shown``)."""
    metadata = {"check": check, "doc": doc, "shown": shown}
    if callable(default):
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


def _settings(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in fields(cls) if "check" in f.metadata}


_EVOLUTION = EvolutionConfig()


# Sections ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpaceSettings:
    """``[space]``: what random programs and mutations may contain."""

    state: tuple[str, ...] = setting(
        _list_of(TEXT, "names"), DEFAULT_SPACE.state, "state slots of random programs"
    )
    ops: tuple[str, ...] = setting(
        _list_of(TEXT, "primitive names"),
        DEFAULT_SPACE.ops,
        "primitives random programs and mutations may use",
        shown="all primitives",
    )
    min_statements: int = setting(
        COUNT, DEFAULT_SPACE.min_statements, "fewest statements of a random program"
    )
    max_statements: int = setting(
        POSITIVE_INT, DEFAULT_SPACE.max_statements, "most statements of any program"
    )
    max_state_slots: int = setting(
        COUNT, _EVOLUTION.max_state_slots, "most state slots a program may have (its memory)"
    )
    constants: tuple[float, ...] = setting(
        _list_of(NUMBER, "numbers"), DEFAULT_SPACE.constants, "constants random arguments use"
    )


@dataclass(frozen=True)
class EvolutionSettings:
    """``[evolution]`` and ``[evolution.mutation_weights]``: regularized evolution."""

    population: int = setting(POSITIVE_INT, _EVOLUTION.population, "programs alive per island")
    tournament: int = setting(
        POSITIVE_INT, _EVOLUTION.tournament, "programs drawn per tournament (<= population)"
    )
    mutation_weights: Mapping[str, float] = setting(
        MUTATION_WEIGHTS,
        _default_weights,
        "relative weight per mutation; unlisted mutations keep 1.0",
        shown="1.0 each",
    )
    warm_start: tuple[str, ...] = setting(
        _list_of(TEXT, "optimizer names", empty=True),
        _EVOLUTION.warm_start,
        "known optimizers the initial population cycles through",
    )
    random_programs: int = setting(
        COUNT, _EVOLUTION.random_programs, "random programs in the initial population"
    )
    restart_every: int = setting(
        COUNT, _EVOLUTION.restart_every, "re-seed an island from the best every N results; 0 never"
    )
    islands: int = setting(POSITIVE_INT, _EVOLUTION.islands, "independent populations")
    migration_every: int = setting(
        COUNT, _EVOLUTION.migration_every, "send each island's best to the next every N; 0 never"
    )
    migration_size: int = setting(
        POSITIVE_INT, _EVOLUTION.migration_size, "programs sent per migration"
    )
    max_retries: int = setting(
        COUNT, _EVOLUTION.max_retries, "re-mutations of a child equal to its parent"
    )


@dataclass(frozen=True)
class BudgetSettings:
    """``[budget]``: when the campaign stops (whichever comes first; at least one is needed)."""

    evaluations: int | None = setting(POSITIVE_INT, None, "candidates to evaluate", shown="unset")
    wall_seconds: float | None = setting(POSITIVE, None, "seconds to run", shown="unset")


@dataclass(frozen=True)
class FitnessSettings:
    """``[fitness]``: what an evaluation trains (a ``fitness.config.SuiteConfig``)."""

    tasks: tuple[str, ...] | None = setting(
        _list_of(TEXT, "task names"),
        None,
        "proxy tasks (`evodisc tasks`) or FILE.py:FACTORY",
        shown="all registered tasks",
    )
    lrs: tuple[float, ...] = setting(
        _list_of(POSITIVE, "numbers > 0"), DEFAULT_LRS, "learning-rate grid"
    )
    seeds: tuple[int, ...] = setting(
        _list_of(INT, "integers"), DEFAULT_SEEDS, "training seeds of each candidate"
    )
    dtype: str = setting(DTYPE, "float32", "floating-point precision")
    baseline_seeds: tuple[int, ...] = setting(
        _list_of(INT, "integers"), DEFAULT_BASELINE_SEEDS, "training seeds of the AdamW baseline"
    )
    checkpoints: int = setting(
        POSITIVE_INT, DEFAULT_CHECKPOINTS, "validations per run; the metric is their mean"
    )


@dataclass(frozen=True)
class ResourceSettings:
    """``[resources]``: who evaluates, and how much is dispatched at once."""

    evaluators: int = setting(COUNT, 1, "evaluator actors; 0 evaluates in-process, without Ray")
    cpus_per_evaluator: float = setting(POSITIVE, 1.0, "CPUs reserved per evaluator")
    gpus_per_evaluator: float = setting(
        NON_NEGATIVE, 0.0, "GPUs per evaluator (fractions share a GPU)"
    )
    batch_size: int = setting(
        COUNT, 8, "candidates per evaluation request; 0: as many as fit the evaluator's memory"
    )
    in_flight: int = setting(
        COUNT, 16, "most candidates dispatched at once; 0: two batches per evaluator"
    )
    timeout_seconds: float = setting(
        NON_NEGATIVE, 0.0, "per-request timeout; 0 derives it from measured times"
    )


SECTIONS: dict[str, type] = {
    "space": SpaceSettings,
    "evolution": EvolutionSettings,
    "budget": BudgetSettings,
    "fitness": FitnessSettings,
    "resources": ResourceSettings,
}


@dataclass(frozen=True)
class Campaign:
    """A validated campaign (``[campaign]`` keys, then one field per section). Build it with
    :func:`load_campaign` or :meth:`from_dict`, which check everything."""

    name: str | None = setting(TEXT, None, "the campaign's name", shown="the file name")
    seed: int = setting(INT, _EVOLUTION.seed, "root seed of every random choice")
    space: SpaceSettings = field(default_factory=SpaceSettings)
    evolution: EvolutionSettings = field(default_factory=EvolutionSettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    fitness: FitnessSettings = field(default_factory=FitnessSettings)
    resources: ResourceSettings = field(default_factory=ResourceSettings)

    def evolution_config(self) -> EvolutionConfig:
        """The configuration of :class:`~search_spaces.evolution.RegularizedEvolution`."""
        return EvolutionConfig(
            **dataclasses.asdict(self.evolution),
            seed=self.seed,
            space=_program_space(self.space),
            max_state_slots=self.space.max_state_slots,
        )

    def suite_config(self) -> SuiteConfig:
        """``[fitness]``: what an evaluation trains. Task names must have been resolved by
        :func:`check_tasks`."""
        if self.fitness.tasks is None:
            raise CampaignError("fitness.tasks: not resolved yet (call check_tasks first)")
        return SuiteConfig(**dataclasses.asdict(self.fitness))

    def to_dict(self) -> dict:
        """The resolved campaign as JSON-able nested sections (the shape of the TOML file)."""
        top = {name: getattr(self, name) for name in _settings(Campaign)}
        sections = {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}
        return _jsonable({"campaign": top, **sections})

    def digest(self) -> str:
        """A stable digest of :meth:`to_dict` (key order ignored)."""
        return fitness_config_key(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "campaign.json") -> Campaign:
        """A campaign from :meth:`to_dict`'s output (or any TOML-shaped mapping), validated;
        errors name ``source``."""
        return _parse(data, source, default_name=None)


# Loading and validation -------------------------------------------------------------------------


def load_campaign(path: str | Path) -> Campaign:
    """Read and validate a campaign file; :class:`CampaignError` (one line) if it cannot run."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise CampaignError(f"{path}: no such campaign file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CampaignError(f"{path}: cannot read the campaign file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(f"{path}: invalid TOML: {exc}") from None
    return _parse(data, str(path), default_name=path.stem)


def check_tasks(campaign: Campaign, source: str = "campaign") -> Campaign:
    """The campaign with ``fitness.tasks`` resolved: the default suite when the file names
    none (held-out tasks only when named); an unknown name is a :class:`CampaignError`. Imports
    the task registry (and torch); ``FILE.py:FACTORY`` specs are loaded to check them."""
    from fitness.tasks import TaskError, heldout_task_names, load_task, task_names

    suite = task_names()
    known = suite + heldout_task_names()
    tasks = campaign.fitness.tasks or tuple(suite)
    for task in tasks:
        if ":" in task:
            try:
                load_task(task)
            except TaskError as exc:
                raise CampaignError(f"{source}: fitness.tasks: {exc}") from None
        elif task not in known:
            hint = _suggest(task, known)
            raise CampaignError(f"{source}: fitness.tasks: unknown task {task!r}{hint}")
    fitness = dataclasses.replace(campaign.fitness, tasks=tasks)
    return dataclasses.replace(campaign, fitness=fitness)


def _parse(data: Mapping, source: str, default_name: str | None) -> Campaign:
    for key, value in data.items():
        if key in SECTIONS or key == "campaign":
            continue
        if isinstance(value, dict):
            hint = _suggest(key, ["campaign", *SECTIONS], "[{}]")
            raise CampaignError(f"{source}: unknown section [{key}]{hint}")
        owner = [name for name, cls in SECTIONS.items() if key in _settings(cls)]
        hint = f" (it belongs in [{owner[0]}])" if owner else ""
        raise CampaignError(f"{source}: key {key!r} outside a section{hint}")
    sections = {name: cls(**_section(cls, name, data, source)) for name, cls in SECTIONS.items()}
    campaign = Campaign(**_section(Campaign, "campaign", data, source), **sections)
    if campaign.name is None:
        if default_name is None:
            raise CampaignError(f"{source}: campaign.name: expected {TEXT.expected}, got nothing")
        campaign = dataclasses.replace(campaign, name=default_name)
    _check_names(campaign, source)
    _check_relations(campaign, source)
    # Whatever the rules above miss, the configuration classes refuse.
    for section, build in [("space", lambda: _program_space(campaign.space)),
                           ("evolution", campaign.evolution_config)]:  # fmt: skip
        try:
            build()
        except ValueError as exc:
            raise CampaignError(f"{source}: [{section}] {exc}") from None
    return campaign


def _section(cls: type, section: str, data: Mapping, source: str) -> dict[str, Any]:
    """The keys given in ``data[section]``, checked and converted."""
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise CampaignError(f"{source}: [{section}] must be a table, got {_shown(table)}")
    known = _settings(cls)
    values = {}
    for key, value in table.items():
        if key not in known:
            hint = _suggest(key, known)
            raise CampaignError(f"{source}: [{section}] unknown key {key!r}{hint}")
        spec = known[key]
        if value is None and spec.default is None:  # JSON null: an unset optional key
            values[key] = None
            continue
        check: Check = spec.metadata["check"]
        if not check.accepts(value):
            raise CampaignError(
                f"{source}: {section}.{key}: expected {check.expected}, got {_shown(value)}"
            )
        values[key] = check.convert(value)
    return values


def _check_names(campaign: Campaign, source: str) -> None:
    """Names that must exist in a registry (read now, so that later additions count)."""
    evolution = campaign.evolution
    registries: list[tuple[str, Collection[str], Collection[str], str]] = [
        ("space.ops", campaign.space.ops, PRIMITIVES, "primitive"),
        ("evolution.warm_start", evolution.warm_start, zoo(), "optimizer"),
        ("evolution.mutation_weights", evolution.mutation_weights, MUTATIONS, "mutation"),
    ]
    for key, names, known, what in registries:
        for name in names:
            if name not in known:
                hint = _suggest(name, known)
                raise CampaignError(f"{source}: {key}: unknown {what} {name!r}{hint}")


def _check_relations(campaign: Campaign, source: str) -> None:
    """Rules between keys: (key, holds, expected, given)."""
    space, evolution, budget = campaign.space, campaign.evolution, campaign.budget
    population = evolution.population
    rules = [
        ("evolution.tournament", evolution.tournament <= population,
         f"at most evolution.population ({population})", evolution.tournament),
        ("evolution.random_programs", evolution.random_programs <= population,
         f"at most evolution.population ({population})", evolution.random_programs),
        ("evolution.random_programs", bool(evolution.warm_start) or evolution.random_programs,
         "> 0 when evolution.warm_start is empty", evolution.random_programs),
        ("evolution.warm_start",
         len(evolution.warm_start) <= population - evolution.random_programs,
         "at most evolution.population - evolution.random_programs "
         f"({population - evolution.random_programs}) names", evolution.warm_start),
        ("evolution.migration_size", evolution.migration_size <= population,
         f"at most evolution.population ({population})", evolution.migration_size),
        ("evolution.mutation_weights", any(w > 0 for w in evolution.mutation_weights.values()),
         "at least one weight > 0", evolution.mutation_weights),
        ("space.max_statements", space.min_statements <= space.max_statements,
         f"at least space.min_statements ({space.min_statements})", space.max_statements),
        ("space.state", len(space.state) <= space.max_state_slots,
         f"at most space.max_state_slots ({space.max_state_slots}) names", space.state),
        ("[budget]", budget.evaluations is not None or budget.wall_seconds is not None,
         "evaluations and/or wall_seconds", "neither"),
    ]  # fmt: skip
    for key, holds, expected, given in rules:
        if not holds:
            raise CampaignError(f"{source}: {key}: expected {expected}, got {_shown(given)}")


def _program_space(space: SpaceSettings) -> ProgramSpace:
    return ProgramSpace(
        state=space.state,
        ops=space.ops,
        min_statements=space.min_statements,
        max_statements=space.max_statements,
        max_state_slots=space.max_state_slots,
        constants=space.constants,
    )


def _suggest(name: str, known: Collection[str], form: str = "{!r}") -> str:
    """`` (did you mean …?)`` for a close match, else the known names."""
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return f" (did you mean {form.format(close[0])}?)"
    return f" (known: {', '.join(form.format(k) for k in known)})"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(item) for item in value]
    return value


# Documentation ----------------------------------------------------------------------------------


def defaults_table() -> str:
    """Every key of a campaign file as a Markdown table: key, what it accepts, default, meaning."""
    lines = ["| key | accepts | default | meaning |", "| --- | --- | --- | --- |"]
    for section, cls in {"campaign": Campaign, **SECTIONS}.items():
        for name, spec in _settings(cls).items():
            meta = spec.metadata
            default = spec.default_factory() if callable(spec.default_factory) else spec.default
            shown = meta["shown"] or json.dumps(_jsonable(default))
            key = f"{section}.{name}"
            lines.append(f"| `{key}` | {meta['check'].expected} | {shown} | {meta['doc']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(defaults_table(), end="")
