"""A tiny campaign file and checks of a campaign log, shared by the campaign tests."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from evodisc.app.store import CandidateLog

TRAINED = ("ok", "diverged", "error")

CAMPAIGN = """
[campaign]
seed = {seed}

[space]
max_statements = 10

[evolution]
population = 8
tournament = 3
warm_start = ["adamw", "sgd"]
random_programs = 2
max_retries = {max_retries}

[budget]
evaluations = {evaluations}

[fitness]
tasks = ["ill_conditioned"]
lrs = [1e-2, 0.1]
seeds = [0]                 # cheap: the tests check the machinery, not the statistics
baseline_seeds = [0, 1]
checkpoints = 4

[resources]
evaluators = {evaluators}
batch_size = 4
in_flight = {in_flight}
"""


def write_campaign(
    tmp_path: Path,
    evaluations=40,
    evaluators=0,
    seed=0,
    name="tiny",
    in_flight=8,
    max_retries=10,
) -> Path:
    """``max_retries = 0`` keeps children equal to their parent (the cache answers them)."""
    path = tmp_path / f"{name}.toml"
    fields = dict(
        evaluations=evaluations,
        evaluators=evaluators,
        seed=seed,
        in_flight=in_flight,
        max_retries=max_retries,
    )
    path.write_text(CAMPAIGN.format(**fields))
    return path


def log_rows(directory: Path) -> list[dict]:
    return CandidateLog(directory).read().to_pylist()


def assert_complete(rows: list[dict], count: int) -> None:
    """Every candidate id 0..count-1 logged exactly once, and no function trained twice."""
    assert sorted(r["id"] for r in rows) == list(range(count))
    trained = [r["functional_hash"] for r in rows if not r["cache_hit"] and r["status"] in TRAINED]
    assert len(trained) == len(set(trained))


def assert_kept(before: list[dict], after: list[dict]) -> None:
    """Every row logged before (ids need not be contiguous: results arrive out of order) is in
    the log after, unchanged."""
    by_id = {r["id"]: r for r in after}
    assert [by_id.get(r["id"]) for r in before] == before


def start_driver(path: Path, out: Path, rows: int, **popen) -> subprocess.Popen:
    """``evodisc run PATH --out OUT --no-ray`` in a child process, returned once ``rows``
    candidates are logged (the caller kills or interrupts it); fails if it finished first."""
    command = [sys.executable, "-m", "evodisc.app.cli", "run", str(path), "--out", str(out)]
    driver = subprocess.Popen([*command, "--no-ray", "--quiet"], **popen)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and driver.poll() is None:
        parts = list((out / "log").glob("part-*.parquet")) if (out / "log").exists() else []
        if sum(pq.read_metadata(p).num_rows for p in parts) >= rows:
            break
        time.sleep(0.05)
    assert driver.poll() is None, "the campaign finished before it could be stopped"
    return driver
