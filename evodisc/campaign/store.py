"""The campaign directory (DESIGN.md §2.3), crash-safe: a ``kill -9`` at any moment loses at most
the results not yet flushed, and never leaves a partial file where a reader looks.

``DIR/campaign.json``
    the resolved campaign (``Campaign.to_dict()``) and its digest.
``DIR/checkpoint.json``
    the latest population checkpoint (replaced whole; a missing or unreadable one is an error).
``DIR/log/part-NNNNNN-<uuid8>.parquet``
    the candidate log: append-only parts, merged now and then by :meth:`CandidateLog.compact`.
    ``pyarrow.parquet.read_table(DIR / "log")``, ``pandas.read_parquet`` and duckdb
    (``read_parquet('DIR/log/*.parquet')``) read it as it is.

Every file is written whole (:func:`evodisc.files.atomic_write`: a hidden temporary, fsynced,
renamed over its name, the directory fsynced); the log is an :class:`evodisc.parts.PartStore`,
like the fitness cache: a damaged part is skipped with a one-line warning, and the campaign's
writer (``--resume``) moves it to ``log/quarantine/``. A compacted part names its sources in its
metadata: if a crash leaves them beside it, the next writer deletes them, and
:meth:`CandidateLog.read` drops duplicate ids meanwhile.

Log columns, one row per candidate (:data:`LOG_SCHEMA`):

- ``id`` (int64): campaign-wide candidate id, contiguous from 0.
- ``parent_id`` (int64, null): the program it was mutated from; null for seeds and random ones.
- ``mutation`` (string): ``seed:<name>``, ``random``, ``restart:<id>``, ``migration:<id>``,
  ``crossover:<id>+<mutation>`` (genome space) or the mutation's name.
- ``island`` (int32): the island it lives on.
- ``program`` (string): the program text.
- ``program_json`` (string): the program's canonical JSON (IR).
- ``genome`` (string, null): in a genome space, the genome the program was written from, as
  canonical JSON (:func:`search_spaces.genome.genome_to_json`: the term weights by name, β₁,
  β₂, ε, weight decay and the flags); null in the program space, and in logs written before.
- ``functional_hash`` (string): identity of its behaviour; equal hashes are evaluated once.
- ``identity`` (string, null): its rule identity, when the campaign merges scale variants
  (``[evolution] merge_scale_variants``): equal for ``u`` and ``c·u`` (``c > 0``) when ``u`` is
  linear in ``lr`` (:func:`evodisc.hashing.rule_identity`), else the functional hash; equal
  identities are evaluated once. Null for invalid candidates (a limit holds for the program,
  not its rule) and in logs written without it.
- ``scale`` (float64, null): the factor that goes with ``identity`` (1 where the identity is
  the functional hash): the program at ``lr`` trains as the rule's unit form at
  ``lr · scale``; a cache hit's ``best_lr`` is the trained variant's mapped by the ratio.
- ``config_key`` (string): the fitness configuration's cache key.
- ``cache_hit`` (bool): the fitness came from the cache, not from an evaluation.
- ``status`` (string): ``ok``, ``invalid``, ``diverged``, ``error``, ``timeout`` or
  ``rejected`` (stopped by the funnel's screening stage: its fitness is the worst, 0).
- ``fitness`` (float64): the aggregate of the tasks' ratios (``[fitness] aggregate``, by default
  their soft minimum; 1.0 = tuned AdamW; higher is better; :mod:`fitness.normalise`).
- ``uncertainty`` (float64, null): the repeatability limit of ``fitness`` (from the seeds'
  spread: a re-evaluation with other seeds differs by less 95 % of the time)
  (:mod:`fitness.uncertainty`); null when unknown or not trained (invalid, error).
- ``details`` (string): canonical JSON: per task its metric, ratio, best learning rate, grid
  edge, ``log_se`` and ``log_se_dof`` (standard error of the ratio's log, its degrees of
  freedom), ``stopped`` (runs stopped early, with early stopping); the reason when invalid or
  failed; ``screen``: the screening stage's result when the candidate was screened
  (``fitness``, ``status``, ``uncertainty``, ``details``).
- ``statements`` (int32): statements in the program.
- ``state_slots`` (int32): state slots it declares.
- ``memory`` (int32): state tensors it keeps per parameter.
- ``eval_seconds`` (float64): seconds its evaluation took (its share of a batch).
- ``worker`` (string): the evaluator that scored it.
- ``node`` (string): the machine that evaluator ran on.
- ``wall_time`` (float64): seconds since the campaign started when the result arrived.
- ``time`` (timestamp, UTC): when the row was logged.
- ``stage`` (string): the funnel stage whose result the row's status and fitness are:
  ``screen`` (rejected, or invalid/diverged/failed there) or ``full``; null in logs written
  before the funnel (all ``full``).
- ``screen_fitness`` (float64, null): its fitness in the screening stage; null when not screened.

``functional_hash``, ``config_key``, ``fitness``, ``status``, ``details`` and ``uncertainty`` are
:data:`evodisc.fitness_cache.SCHEMA`'s columns: ``FitnessCache().ingest(log.read())`` rebuilds a
cache from a log (:meth:`evodisc.screen.Screen.ingest` keyed by rule identity).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import socket
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from evodisc.files import atomic_write, remove_temporaries
from evodisc.fitness_cache import CachedFitness
from evodisc.parts import PartStore, part_number

CAMPAIGN_FILE = "campaign.json"
CHECKPOINT_FILE = "checkpoint.json"
LOG_DIR = "log"
#: Held (flock) by the one process writing the directory; holds its pid.
LOCK_FILE = ".lock"

LOG_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        ("parent_id", pa.int64()),
        ("mutation", pa.string()),
        ("island", pa.int32()),
        ("program", pa.string()),
        ("program_json", pa.string()),
        ("genome", pa.string()),
        ("functional_hash", pa.string()),
        ("identity", pa.string()),
        ("scale", pa.float64()),
        ("config_key", pa.string()),
        ("cache_hit", pa.bool_()),
        ("status", pa.string()),
        ("fitness", pa.float64()),
        ("uncertainty", pa.float64()),
        ("details", pa.string()),
        ("statements", pa.int32()),
        ("state_slots", pa.int32()),
        ("memory", pa.int32()),
        ("eval_seconds", pa.float64()),
        ("worker", pa.string()),
        ("node", pa.string()),
        ("wall_time", pa.float64()),
        ("time", pa.timestamp("us", tz="UTC")),
        ("stage", pa.string()),
        ("screen_fitness", pa.float64()),
    ]
)

_SOURCES = b"evodisc.compacted_from"  # a compacted part's metadata key: its sources' names


class StoreError(ValueError):
    """A campaign directory that cannot be used as asked; the message is one line."""


class CandidateLog:
    """The candidate log of the campaign directory ``directory`` (parts in ``directory/log``).

    Rows are buffered by :meth:`append` and made durable by :meth:`flush`. Only the campaign's
    one writer opens it with ``writer=True``, which removes temporary files a crash left and
    finishes an interrupted compaction; a reader (a report, a script, a test watching a running
    campaign) changes nothing, so it can never delete a part the writer is still writing.
    """

    def __init__(self, directory: str | Path, writer: bool = False):
        self.path = Path(directory) / LOG_DIR
        self._parts = PartStore(self.path, "log part", owner=writer)
        self._pending: list[pa.Table] = []
        if writer:
            self.path.mkdir(parents=True, exist_ok=True)
            remove_temporaries(self.path)
            self._finish_compaction()

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Buffer rows (column name → value; missing columns are null, ``time`` defaults to
        now). Unknown columns, a missing id or a wrong type are a :class:`StoreError` now."""
        rows = [dict(row) for row in rows]
        now = datetime.now(UTC)
        for row in rows:
            unknown = sorted(set(row) - set(LOG_SCHEMA.names))
            if unknown:
                raise StoreError(f"log row: unknown column(s) {', '.join(unknown)}")
            if row.get("id") is None:
                raise StoreError("log row: every row needs an id")
            row.setdefault("time", now)
        try:
            self._pending.append(pa.Table.from_pylist(rows, schema=LOG_SCHEMA))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise StoreError(f"log row: {exc}") from None

    def flush(self) -> Path | None:
        """Write the buffered rows as a new durable part; its path, or None if none were."""
        if not self._pending:
            return None
        part = _durably(lambda: self._parts.write(pa.concat_tables(self._pending)), self.path)
        self._pending = []
        return part

    def read(self) -> pa.Table:
        """Every flushed row of the readable parts, one per id (the first logged), sorted by
        id."""
        return self._merge([table for _, table in self._parts.read(_read_part)])

    def compact(self) -> Path | None:
        """Flush, then merge all parts into one (crash-safe); the new part, or None if there
        was at most one part."""
        self.flush()
        loaded = list(self._parts.read(_read_part))
        if len(loaded) < 2:
            return None
        parts = [part for part, _ in loaded]
        table = self._merge([table for _, table in loaded]).replace_schema_metadata(
            {_SOURCES: json.dumps([part.name for part in parts])}
        )
        merged = _durably(lambda: self._parts.write(table, part_number(parts[-1])), self.path)
        self._parts.delete(parts)
        return merged

    @staticmethod
    def _merge(tables: list[pa.Table]) -> pa.Table:
        if not tables:
            return LOG_SCHEMA.empty_table()
        table = pa.concat_tables(tables)
        _, first = np.unique(table.column("id").to_numpy(), return_index=True)
        return table.take(first)

    def _finish_compaction(self) -> None:
        """Delete the sources a compacted part lists (a crash may have left them)."""
        merged = set()
        for _, schema in self._parts.read(pq.read_schema):
            merged.update(json.loads((schema.metadata or {}).get(_SOURCES, b"[]")))
        leftovers = [part for part in self._parts.parts() if part.name in merged]
        if leftovers:
            self._parts.delete(leftovers)


