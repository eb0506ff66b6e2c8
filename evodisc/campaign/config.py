"""Campaign files (``experiments/*.toml``): read, validated in full before anything starts, and
resolved into the real configuration classes with every default filled in.

A section maps onto one class: ``[space]`` onto :class:`~search_spaces.space.ProgramSpace`,
``[evolution]`` onto :class:`~search_spaces.evolution.EvolutionConfig`, ``[fitness]`` onto
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
    setting,
    settings_of,
    shown,
    suggest,
)
from fitness.config import SuiteConfig
from search_spaces.evolution import EvolutionConfig
from search_spaces.space import ProgramSpace

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
#: (the evolution is given the space and the campaign's seed).
SECTIONS: dict[str, type] = {
    "space": ProgramSpace,
    "evolution": EvolutionConfig,
    "budget": BudgetSettings,
    "fitness": SuiteConfig,
    "resources": ResourceSettings,
}


@dataclass(frozen=True)
class Campaign:
    """A validated campaign (``[campaign]`` keys, then one field per section). Build it with
    :func:`load_campaign` or :meth:`from_dict`, which check everything."""

    space: ProgramSpace
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
        return {name: _keys(section) for name, section in sections.items()}

    def digest(self) -> str:
        """The campaign's identity: a stable digest of :meth:`to_dict` without the name (which
        defaults to the file's name), key order ignored: the same content under another file
        name is the same campaign."""
        document = self.to_dict()
        del document["campaign"]["name"]
        return fitness_config_key(document)

    def digests(self) -> tuple[str, ...]:
        """:meth:`digest`, and the digest with the name that directories written before
        2026-12-06 hold (so that they resume); when the keys of :data:`LATER_KEYS` hold their
        earlier values, both again without those keys (directories written before them)."""
        documents = [self.to_dict()]
        if all(documents[0][s][k] == v for (s, k), v in LATER_KEYS.items()):
            earlier = self.to_dict()
            for section, key in LATER_KEYS:
                del earlier[section][key]
            documents.append(earlier)
        digests = []
        for document in documents:
            named = fitness_config_key(document)
            del document["campaign"]["name"]
            digests += [fitness_config_key(document), named]
        return tuple(digests)

    def as_stored(self, stored: Mapping[str, Any]) -> Campaign:
        """This campaign as a directory whose resolved campaign is ``stored`` runs it: a key of
        :data:`LATER_KEYS` that ``stored`` lacks (written before the key existed) takes its
        earlier value."""
        campaign = self
        for (section, key), value in LATER_KEYS.items():
            if key not in stored.get(section, {}):
                changed = dataclasses.replace(getattr(campaign, section), **{key: value})
                campaign = dataclasses.replace(campaign, **{section: changed})
        return campaign

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "campaign.json") -> Campaign:
        """A campaign from :meth:`to_dict`'s output (or any TOML-shaped mapping), validated;
        errors name ``source``."""
        return _parse(data, source, default_name=None)


#: Keys added after campaign directories were first written, with the value that reproduces how
#: a directory written before them ran: such a directory resumes with that value
#: (:meth:`Campaign.as_stored`), and its digest is the one without the key.
LATER_KEYS: dict[tuple[str, str], Any] = {("evolution", "merge_scale_variants"): False}


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
        owner = [name for name, cls in SECTIONS.items() if key in settings_of(cls)]
        hint = f" (it belongs in [{owner[0]}])" if owner else ""
        raise CampaignError(f"{source}: key {key!r} outside a section{hint}")
    top = _section(Campaign, "campaign", data, source)
    given = {"evolution": {"seed": top.get("seed", 0)}}
    built: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        values = _section(cls, name, data, source) | given.get(name, {})
        if name == "evolution":
            values["space"] = built["space"]
        built[name] = _build(cls, name, values, source)
    campaign = Campaign(**top, **built)
    if campaign.name is None:
        if default_name is None:
            raise CampaignError(f"{source}: campaign.name: expected {TEXT.expected}, got nothing")
        campaign = dataclasses.replace(campaign, name=default_name)
    return campaign


def _section(cls: type, section: str, data: Mapping, source: str) -> dict[str, Any]:
    """The keys given in ``data[section]``, checked and converted."""
    table = data.get(section, {})
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
    for section, cls in {"campaign": Campaign, **SECTIONS}.items():
        for name, spec in settings_of(cls).items():
            meta = spec.metadata
            default = spec.default_factory() if callable(spec.default_factory) else spec.default
            shown = meta["shown"] or json.dumps(_jsonable(default))
            key = f"{section}.{name}"
            lines.append(f"| `{key}` | {meta['check'].expected} | {shown} | {meta['doc']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(defaults_table(), end="")
