"""Known optimizers written as program files (``<name>.py``), one per file.

Each file starts with a docstring whose first line describes the optimizer and the torch
reference it reproduces; the rest of the file is the ``train`` program.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from evodisc.program import Program, ProgramError, load_program

ZOO_DIR = Path(__file__).parent


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


def zoo() -> dict[str, ZooEntry]:
    """All known optimizers, by name (the file stem), sorted."""
    entries = {}
    for path in sorted(ZOO_DIR.glob("*.py")):
        if path.name.startswith("_"):
            continue
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        summary = docstring.split("\n\n")[0].replace("\n", " ")
        entries[path.stem] = ZooEntry(path.stem, path, summary)
    return entries


def load_known(name: str) -> Program:
    """The zoo program called ``name``; :class:`UnknownOptimizer` (a ``KeyError``) otherwise."""
    entries = zoo()
    if name not in entries:
        raise UnknownOptimizer(f"unknown optimizer {name!r}; known: {', '.join(entries)}")
    return entries[name].load()


def resolve_program(spec: str | Path) -> Program:
    """A program from a file path, or the name of a known optimizer (``adamw``).

    A bare name that is both a known optimizer and a file in the working directory is
    ambiguous: a :class:`ProgramError` says so (write ``./adamw`` for the file)."""
    path = Path(spec)
    entries = zoo()
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
