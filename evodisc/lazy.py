"""Public names resolved on first use (PEP 562): how the ``evodisc`` and ``fitness`` packages
stay light to import while still exporting names whose modules need torch, pyarrow or the
application layer."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def on_first_use(
    package: dict, table: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package`` (its ``globals()``): a name of
    ``table`` (name → defining module) is imported when first read, then kept in ``package``."""

    def __getattr__(name: str) -> object:
        if name not in table:
            raise AttributeError(f"module {package['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(table[name]), name)
        package[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(package.get("__all__", [*package, *table]))

    return __getattr__, __dir__
