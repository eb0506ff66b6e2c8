"""Settings declared once: a configuration class's fields carry what they accept, their default
and their meaning (:func:`setting`), and :func:`check_settings` applies those checks when the
class is built. A campaign file maps onto the real configuration classes
(:class:`search_spaces.space.ProgramSpace`, :class:`search_spaces.evolution.EvolutionConfig`,
:class:`fitness.config.SuiteConfig`, …) through the same metadata, which also writes the
documentation table of its keys.

A value that a key does not accept, or a rule between keys that does not hold, is a
:class:`SettingError` naming the key, what was expected and what was given.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import Any


class SettingError(ValueError):
    """A setting that cannot be used: ``key`` (a field name), ``expected`` and ``given``."""

    def __init__(self, key: str, expected: str, given: Any = None, *, unknown: bool = False):
        self.key, self.expected, self.given = key, expected, given
        self.detail = expected if unknown else f"expected {expected}, got {shown(given)}"
        super().__init__(f"{key}: {self.detail}")


@dataclass(frozen=True)
class Check:
    """What a key accepts: ``expected`` (said in errors), ``accepts(value)`` for a TOML or JSON
    value or the converted value, and ``convert`` from that value to the field's value."""

    expected: str
    accepts: Callable[[Any], bool]
    convert: Callable[[Any], Any] = lambda value: value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def list_of(
    item: Check, items: str, empty: bool = False, distinct: bool = False, most: int | None = None
) -> Check:
    """A list (a tuple once converted) of ``items``, each accepted by ``item``; ``distinct``:
    no value twice; ``most``: at most that many (checked before any item is looked at)."""
    size = f"at most {most} " if most else ""
    kind = f"{'distinct ' if distinct else ''}{items}"

    def accepts(v: Any) -> bool:
        if not isinstance(v, list | tuple) or not (empty or v) or (most and len(v) > most):
            return False
        return all(map(item.accepts, v)) and (not distinct or len(set(v)) == len(v))

    return Check(
        f"a {'' if empty else 'non-empty '}list of {size}{kind}",
        accepts,
        lambda v: tuple(map(item.convert, v)),
    )


def int_between(low: int, high: int) -> Check:
    """An integer from ``low`` to ``high``."""
    return Check(f"an integer from {low} to {high}", lambda v: _is_int(v) and low <= v <= high)


def number_between(low: float, high: float) -> Check:
    """A number from ``low`` to ``high`` (a float once converted)."""
    return Check(
        f"a number from {low:g} to {high:g}", lambda v: _is_number(v) and low <= v <= high, float
    )


def table_of(item: Check, items: str, base: Callable[[], Mapping] = dict) -> Check:
    """A table of ``items`` by name; converted on top of ``base()`` (names left out keep their
    value there)."""
    return Check(
        f"a table of {items}",
        lambda v: isinstance(v, Mapping) and all(map(item.accepts, v.values())),
        lambda v: {**base(), **{name: item.convert(value) for name, value in v.items()}},
    )


def one_of(values: Collection[str]) -> Check:
    return Check(f"one of {', '.join(map(repr, values))}", lambda v: v in values)


INT = Check("an integer", _is_int)
POSITIVE_INT = Check("a positive integer", lambda v: _is_int(v) and v > 0)
COUNT = Check("an integer >= 0", lambda v: _is_int(v) and v >= 0)
NUMBER = Check("a number", _is_number, float)
POSITIVE = Check("a number > 0", lambda v: _is_number(v) and v > 0, float)
NON_NEGATIVE = Check("a number >= 0", lambda v: _is_number(v) and v >= 0, float)
FRACTION = Check("a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1, float)
OPEN_FRACTION = Check("a number in (0, 1)", lambda v: _is_number(v) and 0 < v < 1, float)
TEXT = Check("a non-empty string", lambda v: isinstance(v, str) and bool(v))
BOOL = Check("true or false", lambda v: isinstance(v, bool))


def setting(check: Check, default: Any, doc: str, shown: str | None = None) -> Any:
    """A dataclass field that is a setting: its check, its default (a value, or a function
    computing it), its meaning, and how the documentation shows the default when not as JSON
    (``shown``)."""
    metadata = {"check": check, "doc": doc, "shown": shown}
    if callable(default):
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


def settings_of(cls: type) -> dict[str, dataclasses.Field]:
    """The fields of ``cls`` that are settings, by name."""
    return {f.name: f for f in fields(cls) if "check" in f.metadata}


def check_settings(instance: Any) -> None:
    """Apply every setting's check to ``instance`` (from its ``__post_init__``): a value that
    the key does not accept is a :class:`SettingError` (None is accepted where it is the
    default: an unset optional key)."""
    for name, spec in settings_of(type(instance)).items():
        value = getattr(instance, name)
        if value is None and spec.default is None:
            continue
        check: Check = spec.metadata["check"]
        if not check.accepts(value):
            raise SettingError(name, check.expected, value)


def check_known(key: str, names: Collection[str], known: Collection[str], what: str) -> None:
    """Every one of ``names`` must be in ``known``; else a :class:`SettingError` with the
    closest known name."""
    for name in names:
        if name not in known:
            raise SettingError(key, f"unknown {what} {name!r}{suggest(name, known)}", unknown=True)


def suggest(name: str, known: Collection[str], form: str = "{!r}") -> str:
    """`` (did you mean …?)`` for a close match, else the known names."""
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return f" (did you mean {form.format(close[0])}?)"
    return f" (known: {', '.join(form.format(k) for k in known)})"


def shown(value: Any) -> str:
    """``repr(value)``, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