def _read_part(part: Path) -> pa.Table:
    return pq.read_table(part, schema=LOG_SCHEMA).replace_schema_metadata(None)


def screen_document(result: CachedFitness) -> dict[str, Any]:
    """A screening stage's result as the log keeps it (``details["screen"]``)."""
    return {
        "fitness": result.fitness if math.isfinite(result.fitness) else None,
        "status": result.status,
        "uncertainty": result.uncertainty,
        "details": dict(result.details),
    }


def screen_rows(table: pa.Table, config_key: str) -> pa.Table:
    """The screening stage's results that the rows of ``table`` (a log) keep in their details,
    as log rows under ``config_key`` (to rebuild the screen's cache on resume)."""
    columns = ("functional_hash", "identity", "scale", "details")
    names = (*columns, "config_key", "fitness", "status", "uncertainty")
    rows = []
    for row in table.select(list(columns)).to_pylist():
        document = json.loads(row["details"] or "{}").get("screen")
        if isinstance(document, dict):
            rows.append(
                {
                    **row,
                    "config_key": config_key,
                    "fitness": document.get("fitness"),
                    "status": document.get("status") or "ok",
                    "uncertainty": document.get("uncertainty"),
                    "details": json.dumps(document.get("details") or {}),
                }
            )
    return pa.Table.from_pylist(rows, schema=pa.schema([LOG_SCHEMA.field(n) for n in names]))


