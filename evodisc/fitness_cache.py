"""The fitness cache: fitness results keyed by functional hash and fitness configuration.

The search consults it before every evaluation (:class:`evodisc.campaign.screen.Screen`); a
program whose functional hash was already evaluated under the same fitness configuration is not
evaluated again. Entries persist as a :class:`evodisc.parts.PartStore` (one Parquet part per
:meth:`FitnessCache.flush`, written whole). :data:`SCHEMA` is the column layout, so a campaign
log that stores the same columns can feed a cache with :meth:`FitnessCache.ingest`.

A damaged part (truncated, bit-flipped, not Parquet, wrong columns) never stops a cache from
loading: it is moved to ``quarantine/`` with a one-line :class:`CacheWarning` naming it, and the
other parts load. Temporary parts left by a crashed writer are removed once they are an hour old
(a younger one may be a concurrent writer's: several processes may share a cache).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from evodisc.files import DamagedFileWarning, remove_temporaries
from evodisc.parts import QUARANTINE, PartStore

SCHEMA = pa.schema(
    [
        ("functional_hash", pa.string()),
        ("config_key", pa.string()),
        ("fitness", pa.float64()),
        ("status", pa.string()),
        ("details", pa.string()),  # canonical JSON
        ("uncertainty", pa.float64()),  # NaN/null: unknown
    ]
)
#: Columns a table may lack (parts written before they existed): read as null.
OPTIONAL_COLUMNS = frozenset({"uncertainty"})

#: A temporary part older than this (seconds) was left by a writer that died: it is removed.
STALE_TEMPORARY_SECONDS = 3600.0

__all__ = ["QUARANTINE", "SCHEMA", "CacheWarning", "CachedFitness", "FitnessCache"]


class CacheWarning(DamagedFileWarning):
    """A damaged cache file was skipped (and moved aside, or computed again); the message
    names it."""


def _canonical_json(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a JSON-able value of finite numbers: {exc}") from None


def fitness_config_key(config: Mapping[str, Any]) -> str:
    """A stable 32-hex-digit digest of a JSON-able fitness configuration (key order ignored)."""
    if not isinstance(config, Mapping):
        raise ValueError("the fitness configuration must be a mapping")
    text = _canonical_json(dict(config))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class CachedFitness:
    """One evaluation result: fitness, status (``ok``, ``invalid``, ``diverged``, …) and JSON-able
    details (per-task scores, best learning rate, the reason a program is invalid, …), and the
    fitness's uncertainty (:mod:`fitness.uncertainty`; None when unknown or not applicable).

    The cache stores what it is given; the fitness screen gives invalid programs the worst
    fitness (0, :data:`evodisc.screen.WORST_FITNESS`)."""

    fitness: float
    status: str = "ok"
    details: Mapping[str, Any] = field(default_factory=dict)
    uncertainty: float | None = None


class FitnessCache:
    """Fitness results by ``(functional_hash, config_key)``, with hit/miss counters.

    ``path`` (optional) is a directory of Parquet parts: existing parts are loaded now, and
    :meth:`flush` appends the entries added since the last flush as a new part.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self._entries: dict[tuple[str, str], CachedFitness] = {}
        self._pending: list[tuple[str, str]] = []
        self.hits = 0
        self.misses = 0
        self._parts = None
        if self.path is not None:
            if self.path.exists() and not self.path.is_dir():
                raise ValueError(f"{self.path}: the fitness cache must be a directory")
            self._parts = PartStore(
                self.path, "fitness-cache part", owner=True, warning=CacheWarning
            )
            remove_temporaries(self.path, older_than=STALE_TEMPORARY_SECONDS)
            for _, entries in self._parts.read(self._load_part):
                for key, value in entries._entries.items():
                    self._entries.setdefault(key, value)

    @staticmethod
    def _load_part(part: Path) -> FitnessCache:
        """One part's entries, all or nothing (every row parsed before any is added)."""
        entries = FitnessCache()
        entries.ingest(pq.read_table(part))
        return entries

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._entries

    def contains(self, functional_hash: str, config_key: str) -> bool:
        """Whether a result is cached (does not count as a hit or a miss)."""
        return (functional_hash, config_key) in self._entries

    def get(self, functional_hash: str, config_key: str) -> CachedFitness | None:
        """The cached result, or ``None``; counts a hit or a miss."""
        result = self._entries.get((functional_hash, config_key))
        if result is None:
            self.misses += 1
        else:
            self.hits += 1
        return result

    def put(self, functional_hash: str, config_key: str, result: CachedFitness) -> None:
        """Store ``result`` (the first result for a key wins; later ones are ignored)."""
        key = (functional_hash, config_key)
        if key in self._entries:
            return
        _canonical_json(dict(result.details))  # fail now, not at flush time
        self._entries[key] = result
        self._pending.append(key)

    @property
    def hit_rate(self) -> float:
        """Hits over lookups (0 before any lookup)."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0

    def to_table(self, keys: Iterable[tuple[str, str]] | None = None) -> pa.Table:
        """Entries (all, or ``keys``) as a table with :data:`SCHEMA`."""
        keys = list(self._entries) if keys is None else list(keys)
        rows = [self._entries[k] for k in keys]
        columns = {
            "functional_hash": [k[0] for k in keys],
            "config_key": [k[1] for k in keys],
            "fitness": [float(r.fitness) for r in rows],
            "status": [r.status for r in rows],
            "details": [_canonical_json(dict(r.details)) for r in rows],
            "uncertainty": [r.uncertainty for r in rows],
        }
        return pa.table(columns, schema=SCHEMA)

    def ingest(self, table: pa.Table) -> int:
        """Add the rows of a table holding :data:`SCHEMA`'s columns (extra columns are ignored,
        rows without a hash or config key are skipped); returns the number of new entries."""
        present = set(table.column_names)
        missing = [n for n in SCHEMA.names if n not in present and n not in OPTIONAL_COLUMNS]
        if missing:
            raise ValueError(f"table lacks the fitness-cache column(s): {', '.join(missing)}")
        columns = {
            name: table.column(name).to_pylist() if name in present else [None] * table.num_rows
            for name in SCHEMA.names
        }
        added = 0
        for h, c, fit, status, details, uncertainty in zip(*columns.values(), strict=True):
            if h is None or c is None or (h, c) in self._entries:
                continue
            self._entries[(h, c)] = CachedFitness(
                math.nan if fit is None else float(fit),
                status or "ok",
                json.loads(details or "{}"),
                uncertainty,
            )
            added += 1
        return added

    def flush(self) -> Path | None:
        """Append entries added since the last flush as a new Parquet part; returns its path."""
        if self._parts is None:
            raise ValueError("this fitness cache has no path to flush to")
        if not self._pending:
            return None
        part = self._parts.write(self.to_table(self._pending))
        self._pending = []
        return part
