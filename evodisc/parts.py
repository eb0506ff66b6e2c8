"""A directory of append-only Parquet parts: what the fitness cache and the campaign log are made
of.

Each part is written whole (:func:`evodisc.files.atomic_write`: a hidden temporary, fsynced,
renamed, the directory fsynced), so a crash or a full disk never leaves half a part where a
reader looks. Parts are named ``part-NNNNNN-<uuid8>.parquet`` and read back in that order.

One policy for a damaged part (truncated, bit-flipped, not Parquet, wrong columns): it never
stops the others from loading. It is skipped with a one-line
:class:`~evodisc.files.DamagedFileWarning` naming it; the directory's owner (``owner=True``) also
moves it to ``quarantine/`` so that the next reader does not trip on it, and a plain reader
changes nothing.
"""

from __future__ import annotations

import re
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from evodisc.files import DamagedFileWarning, atomic_write, fsync_directory

#: Where the owner moves damaged parts (a subdirectory of the store).
QUARANTINE = "quarantine"

_PART = re.compile(r"part-(\d{6})-[0-9a-f]{8}\.parquet")


class PartStore:
    """The parts in ``path`` (created by the first write).

    ``what`` names a part in messages (``"log part"``); ``warning`` is the class of the warning
    for a damaged one (a :class:`~evodisc.files.DamagedFileWarning`); ``owner`` says whether this
    process may move files (the one writer of a campaign log, any user of a fitness cache)."""

    def __init__(
        self,
        path: str | Path,
        what: str,
        owner: bool,
        warning: type[DamagedFileWarning] = DamagedFileWarning,
    ):
        self.path = Path(path)
        self.what = what
        self.owner = owner
        self.warning = warning

    def parts(self) -> list[Path]:
        """The parts, in order."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if _PART.fullmatch(p.name))

    def write(self, table: pa.Table, number: int | None = None) -> Path:
        """``table`` as a new durable part numbered ``number`` (default: after the last)."""
        if not self.path.is_dir():
            self.path.mkdir(parents=True, exist_ok=True)
            fsync_directory(self.path.parent)
        if number is None:
            number = max((part_number(p) for p in self.parts()), default=-1) + 1
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        part = self.path / f"part-{number:06d}-{uuid.uuid4().hex[:8]}.parquet"
        atomic_write(part, memoryview(sink.getvalue()))
        return part

    def read(
        self,
        load: Callable[[Path], pa.Table],
    ) -> Iterator[tuple[Path, pa.Table]]:
        """Each readable part and what ``load(part)`` made of it, in order; a part that ``load``
        cannot read (any exception) is skipped with a warning, and set aside by the owner."""
        for part in self.parts():
            try:
                table = load(part)
            except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, …; JSON ValueError
                self._set_aside(part, exc)
                continue
            yield part, table

    def delete(self, parts: list[Path]) -> None:
        """Remove ``parts`` durably."""
        for part in parts:
            part.unlink(missing_ok=True)
        fsync_directory(self.path)

    def _set_aside(self, part: Path, exc: Exception) -> None:
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        where = "left in place (read-only)"
        if self.owner:
            target = self.path / QUARANTINE / part.name
            try:
                target.parent.mkdir(exist_ok=True)
                part.replace(target)
                fsync_directory(self.path)
                where = f"moved to {target}"
            except OSError as move_error:
                where = f"could not move it aside: {move_error.strerror}"
        warnings.warn(
            f"{part}: unreadable {self.what} skipped, {where} ({type(exc).__name__}: {reason})",
            self.warning,
            stacklevel=4,
        )


def part_number(part: Path) -> int:
    """The number in a part's name."""
    return int(part.name.split("-")[1])
