"""The fitness cache (:mod:`evodisc.fitness_cache`): keys, lookups through the screen,
Parquet persistence."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evodisc import (
    CachedFitness,
    FitnessCache,
    check_candidate,
    fitness_config_key,
    functional_hash,
    parse_program,
)
from evodisc.edit import rename
from evodisc.program import Assign, Call, Program, Var
from evodisc.screen import WORST_FITNESS, Screen, Screened, Verdict
from search_spaces.zoo import load_known

_LION = load_known("lion")
#: Lion three ways: equal functional hashes, so one fitness evaluation serves all three.
LION_SPELLINGS = (
    _LION,
    rename(_LION, {"m": "exp_avg"}),
    Program(_LION.params, (Assign("junk", Call("exp", (Var("g"),))), *_LION.body), _LION.returns),
)


def test_config_key_is_stable_and_order_free():
    a = fitness_config_key({"tasks": ["mlp", "lm"], "steps": 200, "lrs": [1e-3, 3e-3]})
    b = fitness_config_key({"lrs": [1e-3, 3e-3], "steps": 200, "tasks": ["mlp", "lm"]})
    assert a == b and len(a) == 32
    assert a != fitness_config_key({"tasks": ["mlp", "lm"], "steps": 201, "lrs": [1e-3, 3e-3]})
    for bad in ({"x": math.nan}, {"x": object()}, ["not", "a", "mapping"]):
        with pytest.raises(ValueError):
            fitness_config_key(bad)


def test_the_screen_consults_the_cache_and_counts():
    """Equivalent spellings of Lion: the first is new (trained once), an equivalent one while it
    trains waits for its result, and once resolved every spelling is a cache hit."""
    cache = FitnessCache()
    key = fitness_config_key({"task": "quadratic"})
    screen = Screen(cache, key)
    first, second, third = (check_candidate(p) for p in LION_SPELLINGS)
    assert screen.screen(0, first).verdict is Verdict.NEW
    assert screen.screen(1, second).verdict is Verdict.WAITING
    result = CachedFitness(0.75, "ok", {"best_lr": 0.001})
    assert screen.resolve(first, result) == [(1, result)]
    assert screen.screen(2, third) == Screened(Verdict.CACHED, result)
    assert cache.hits == 1 and cache.misses == 2 and cache.hit_rate == pytest.approx(1 / 3)
    lion = functional_hash(load_known("lion"))
    assert cache.contains(lion, key) and (lion, key) in cache
    assert not cache.contains(lion, fitness_config_key({"task": "other"}))
    assert cache.get(functional_hash(load_known("adamw")), key) is None and cache.misses == 3
    invalid = check_candidate(parse_program("def train(w, g, lr):\n    return lr * w\n"))
    screened = screen.screen(3, invalid)
    assert screened.verdict is Verdict.INVALID and screened.result.fitness == WORST_FITNESS
    assert cache.get(invalid.functional_hash, key).status == "invalid"  # never screened again


def test_cache_persists_as_parquet_parts_and_reloads(tmp_path):
    directory = tmp_path / "cache"
    key = fitness_config_key({"task": "mlp"})
    cache = FitnessCache(directory)
    cache.put("a" * 32, key, CachedFitness(1.5, "ok", {"scores": {"mlp": 1.5}, "best_lr": 3e-4}))
    cache.put("b" * 32, key, CachedFitness(math.nan, "diverged"))
    first = cache.flush()
    assert cache.flush() is None  # nothing new
    cache.put("c" * 32, key, CachedFitness(-2.0))
    second = cache.flush()
    assert first != second and first.exists() and second.exists()
    (directory / ".part-crashed.parquet.tmp").write_bytes(b"half a file")

    reloaded = FitnessCache(directory)
    assert len(reloaded) == 3
    assert reloaded.get("a" * 32, key).details == {"scores": {"mlp": 1.5}, "best_lr": 3e-4}
    diverged = reloaded.get("b" * 32, key)
    assert math.isnan(diverged.fitness) and diverged.status == "diverged"
    assert reloaded.get("c" * 32, key).fitness == -2.0
    table = pq.read_table(first)
    assert table.column_names == [
        "functional_hash",
        "config_key",
        "fitness",
        "status",
        "details",
        "uncertainty",
    ]
    assert json.loads(table.column("details")[0].as_py())["best_lr"] == 3e-4


def test_cache_ingests_a_campaign_log_table():
    key = fitness_config_key({"task": "mlp"})
    log = pa.table(
        {
            "id": [1, 2, 3],
            "functional_hash": ["x" * 32, None, "y" * 32],
            "config_key": [key, key, key],
            "fitness": [0.5, 0.1, None],
            "status": ["ok", "ok", "error"],
            "details": ["{}", "{}", None],
        }
    )
    cache = FitnessCache()
    assert cache.ingest(log) == 2
    assert cache.get("x" * 32, key).fitness == 0.5
    assert math.isnan(cache.get("y" * 32, key).fitness)
    with pytest.raises(ValueError, match="fitness_cache|fitness-cache"):
        cache.ingest(pa.table({"functional_hash": ["z"]}))
