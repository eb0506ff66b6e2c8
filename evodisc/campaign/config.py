"""Campaign files (``experiments/*.toml``): read, validated in full before anything starts, and
resolved into the real configuration classes with every default filled in.

A section maps onto one class: ``[space]`` onto the settings of the search space its ``kind``
names (:data:`search_spaces.spaces.SPACES`: :class:`~search_spaces.space.ProgramSpace` by
default, :class:`~search_spaces.genome.GenomeSpace`), ``[evolution]`` onto
:class:`~search_spaces.evolution.EvolutionConfig`, ``[fitness]`` onto
:class:`~fitness.config.SuiteConfig`, ``[budget]`` and ``[resources]`` onto the classes below.
Each class declares its keys with :func:`evodisc.settings.setting` (what the key accepts, its
default, what it means) and checks them, and the rules between them, once, when it is built.
That one declaration drives validation, defaults, :meth:`Campaign.to_dict` and the
documentation table (:func:`defaults_table`, printed by ``python -m evodisc.campaign.config``).
A problem is one :class:`CampaignError` line naming the file, the key and what was expected.

Task names are checked by :func:`check_tasks`, a separate step (a user's task file is imported
to check it, which imports torch).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evodisc.files import FileReadError, read_text
from evodisc.fitness_cache import fitness_config_key
from evodisc.settings import (
    COUNT,
    INT,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    TEXT,
    Check,
    SettingError,
    check_settings,
    one_of,
    setting,
    settings_of,
    shown,
    suggest,
)
from fitness.config import SuiteConfig
from search_spaces.evolution import EvolutionConfig
from search_spaces.space import ProgramSpace
from search_spaces.spaces import SPACES, SpaceSettings, open_space

#: A campaign file is a regular file of at most this many bytes (a FIFO or a device is refused).
MAX_CAMPAIGN_BYTES = 1 << 20


class CampaignError(ValueError):
    """A campaign file that cannot run; the message is one line naming the file and the key."""


# Sections of their own --------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetSettings:
    """``[budget]``: when the campaign stops (whichever comes first; at least one is needed)."""

    evaluations: int | None = setting(POSITIVE_INT, None, "candidates to evaluate", shown="unset")
    wall_seconds: float | None = setting(POSITIVE, None, "seconds to run", shown="unset")

    def __post_init__(self) -> None:
        check_settings(self)
        if self.evaluations is None and self.wall_seconds is None:
            raise SettingError("", "evaluations and/or wall_seconds", "neither")


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

    def __post_init__(self) -> None:
        check_settings(self)


#: The sections of a campaign file and the classes they map onto, in the order they are built
#: (the evolution is given the space and the campaign's seed); ``[space]`` maps onto the class
#: of its ``kind`` (:data:`SPACE_KIND`), the program space's by default.
SECTIONS: dict[str, type] = {
    "space": ProgramSpace,
    "evolution": EvolutionConfig,
    "budget": BudgetSettings,
    "fitness": SuiteConfig,
    "resources": ResourceSettings,
}


#: ``[space] kind``: which search space the campaign searches.
SPACE_KIND = Check(one_of(SPACES).expected, lambda v: v in SPACES)

#: Keys added after campaign directories were first written, with the value that leaves a
#: campaign as it was: at that value a key is left out of the digest, so that a campaign file
#: of before keeps its digest and its directories resume.
ADDED_KEYS: dict[tuple[str, str], Any] = {
    ("space", "kind"): "program",
    ("evolution", "crossover"): 0.0,
}


@dataclass(frozen=True)
class Campaign:
    """A validated campaign (``[campaign]`` keys, then one field per section). Build it with
    :func:`load_campaign` or :meth:`from_dict`, which check everything."""

    space: SpaceSettings
    evolution: EvolutionConfig
    budget: BudgetSettings
    fitness: SuiteConfig
    resources: ResourceSettings
    name: str | None = setting(TEXT, None, "the campaign's name", shown="the file name")
    seed: int = setting(INT, 0, "root seed of every random choice")

    def evolution_config(self) -> EvolutionConfig:
        """The configuration of :class:`~search_spaces.evolution.RegularizedEvolution` (the
        ``[evolution]`` section, with the ``[space]`` section and the seed)."""
        return self.evolution

    def suite_config(self) -> SuiteConfig:
        """``[fitness]``: what an evaluation trains."""
        return self.fitness

    def to_dict(self) -> dict:
        """The resolved campaign as JSON-able nested sections (the shape of the TOML file)."""
        sections = {"campaign": self, **{name: getattr(self, name) for name in SECTIONS}}
        document = {name: _keys(section) for name, section in sections.items()}
        document["space"] = {"kind": open_space(self.space).kind, **document["space"]}
        return document

    def digest(self) -> str:
        """The campaign's identity: a stable digest of :meth:`to_dict` without the name (which
        defaults to the file's name) and without the :data:`ADDED_KEYS` at their old value,
        key order ignored: the same content under another file name is the same campaign."""
        return fitness_config_key(self._identity(name=False))

    def digests(self) -> tuple[str, str]:
        """:meth:`digest`, and the digest with the name that directories written before
        2026-12-06 hold (so that they resume)."""
        return self.digest(), fitness_config_key(self._identity(name=True))

    def _identity(self, name: bool) -> dict:
        document = self.to_dict()
        if not name:
            del document["campaign"]["name"]
        for (section, key), old in ADDED_KEYS.items():
            if document[section][key] == old:
                del document[section][key]
        return document

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
        data = tomllib.loads(read_text(path, MAX_CAMPAIGN_BYTES))
    except FileReadError as exc:
        if not path.exists():
            raise CampaignError(f"{path}: no such campaign file") from None
        raise CampaignError(f"{path}: cannot read the campaign file ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(f"{path}: invalid TOML: {exc}") from None
    return _parse(data, str(path), default_name=path.stem)


def check_tasks(campaign: Campaign, source: str = "campaign") -> Campaign:
    """The campaign, once every name of ``fitness.tasks`` (the search suite when the file names
    none; held-out tasks only when named) is a known task or a ``FILE.py:FACTORY`` spec that
    loads (which imports the file, and torch); else a :class:`CampaignError`."""
    from fitness.tasks import TaskError, heldout_task_names, load_task, task_names

    known = task_names() + heldout_task_names()
    for task in campaign.fitness.tasks:
        if ":" in task:
            try:
                load_task(task)
            except TaskError as exc:
                raise CampaignError(f"{source}: fitness.tasks: {exc}") from None
        elif task not in known:
            hint = suggest(task, known)
            raise CampaignError(f"{source}: fitness.tasks: unknown task {task!r}{hint}")
    return campaign


def _parse(data: Mapping, source: str, default_name: str | None) -> Campaign:
    for key, value in data.items():
        if key in SECTIONS or key == "campaign":
            continue
        if isinstance(value, dict):
            hint = suggest(key, ["campaign", *SECTIONS], "[{}]")
            raise CampaignError(f"{source}: unknown section [{key}]{hint}")
        owner = [name for name, cls in _classes() if key in settings_of(cls)]
        hint = f" (it belongs in [{owner[0]}])" if owner else ""
        raise CampaignError(f"{source}: key {key!r} outside a section{hint}")
    top = _section(Campaign, "campaign", data.get("campaign", {}), source)
    given = {"evolution": {"seed": top.get("seed", 0)}}
    built: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        table = data.get(name, {})
        if name == "space":
            cls, table = _space_class(table, source)
        values = _section(cls, name, table, source) | given.get(name, {})
        if name == "evolution":
            values["space"] = built["space"]
            if "mutation_weights" in values:  # laid over the space's mutations at 1.0 each
                names = open_space(built["space"]).mutation_names()
                values["mutation_weights"] = dict.fromkeys(names, 1.0) | values["mutation_weights"]
        built[name] = _build(cls, name, values, source)
    campaign = Campaign(**top, **built)
    if campaign.name is None:
        if default_name is None:
            raise CampaignError(f"{source}: campaign.name: expected {TEXT.expected}, got nothing")
        campaign = dataclasses.replace(campaign, name=default_name)
    return campaign


def _classes() -> list[tuple[str, type]]:
    """Each section's name and the classes it may map onto."""
    return [
        (name, owner)
        for name, cls in SECTIONS.items()
        for owner in (SPACES.values() if name == "space" else (cls,))
    ]


