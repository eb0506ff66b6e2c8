"""Campaign files (``experiments/*.toml``): read, validated in full before anything starts, and
resolved into the real configuration classes with every default filled in.

A section maps onto one class: ``[space]`` onto the settings of the search space its ``kind``
names (:data:`search_spaces.spaces.SPACES`: :class:`~search_spaces.space.ProgramSpace` by
default, :class:`~search_spaces.genome.GenomeSpace`), ``[evolution]`` onto
:class:`~search_spaces.evolution.EvolutionConfig`, ``[fitness]`` onto
:class:`~fitness.config.SuiteConfig`, ``[budget]``, ``[resources]``, ``[screen]`` and
``[selection]`` onto the classes below. ``[fitness]`` is the full protocol; ``[screen]`` and
``[selection]`` derive the funnel's other stages from it (:meth:`Campaign.stage_config`).
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
    BOOL,
    COUNT,
    FRACTION,
    INT,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    TEXT,
    Check,
    SettingError,
    check_settings,
    int_between,
    list_of,
    one_of,
    setting,
    settings_of,
    shown,
    suggest,
)
from fitness.config import MAX_SEEDS, SuiteConfig
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
    reuse_results: bool = setting(
        BOOL,
        True,
        "reuse the result of an equivalent candidate (same function, or rule); false trains "
        "every valid candidate (to measure what the functional cache saves)",
    )

    def __post_init__(self) -> None:
        check_settings(self)


#: Stage task lists: empty means the ``[fitness]`` tasks.
STAGE_TASKS = list_of(TEXT, "task names", empty=True, distinct=True, most=64)
STAGE_SEEDS = list_of(INT, "integers", distinct=True, most=MAX_SEEDS)


@dataclass(frozen=True)
class ScreenSettings:
    """``[screen]``: the funnel's first stage, a cheap evaluation (e.g. one seed, the cheapest
    tasks) that every candidate passes before the full protocol of ``[fitness]``. A candidate goes
    on when its screen fitness plus ``margin`` times its uncertainty reaches the ``quantile`` of
    the screen fitness of its island's population; else it is logged as ``rejected``."""

    enabled: bool = setting(BOOL, False, "screen every candidate before the full protocol")
    tasks: tuple[str, ...] = setting(
        STAGE_TASKS, (), "tasks of the screening stage", shown="the [fitness] tasks"
    )
    seeds: tuple[int, ...] = setting(STAGE_SEEDS, (0,), "training seeds of the screening stage")
    quantile: float = setting(
        FRACTION,
        0.5,
        "a candidate goes on when its screen fitness (+ margin × its uncertainty) reaches this "
        "quantile of its island population's (0: its worst member's)",
    )
    margin: float = setting(
        NON_NEGATIVE,
        1.0,
        "uncertainties a screen fitness may fall short of the bar by (0: none; more: fewer "
        "rejected)",
    )
    stop_stalled: float = setting(
        FRACTION, 0.25, "early stopping in the screening stage (as [fitness] stop_stalled)"
    )

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class SelectionSettings:
    """``[selection]``: the funnel's last stage. When the budget is spent, the ``top``
    best-scoring distinct candidates are evaluated again on more seeds (and the stage's tasks,
    never held-out ones), and ranked by that (``DIR/selection.json``): the campaign's best."""

    top: int = setting(int_between(0, 1000), 0, "candidates re-evaluated at the end; 0 none")
    tasks: tuple[str, ...] = setting(
        STAGE_TASKS, (), "tasks of the selection stage", shown="the [fitness] tasks"
    )
    seeds: tuple[int, ...] = setting(
        STAGE_SEEDS, tuple(range(8)), "training seeds of the selection stage"
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
    "screen": ScreenSettings,
    "selection": SelectionSettings,
}


#: The funnel's stages, in order (``screen`` only when enabled, ``selection`` at the end).
STAGES = ("screen", "full", "selection")


#: ``[space] kind``: which search space the campaign searches.
SPACE_KIND = Check(one_of(SPACES).expected, lambda v: v in SPACES)

#: Keys added after campaign directories were first written, with the value that leaves a
#: campaign as it was: at that value a key is left out of the digest, so that a campaign file
#: of before keeps its digest and its directories resume.
ADDED_KEYS: dict[tuple[str, str], Any] = {
    ("space", "kind"): "program",
    ("evolution", "crossover"): 0.0,
    ("fitness", "stop_stalled"): 0.0,
    ("fitness", "keep_lrs"): 0,
    ("fitness", "keep_lrs_after"): 0.25,
    ("evolution", "tune_constants"): False,
    ("resources", "reuse_results"): True,
}
#: Sections added later: left out of the digest while every key holds its default.
ADDED_SECTIONS = ("screen", "selection")


