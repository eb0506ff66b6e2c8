"""Reading and writing files safely: whole-or-nothing writes, bounded reads of regular files.

- :func:`atomic_write` writes to a temporary name in the same directory, fsyncs it, renames it
  over the target and fsyncs the directory: a reader (or a crash, or a full disk) never sees half
  a file, and a failed write leaves the old file as it was.
- :func:`read_text` reads a *regular* file of at most ``max_bytes``: a FIFO, a device
  (``/dev/zero``) or a directory is refused before anything is read, so it can neither hang nor
  exhaust memory.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
import uuid
from pathlib import Path


class DamagedFileWarning(UserWarning):
    """A damaged file (a cache or log part, a cached baseline) was skipped, set aside or
    computed again; the message is one line naming it. ``evodisc`` prints it as
    ``evodisc: warning: …``."""


class FileReadError(OSError):
    """A file that cannot be read as asked; ``reason`` is a short phrase (no file name)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def fsync_directory(directory: str | Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (and Windows) cannot fsync a directory
    finally:
        os.close(fd)


def temporary_name(path: str | Path) -> Path:
    """A hidden, unique temporary name beside ``path`` (``.NAME.<random>.tmp``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def remove_temporaries(directory: str | Path, older_than: float = 0.0) -> None:
    """Remove the temporaries (:func:`temporary_name`) that a crashed writer left in
    ``directory``: those older than ``older_than`` seconds (a younger one may be another
    writer's, still at work)."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    now = time.time()
    for temporary in directory.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if now - temporary.stat().st_mtime >= older_than:
                temporary.unlink()


def commit(temporary: str | Path, path: str | Path) -> None:
    """fsync ``temporary``, rename it to ``path`` and fsync the directory."""
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_directory(Path(path).parent)


def atomic_write(path: str | Path, data: str | bytes | memoryview) -> None:
    """Write ``data`` to ``path`` whole or not at all (see the module docstring); on failure the
    temporary file is removed and the :class:`OSError` propagates."""
    path = Path(path)
    temporary = temporary_name(path)
    try:
        with open(temporary, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        commit(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def read_bytes(path: str | Path, max_bytes: int) -> bytes:
    """The content of the regular file ``path``; :class:`FileReadError` for anything else (a
    directory, a FIFO, a device), for a file larger than ``max_bytes``, or an OS error."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (no effect on regular files).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise FileReadError(exc.strerror or str(exc)) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise FileReadError("is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise FileReadError("not a regular file")
        if info.st_size > max_bytes:
            raise FileReadError(f"larger than {max_bytes:,} bytes")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew while we read
        raise FileReadError(f"larger than {max_bytes:,} bytes")
    return data


def read_text(path: str | Path, max_bytes: int) -> str:
    """:func:`read_bytes` decoded as UTF-8 (:class:`FileReadError` if it is not UTF-8)."""
    try:
        return read_bytes(path, max_bytes).decode()
    except UnicodeDecodeError:
        raise FileReadError("not a UTF-8 text file") from None