def _space_class(table: Any, source: str) -> tuple[type, Any]:
    """The settings class of the kind ``[space]`` names, and its other keys; a key of another
    kind of space is a :class:`CampaignError` saying so."""
    if not isinstance(table, dict):
        return ProgramSpace, table  # _section says what is wrong
    kind = table.get("kind", "program")
    if not SPACE_KIND.accepts(kind):
        expected = SPACE_KIND.expected
        raise CampaignError(f"{source}: space.kind: expected {expected}, got {shown(kind)}")
    cls = SPACES[kind]
    for key in table:
        others = [k for k, c in SPACES.items() if k != kind and key in settings_of(c)]
        if others and key not in settings_of(cls):
            raise CampaignError(
                f"{source}: space.{key}: a key of the {others[0]} space, not of kind {kind!r}"
            )
    return cls, {key: value for key, value in table.items() if key != "kind"}


def _section(cls: type, section: str, table: Any, source: str) -> dict[str, Any]:
    """The keys given in ``table`` (the section ``section``), checked and converted."""
    if not isinstance(table, dict):
        raise CampaignError(f"{source}: [{section}] must be a table, got {shown(table)}")
    known = settings_of(cls)
    values = {}
    for key, value in table.items():
        if key not in known:
            raise CampaignError(f"{source}: [{section}] unknown key {key!r}{suggest(key, known)}")
        spec = known[key]
        if value is None and spec.default is None:  # JSON null: an unset optional key
            values[key] = None
            continue
        check: Check = spec.metadata["check"]
        if not check.accepts(value):
            raise CampaignError(
                f"{source}: {section}.{key}: expected {check.expected}, got {shown(value)}"
            )
        values[key] = check.convert(value)
    return values


