"""Issue 11, case 4: a damaged cache never stops everything. Unreadable fitness-cache parts are
skipped and quarantined with a one-line warning naming them; a corrupt baseline is recomputed;
leftover temporary parts are cleaned up; a rename is followed by an fsync of the directory."""

from __future__ import annotations

import json
import os
import stat
import time
import warnings

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from evodisc import CachedFitness, FitnessCache
from evodisc.fitness_cache import QUARANTINE, STALE_TEMPORARY_SECONDS, CacheWarning
from fitness.baselines import tuned_baseline
from fitness.config import SuiteConfig
from fitness.tasks import load_task

torch.set_num_threads(1)

KEY = "k" * 32


def good_part(directory, first: int, count: int = 20):
    cache = FitnessCache(directory)
    for i in range(first, first + count):
        cache.put(f"{i:032x}", KEY, CachedFitness(i / 10, "ok", {"tasks": {"t": {"ratio": i}}}))
    return cache.flush()


def damage(data: bytes, how: str) -> bytes:
    if how == "truncated":
        return data[: len(data) // 2]
    if how == "bit-flipped":  # the column chunks: the compressed data no longer decodes
        return data[:100] + bytes(b ^ 0xFF for b in data[100:400]) + data[400:]
    return b"this is not a Parquet file\n"


@pytest.mark.parametrize("how", ["truncated", "bit-flipped", "not Parquet"])
def test_a_damaged_part_is_quarantined_and_the_others_load(tmp_path, how):
    directory = tmp_path / "cache"
    good_part(directory, 0)
    bad = good_part(directory, 100)
    good_part(directory, 200)
    bad.write_bytes(damage(bad.read_bytes(), how))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = FitnessCache(directory)
    assert len(cache) == 40 and cache.get(f"{0:032x}", KEY).fitness == 0.0
    assert cache.get(f"{100:032x}", KEY) is None and cache.get(f"{200:032x}", KEY) is not None
    (warning,) = [w for w in caught if issubclass(w.category, CacheWarning)]
    text = str(warning.message)
    assert text.startswith(f"{bad}: unreadable fitness-cache part skipped") and "\n" not in text
    assert not bad.exists() and (directory / QUARANTINE / bad.name).exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(FitnessCache(directory)) == 40  # quarantined: not tried (nor warned) again


def test_a_part_with_foreign_columns_or_bad_json_is_quarantined(tmp_path):
    directory = tmp_path / "cache"
    good_part(directory, 0)
    foreign, bad_json = (directory / f"part-00000{n}-0000000{n}.parquet" for n in (1, 2))
    pq.write_table(pa.table({"x": [1, 2]}), foreign)
    rows = {"functional_hash": ["a"], "config_key": [KEY], "fitness": [1.0]}
    rows |= {"status": ["ok"], "details": ["{not json"]}
    pq.write_table(pa.table(rows), bad_json)
    (directory / "notes.parquet").write_bytes(b"not a part: not ours to read or move")
    with pytest.warns(CacheWarning) as caught:
        cache = FitnessCache(directory)
    assert len(cache) == 20 and len(caught) == 2
    assert sorted(p.name for p in (directory / QUARANTINE).iterdir()) == [
        foreign.name,
        bad_json.name,
    ]
    assert (directory / "notes.parquet").exists()


def test_stale_temporary_parts_are_removed_and_fresh_ones_kept(tmp_path):
    directory = tmp_path / "cache"
    good_part(directory, 0)
    stale, fresh = directory / ".part-dead.parquet.tmp", directory / ".part-live.parquet.tmp"
    for path in (stale, fresh):
        path.write_bytes(b"half a part")
    old = time.time() - STALE_TEMPORARY_SECONDS - 60
    os.utime(stale, (old, old))
    assert len(FitnessCache(directory)) == 20
    assert not stale.exists() and fresh.exists()  # a younger one may be a concurrent writer's


def test_flush_fsyncs_the_directory_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    good_part(tmp_path / "cache", 0)
    assert synced[-1] is True and False in synced  # the part, then its directory


def test_a_corrupt_baseline_file_is_recomputed(fresh_cache, monkeypatch):
    config = SuiteConfig(tasks=("ill_conditioned",), lrs=(1e-2, 1e-1))
    task = load_task("ill_conditioned")
    baseline = tuned_baseline(task, config)
    (path,) = (fresh_cache / "baselines").glob("*.json")
    for damaged in ('{"metric": 0.1', "\x00\xff garbage", json.dumps({"metric": "x"})):
        path.write_bytes(damaged.encode("latin-1"))
        with pytest.warns(CacheWarning, match="damaged baseline cache file"):
            assert tuned_baseline(task, config) == baseline
        assert json.loads(path.read_text())["metric"] == baseline.metric  # rewritten whole
