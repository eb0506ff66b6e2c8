"""A tiny campaign file, checks of a campaign log, and a task that holds a campaign mid-run,
shared by the campaign tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from evodisc.campaign.fake_pool import FakePool
from evodisc.campaign.store import CandidateLog

TRAINED = ("ok", "diverged", "error", "rejected")

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
tasks = ["{task}"]
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
    task="ill_conditioned",
) -> Path:
    """``max_retries = 0`` keeps children equal to their parent (the cache answers them)."""
    path = tmp_path / f"{name}.toml"
    fields = dict(
        task=task,
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
    """Every candidate id 0..count-1 logged exactly once, and no function (no rule, where the
    log has rule identities) trained twice in one stage (configuration key: a funnel's screen
    and full protocol are two). A batch that crashed on every attempt is not cached (its
    candidates, and those that waited for them, may come again): its rows do not count."""
    assert sorted(r["id"] for r in rows) == list(range(count))
    trained = [
        (r.get("identity") or r["functional_hash"], r["config_key"])
        for r in rows
        if not r["cache_hit"] and r["status"] in TRAINED and "attempts)" not in r["details"]
    ]
    assert len(trained) == len(set(trained))


def assert_kept(before: list[dict], after: list[dict]) -> None:
    """Every row logged before (ids need not be contiguous: results arrive out of order) is in
    the log after, unchanged."""
    by_id = {r["id"]: r for r in after}
    assert [by_id.get(r["id"]) for r in before] == before


HUNG_TASK = """
import time

from fitness.builtin import ill_conditioned


class Hung:
    def __init__(self):
        self.task = ill_conditioned()

    def __getattr__(self, name):
        return getattr(self.task, name)

    def data(self):
        time.sleep(3600)  # never returns while the test runs


def factory():
    return Hung()
"""


def write_hung_task(tmp_path: Path) -> str:
    """The spec of a task (``ill_conditioned``) whose ``data()`` never returns."""
    path = tmp_path / "hung.py"
    path.write_text(HUNG_TASK)
    return f"{path}:factory"


GATED_TASK = """
import os
import time
from pathlib import Path

import pyarrow.parquet as pq

from fitness.builtin import ill_conditioned

LOG, HELD, RELEASE, ROWS = Path({log!r}), Path({held!r}), Path({release!r}), {rows}


def logged() -> int:
    try:
        return sum(pq.read_metadata(part).num_rows for part in LOG.glob("part-*.parquet"))
    except OSError:  # a part replaced by a compaction while it was read: look again later
        return 0


class Gated:
    def __init__(self):
        self.task = ill_conditioned()
        self.checked = 0.0

    def __getattr__(self, name):
        return getattr(self.task, name)

    def loss(self, output, target):
        if not RELEASE.exists() and time.monotonic() - self.checked > 0.05:
            self.checked = time.monotonic()
            if logged() >= ROWS:
                mine = HELD.with_name(f"{{HELD.name}}.{{os.getpid()}}")
                mine.write_text(str(os.getpid()))
                mine.replace(HELD)  # whole: the pid of a process that holds
                while not RELEASE.exists():
                    time.sleep(0.02)
        return self.task.loss(output, target)


def factory():
    return Gated()
"""


class Gate:
    """A task (``ill_conditioned``) whose training steps hold once the campaign in ``out`` has
    logged ``rows`` candidates, until :meth:`release`: a test stops a campaign at a state it
    can see, whatever the machine's speed (a held campaign cannot finish). :meth:`holder` is
    the process id of one that holds (the driver, or a Ray evaluator in the middle of a batch).
    The task file is new for each test, so no cached fitness answers for it."""

    def __init__(self, tmp_path: Path, out: Path, rows: int):
        self.held, self.released = tmp_path / "gate-held", tmp_path / "gate-released"
        self.path = tmp_path / "gated_task.py"
        names = dict(log=str(out / "log"), held=str(self.held), release=str(self.released))
        self.path.write_text(GATED_TASK.format(rows=rows, **names))
        self.task = f"{self.path}:factory"

    def wait_held(self, running: Callable[[], bool], limit: float = 600) -> None:
        """Return once an evaluation holds; fail if the campaign ended (``running()`` false)
        first. ``limit`` only bounds a broken test: a held campaign waits as long as it must."""
        deadline = time.monotonic() + limit
        while not self.held.exists():
            assert running(), "the campaign ended before it reached the gate"
            assert time.monotonic() < deadline, "the campaign never reached the gate"
            time.sleep(0.05)

    def holder(self) -> int:
        return int(self.held.read_text())

    def release(self) -> None:
        self.released.touch()


def start_driver(
    path: Path, out: Path, gate: Gate, options: tuple[str, ...] = ("--no-ray",), **popen
) -> subprocess.Popen:
    """``evodisc run PATH --out OUT --quiet`` with ``options`` in a child process, returned
    once it holds at ``gate`` (the caller kills or interrupts it, then releases the gate).
    Ctrl-C is the default in the child even where the tests run in the background (whose
    shell ignores SIGINT for them, and a Python started with SIGINT ignored never raises
    KeyboardInterrupt)."""
    command = [sys.executable, "-m", "evodisc.app.cli", "run", str(path), "--out", str(out)]
    driver = subprocess.Popen(
        [*command, *options, "--quiet"],
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **popen,
    )
    gate.wait_held(lambda: driver.poll() is None)
    return driver


class Interrupting(FakePool):
    """A fake pool of two evaluators whose ``polls``-th poll is a Ctrl-C."""

    def __init__(self, polls: int, **kwargs):
        super().__init__(2, **kwargs)
        self.polls = polls

    def poll(self, timeout: float):
        self.polls -= 1
        if self.polls == 0:
            raise KeyboardInterrupt
        return super().poll(timeout)


def run_killed(path: Path, out: Path, gate: Gate) -> list[dict]:
    """Run the campaign file ``path`` into ``out`` in a driver, ``kill -9`` it while ``gate``
    holds its training, then release the gate; the rows it had logged."""
    driver = start_driver(path, out, gate, stdout=subprocess.DEVNULL)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    gate.release()
    return log_rows(out)