def _build(cls: type, section: str, values: dict[str, Any], source: str) -> Any:
    """``cls(**values)``; what it refuses is a :class:`CampaignError` naming the key."""
    try:
        return cls(**values)
    except SettingError as exc:
        where = f"{section}.{exc.key}" if exc.key else f"[{section}]"
        raise CampaignError(f"{source}: {where}: {exc.detail}") from None
    except ValueError as exc:
        raise CampaignError(f"{source}: [{section}] {exc}") from None


def _keys(section: Any) -> dict[str, Any]:
    """A section's keys and their values, JSON-able."""
    return {name: _jsonable(getattr(section, name)) for name in settings_of(type(section))}


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
    kind_row = f"| `space.kind` | {SPACE_KIND.expected} | \"program\" | the search space |"
    for section, cls in [("campaign", Campaign), *_classes()]:
        kind = next((k for k, c in SPACES.items() if c is cls), None)
        if kind == "program":
            lines.append(kind_row)
        for name, spec in settings_of(cls).items():
            meta = spec.metadata
            default = spec.default_factory() if callable(spec.default_factory) else spec.default
            shown = meta["shown"] or json.dumps(_jsonable(default))
            key = f"{section}.{name}"
            doc = meta["doc"] if kind in (None, "program") else f"{kind} space: {meta['doc']}"
            lines.append(f"| `{key}` | {meta['check'].expected} | {shown} | {doc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(defaults_table(), end="")