# Checkpoint and campaign file -------------------------------------------------------------------


def write_checkpoint(directory: str | Path, state: Mapping[str, Any]) -> None:
    """Replace ``DIR/checkpoint.json`` with ``state`` (JSON-able) atomically; compact JSON, as
    it is written every round (json's C encoder is ~3x faster without indentation)."""
    text = json.dumps(state, separators=(",", ":"))
    _write_durably(Path(directory) / CHECKPOINT_FILE, (text + "\n").encode())


def read_checkpoint(directory: str | Path) -> dict:
    """The checkpointed state; :class:`StoreError` if it is missing or unreadable."""
    return read_json(Path(directory) / CHECKPOINT_FILE, "checkpoint")


def write_campaign(directory: str | Path, campaign: Mapping[str, Any], digest: str) -> None:
    """Write ``DIR/campaign.json``: ``{"campaign": the resolved campaign, "digest": …}``."""
    write_json(Path(directory) / CAMPAIGN_FILE, {"campaign": campaign, "digest": digest})


def read_campaign(directory: str | Path) -> dict:
    """``{"campaign": …, "digest": …}`` as :func:`write_campaign` wrote them."""
    path = Path(directory) / CAMPAIGN_FILE
    document = read_json(path, "campaign file")
    if not isinstance(document.get("campaign"), dict) or not isinstance(
        document.get("digest"), str
    ):
        raise StoreError(f"{path}: unreadable campaign file (no campaign and digest)")
    return document


def write_json(path: str | Path, document: Any) -> None:
    """Replace the file ``path`` with ``document`` as (indented) JSON, atomically."""
    _write_durably(Path(path), (json.dumps(document, indent=1) + "\n").encode())


@contextlib.contextmanager
def open_directory(out: str | Path, resume: bool) -> Iterator[Path]:
    """The campaign directory ``out``, held by this process alone while the ``with`` lasts
    (an exclusive lock on ``DIR/.lock``: a second ``evodisc run`` into it is refused at once,
    whatever it was asked), and ready to run into: new or empty unless ``resume``, in which case
    it must hold a campaign file and a checkpoint (leftover temporaries are removed). A previous
    run is never overwritten."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out} is not a directory")
    if resume and not out.exists():
        raise StoreError(f"{out} does not exist: there is no campaign to resume")
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        if not resume:
            if any(p.name != LOCK_FILE for p in out.iterdir()):
                raise StoreError(
                    f"{out} is not empty: use --resume to continue it, or another --out"
                )
        else:
            for name in (CAMPAIGN_FILE, CHECKPOINT_FILE):
                if not (out / name).is_file():
                    raise StoreError(f"{out} cannot be resumed: it has no {name}")
            remove_temporaries(out)
        yield out


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """An exclusive, non-blocking lock on ``directory/.lock``, released when the process ends
    in any way (the kernel drops an flock with its file descriptor, kill -9 included)."""
    path = directory / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"{path}: cannot open the lock file ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise StoreError(
                f"{directory} is in use by another evodisc run (pid {holder}); wait for it to "
                "end, or run into another --out"
            ) from None
        os.ftruncate(fd, 0)
        started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.pwrite(fd, f"{os.getpid()} on {socket.gethostname()} since {started}".encode(), 0)
        yield
    finally:
        os.close(fd)


# Durable files ----------------------------------------------------------------------------------


def _durably(write, path: Path):
    """``write()``'s result; an :class:`OSError` (a full disk, …) is a :class:`StoreError`."""
    try:
        return write()
    except OSError as exc:
        raise StoreError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one whole."""
    _durably(lambda: atomic_write(path, data), path)


def read_json(path: Path, what: str) -> dict:
    """The JSON object in ``path``; a missing or damaged file is a one-line :class:`StoreError`
    naming ``what`` it should hold."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(f"{path}: no {what}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path}: unreadable {what} ({exc})") from None
    if not isinstance(document, dict):
        raise StoreError(f"{path}: unreadable {what} (not a JSON object)")
    return document