@dataclass(frozen=True)
class Campaign:
    """A validated campaign (``[campaign]`` keys, then one field per section). Build it with
    :func:`load_campaign` or :meth:`from_dict`, which check everything."""

    space: SpaceSettings
    evolution: EvolutionConfig
    budget: BudgetSettings
    fitness: SuiteConfig
    resources: ResourceSettings
    screen: ScreenSettings
    selection: SelectionSettings
    name: str | None = setting(TEXT, None, "the campaign's name", shown="the file name")
    seed: int = setting(INT, 0, "root seed of every random choice")

    def evolution_config(self) -> EvolutionConfig:
        """The configuration of :class:`~search_spaces.evolution.RegularizedEvolution` (the
        ``[evolution]`` section, with the ``[space]`` section and the seed)."""
        return self.evolution

    def suite_config(self) -> SuiteConfig:
        """``[fitness]``: what an evaluation trains."""
        return self.fitness

    def stage_config(self, stage: str) -> SuiteConfig:
        """What the stage ``stage`` (of :data:`STAGES`) trains: ``[fitness]`` for ``full``; for
        ``screen`` and ``selection`` the same grid, precision, checkpoints and baseline with
        the stage's tasks (default: the same) and seeds (and the screen's early stopping; the
        selection without learning-rate halving)."""
        full = self.fitness
        if stage == "full":
            return full
        settings = self.screen if stage == "screen" else self.selection
        changes = {"tasks": settings.tasks or full.tasks, "seeds": settings.seeds}
        if stage == "screen":
            changes["stop_stalled"] = self.screen.stop_stalled
        else:  # the campaign's best is chosen on the whole grid
            changes["keep_lrs"] = 0
        return dataclasses.replace(full, **changes)

    def stages(self) -> tuple[str, ...]:
        """The stages a candidate goes through while the budget lasts: ``("screen", "full")``
        with the screen enabled, else ``("full",)``."""
        return ("screen", "full") if self.screen.enabled else ("full",)

    def baseline_tasks(self) -> tuple[str, ...]:
        """Every task some stage trains (each needs its baseline), in order of appearance."""
        names = list(self.fitness.tasks)
        if self.screen.enabled:
            names += self.stage_config("screen").tasks
        if self.selection.top:
            names += self.stage_config("selection").tasks
        return tuple(dict.fromkeys(names))

    def to_dict(self) -> dict:
        """The resolved campaign as JSON-able nested sections (the shape of the TOML file)."""
        sections = {"campaign": self, **{name: getattr(self, name) for name in SECTIONS}}
        document = {name: _keys(section) for name, section in sections.items()}
        document["space"] = {"kind": open_space(self.space).kind, **document["space"]}
        return document

    def digest(self) -> str:
        """The campaign's identity: a stable digest of :meth:`to_dict` without the name (which
        defaults to the file's name) and without the keys added later that leave the campaign
        as it was (:meth:`_identity`), key order ignored: the same content under another file
        name is the same campaign."""
        document = self._identity()
        del document["campaign"]["name"]
        return fitness_config_key(document)

    def digests(self) -> tuple[str, ...]:
        """:meth:`digest`, and the digest with the name that directories written before
        2026-12-06 hold (so that they resume); when the keys of :data:`EARLIER_VALUES` hold
        their earlier values, both again without those keys (directories written before
        them)."""
        documents = [self._identity()]
        if all(documents[0][s][k] == v for (s, k), v in EARLIER_VALUES.items()):
            earlier = self._identity()
            for section, key in EARLIER_VALUES:
                del earlier[section][key]
            documents.append(earlier)
        digests = []
        for document in documents:
            named = fitness_config_key(document)
            del document["campaign"]["name"]
            digests += [fitness_config_key(document), named]
        return tuple(digests)

    def _identity(self) -> dict:
        """:meth:`to_dict` without the keys added later that leave the campaign as it was: the
        :data:`ADDED_KEYS` at their old value, the :data:`ADDED_SECTIONS` at their defaults."""
        document = self.to_dict()
        for (section, key), old in ADDED_KEYS.items():
            if document[section][key] == old:
                del document[section][key]
        for section in ADDED_SECTIONS:
            if document[section] == _keys(SECTIONS[section]()):
                del document[section]
        return document

    def as_stored(self, stored: Mapping[str, Any]) -> Campaign:
        """This campaign as a directory whose resolved campaign is ``stored`` runs it: a key of
        :data:`EARLIER_VALUES` that ``stored`` lacks (written before the key existed) takes
        its earlier value."""
        campaign = self
        for (section, key), value in EARLIER_VALUES.items():
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
EARLIER_VALUES: dict[tuple[str, str], Any] = {
    ("evolution", "merge_scale_variants"): False,
    ("fitness", "aggregate"): "geomean",
}


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
    """The campaign, once every task name of every stage (``fitness.tasks``, the search suite
    when the file names none; ``screen.tasks``; ``selection.tasks``) is a known task or a
    ``FILE.py:FACTORY`` spec that loads (which imports the file, and torch; within the
    campaign's ``timeout_seconds``, 0: :data:`~evodisc.campaign.evaluators.DEFAULT_DEADLINE`),
    and the selection
    stage names no held-out task that ``fitness.tasks`` does not; else a :class:`CampaignError`."""
    from evodisc.campaign.evaluators import DEFAULT_DEADLINE, EvaluatorError, within
    from fitness.tasks import TaskError, heldout_task_names, load_task, task_names

    known = task_names() + heldout_task_names()
    deadline = campaign.resources.timeout_seconds or DEFAULT_DEADLINE
    for section in ("fitness", "screen", "selection"):
        for task in getattr(campaign, section).tasks:
            if ":" in task:
                why = (
                    f"{source}: {section}.tasks: loading {task} took longer than {deadline:g} s "
                    "(resources.timeout_seconds): does its factory hang? A call in this process "
                    "cannot be stopped, so the run ends here"
                )
                try:
                    within(deadline, lambda task=task: load_task(task), why)
                except TaskError as exc:
                    raise CampaignError(f"{source}: {section}.tasks: {exc}") from None
                except EvaluatorError as exc:
                    raise CampaignError(str(exc)) from None
            elif task not in known:
                hint = suggest(task, known)
                raise CampaignError(f"{source}: {section}.tasks: unknown task {task!r}{hint}")
    held_out = set(heldout_task_names()) - set(campaign.fitness.tasks)
    for task in campaign.selection.tasks:
        if task in held_out:
            raise CampaignError(
                f"{source}: selection.tasks: {task!r} is a held-out task, used only to report, "
                "never to select (name it in fitness.tasks to search on it)"
            )
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
    kind_row = f'| `space.kind` | {SPACE_KIND.expected} | "program" | the search space |'
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
