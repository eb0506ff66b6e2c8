"""Known optimizers written as program files (``<name>.py``), one per file.

Each file starts with a docstring whose first line describes the optimizer and the torch
reference it reproduces; the rest of the file is the ``train`` program.

:func:`zoo` is the published optimizers, the ones discoveries are compared with. Rules that
evodisc's own campaigns found and kept live apart, in ``discovered/`` (:func:`discovered`), named
``discovered_<file stem>``: their docstrings say which campaign found them and how they fared
(docs/discoveries.md). Every place a program is taken by name (replay, export, simplify, a
campaign's ``warm_start``) knows both (:func:`known`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from evodisc.program import Program, ProgramError, load_program

ZOO_DIR = Path(__file__).parent
#: Where the rules found by evodisc's campaigns are kept, and the prefix of their names.
DISCOVERED_DIR = ZOO_DIR / "discovered"
DISCOVERED_PREFIX = "discovered_"


class UnknownOptimizer(KeyError):
    """No known optimizer has that name; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class ZooEntry:
    """One known optimizer."""

    name: str
    path: Path
    description: str

    def load(self) -> Program:
        """The parsed program."""
        return load_program(self.path)


def _entries(directory: Path, prefix: str = "") -> dict[str, ZooEntry]:
    """The program files of ``directory``, by ``prefix`` + file stem, sorted."""
    entries = {}
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        summary = docstring.split("\n\n")[0].replace("\n", " ")
        entries[prefix + path.stem] = ZooEntry(prefix + path.stem, path, summary)
    return entries


def zoo() -> dict[str, ZooEntry]:
    """The published optimizers, by name (the file stem), sorted."""
    return _entries(ZOO_DIR)


def discovered() -> dict[str, ZooEntry]:
    """The rules evodisc's campaigns found and kept, by name (``discovered_<stem>``), sorted."""
    return _entries(DISCOVERED_DIR, DISCOVERED_PREFIX)


def known() -> dict[str, ZooEntry]:
    """Every program that can be taken by name: :func:`zoo` and :func:`discovered`."""
    return {**zoo(), **discovered()}


def load_known(name: str) -> Program:
    """The known program called ``name`` (:func:`known`); :class:`UnknownOptimizer` (a
    ``KeyError``) otherwise."""
    entries = known()
    if name not in entries:
        raise UnknownOptimizer(f"unknown optimizer {name!r}; known: {', '.join(entries)}")
    return entries[name].load()


def resolve_program(spec: str | Path) -> Program:
    """A program from a file path, or the name of a known program (``adamw``, or a discovered
    rule's ``discovered_<name>``).

    A bare name that is both a known optimizer and a file in the working directory is
    ambiguous: a :class:`ProgramError` says so (write ``./adamw`` for the file)."""
    path = Path(spec)
    entries = known()
    name = str(spec)
    if name in entries:
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise ProgramError(
                f"both a file in this directory and the known optimizer {name!r}; write "
                f"'./{name}' for the file, or rename it to use the known optimizer",
                filename=name,
            )
        return entries[name].load()
    if path.exists() or path.is_symlink():
        return load_program(path)
    reason = "no such file, and not a known optimizer (see 'evodisc zoo')"
    raise ProgramError(reason, filename=str(spec))
