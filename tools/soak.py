"""Soak test (issue 20): a real campaign under random faults for N minutes, checked after each.

Runs the quickstart's cheap tasks (``experiments/quickstart.toml`` with an unbounded budget) as
``evodisc run --address`` against a Ray head on loopback that this script owns
(``ray.cluster_utils.Cluster``, its own ports), with its own fitness cache. At random moments it
injects one of three faults:

- **evaluator**: SIGKILL of an evaluator's worker process (the campaign goes on: its batch is
  sent again to a replacement);
- **driver**: ``kill -9`` of ``evodisc run``, then ``--resume``;
- **head**: the Ray head killed (every process of its node); the driver must end on one
  ``evodisc: error:`` line (no traceback), then a new head starts and ``--resume --address``
  continues on it.

Whenever the driver is down, and at the end, the log is checked: no id logged twice, every id
the checkpoint has handed out is logged or outstanding (ids contiguous), no function trained
twice per configuration key, and every row seen before is still there, unchanged (rows lost).
At the end the driver gets Ctrl-C, and a last ``--resume --force`` with the budget set to the
candidates handed out finishes them: the log must then hold exactly ids ``0..n-1``.

    nice -n 10 timeout 2400 python tools/soak.py --minutes 20 --out /tmp/soak

Prints each fault as it goes, then: faults injected (by kind), faults survived, rows lost.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from evodisc.campaign.store import CHECKPOINT_FILE, CandidateLog

ROOT = Path(__file__).resolve().parent.parent
#: Statuses of trained candidates (a function trained twice shows as two such rows).
TRAINED = ("ok", "diverged", "error", "rejected")
#: Seconds a driver may take to end after its head is killed (it promises about 25).
HEAD_LOSS_LIMIT = 90.0
#: Seconds any other wait of the soak may take before it counts as a hang.
HANG_LIMIT = 600.0


def campaign_text(evaluations: int) -> str:
    """The quickstart with an evaluation budget of ``evaluations`` and no wall-clock budget."""
    text = (ROOT / "experiments" / "quickstart.toml").read_text()
    text = re.sub(r"(?m)^evaluations = \d+", f"evaluations = {evaluations}", text)
    return re.sub(r"(?m)^wall_seconds = .*\n", "", text)


def row_key(row: dict) -> str:
    """A row as canonical text (NaN compares equal to itself)."""
    return json.dumps(row, default=str, sort_keys=True)


def log_problems(
    directory: Path, seen: dict[int, str], complete: bool = False
) -> tuple[list[str], int]:
    """What is wrong with the campaign log in ``directory`` (empty: nothing) and how many of
    the rows ``seen`` before are lost or changed (``seen`` is updated with the rows read now);
    ``complete``: every id handed out must be logged."""
    state = json.loads((directory / CHECKPOINT_FILE).read_text())["evolution"]
    rows = CandidateLog(directory).read().to_pylist()
    ids = [r["id"] for r in rows]
    problems = []
    if len(ids) != len(set(ids)):
        problems.append(f"{len(ids) - len(set(ids))} id(s) logged twice")
    outstanding = set() if complete else {c["id"] for c in state["outstanding"]}
    missing = set(range(state["next_id"])) - set(ids) - outstanding
    if missing:
        problems.append(f"{len(missing)} id(s) neither logged nor outstanding: ids not contiguous")
    trained = [
        (r["identity"] or r["functional_hash"], r["config_key"])
        for r in rows
        if not r["cache_hit"] and r["status"] in TRAINED and "attempts)" not in r["details"]
    ]
    if len(trained) != len(set(trained)):
        problems.append(f"{len(trained) - len(set(trained))} function(s) trained twice")
    now = {r["id"]: row_key(r) for r in rows}
    lost = [i for i, key in seen.items() if now.get(i) != key]
    if lost:
        problems.append(f"{len(lost)} row(s) lost or changed")
    seen.update(now)
    return problems, len(lost)


def evaluator_pids(raylet: int) -> list[int]:
    """Process ids of the evaluators (``ray::Evaluator…`` workers) started by ``raylet``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit():
                continue
            stat = (proc / "stat").read_text()
            parent = int(stat.rpartition(")")[2].split()[1])
            command = (proc / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
        if parent == raylet and command.startswith(b"ray::Evaluator"):
            pids.append(int(proc.name))
    return pids


class Soak:
    """One campaign directory, one Ray head at a time, one driver at a time."""

    def __init__(self, out: Path, seed: int):
        self.out = out
        self.run_dir = out / "run"
        self.campaign = out / "soak.toml"
        self.campaign.write_text(campaign_text(1_000_000))
        os.environ["EVODISC_CACHE"] = str(out / "cache")  # trains, not answered by a warm cache
        self.random = random.Random(seed)
        self.seen: dict[int, str] = {}
        self.injected: Counter[str] = Counter()
        self.survived: Counter[str] = Counter()
        self.problems: list[str] = []
        self.lost = 0
        self.drivers = 0
        self.cluster = None
        self.driver: subprocess.Popen | None = None

    # ------------------------------------------------------------------ head and driver

    def start_head(self) -> None:
        from ray.cluster_utils import Cluster

        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})

    def kill_head(self) -> None:
        self.cluster.remove_node(self.cluster.head_node, allow_graceful=False)

    def raylet(self) -> int:
        return self.cluster.head_node.all_processes["raylet"][0].process.pid

    def start_driver(self, *extra: str) -> None:
        self.drivers += 1
        command = [sys.executable, "-m", "evodisc.app.cli", "run", str(self.campaign)]
        command += ["--out", str(self.run_dir), "--address", self.cluster.address, "--quiet"]
        stderr = open(self.out / f"driver-{self.drivers}.err", "w")  # noqa: SIM115 (the child's)
        self.driver = subprocess.Popen(
            [*command, *extra],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        stderr.close()

    def driver_errors(self) -> str:
        return (self.out / f"driver-{self.drivers}.err").read_text()

    def wait_driver(self, limit: float) -> int | None:
        """The driver's exit status once it ended, or None after ``limit`` seconds."""
        try:
            return self.driver.wait(limit)
        except subprocess.TimeoutExpired:
            return None

    def ensure_running(self) -> None:
        """A driver that ended on its own (it should not) is a problem; resume it."""
        if self.driver.poll() is not None:
            tail = self.driver_errors().strip().splitlines()[-1:] or ["nothing on stderr"]
            self.problems.append(f"driver {self.drivers} ended by itself: {tail[0]}")
            self.check("driver ended")
            self.start_driver("--resume")

    # -------------------------------------------------------------------------- faults

    def fault(self) -> None:
        kind = self.random.choices(["evaluator", "driver", "head"], weights=[4, 3, 2])[0]
        ok = getattr(self, f"fault_{kind}")()
        if ok is None:
            return  # nothing to inject right now (no evaluator running)
        self.injected[kind] += 1
        self.survived[kind] += ok
        total = sum(self.injected.values())
        print(
            f"{time.strftime('%H:%M:%S')} fault {total}: {kind} {'survived' if ok else 'FAILED'}"
            f"  rows {len(self.seen)}",
            flush=True,
        )

    def fault_evaluator(self) -> bool | None:
        pids = evaluator_pids(self.raylet())
        if not pids:
            return None
        os.kill(self.random.choice(pids), signal.SIGKILL)
        before = self.logged()
        deadline = time.monotonic() + HANG_LIMIT
        while self.driver.poll() is None and time.monotonic() < deadline:
            if self.logged() > before:  # the campaign goes on (the log: at each check)
                return True
            time.sleep(0.5)
        self.problems.append(f"no row logged after an evaluator was killed ({before} rows)")
        return False

    def logged(self) -> int:
        return CandidateLog(self.run_dir).read().num_rows

    def fault_driver(self) -> bool:
        self.driver.kill()
        self.driver.wait()
        ok = self.check("kill -9 of the driver")
        self.start_driver("--resume")
        return ok

    def fault_head(self) -> bool:
        self.kill_head()
        status = self.wait_driver(HEAD_LOSS_LIMIT)
        errors = self.driver_errors()
        ok = status == 2 and "evodisc: error:" in errors and "Traceback" not in errors
        if not ok:
            self.problems.append(
                f"head killed: driver status {status}, stderr tail {errors[-300:]!r}"
            )
            if status is None:
                self.driver.kill()
                self.driver.wait()
        ok = self.check("Ray head killed") and ok
        self.start_head()
        self.start_driver("--resume")
        return ok

    def check(self, after: str, complete: bool = False) -> bool:
        problems, lost = log_problems(self.run_dir, self.seen, complete)
        self.lost += lost
        self.problems += [f"after {after}: {p}" for p in problems]
        return not problems

    # ---------------------------------------------------------------------------- run

    def run(self, minutes: float, mean_gap: float) -> int:
        self.start_head()
        self.start_driver()
        deadline = time.monotonic() + HANG_LIMIT
        while not (self.run_dir / CHECKPOINT_FILE).is_file():  # something to resume
            assert self.driver.poll() is None, self.driver_errors()
            assert time.monotonic() < deadline, "the first driver never wrote its checkpoint"
            time.sleep(0.2)
        end = time.monotonic() + 60 * minutes
        while time.monotonic() < end:
            time.sleep(self.random.uniform(0.2, 2 * mean_gap))
            self.ensure_running()
            self.fault()
        return self.finish()

    def finish(self) -> int:
        """Ctrl-C, then finish the candidates handed out; print the numbers."""
        self.driver.send_signal(signal.SIGINT)
        if self.wait_driver(HANG_LIMIT) is None:
            self.problems.append("the driver did not end after Ctrl-C")
            self.driver.kill()
            self.driver.wait()
        self.check("Ctrl-C")
        state = json.loads((self.run_dir / CHECKPOINT_FILE).read_text())["evolution"]
        self.campaign.write_text(campaign_text(max(1, state["next_id"])))
        self.start_driver("--resume", "--force")
        if self.wait_driver(HANG_LIMIT) != 0:
            self.problems.append(f"the last run failed: {self.driver_errors()[-300:]!r}")
        self.check("the last run", complete=True)
        self.cluster.shutdown()
        print(f"faults injected: {sum(self.injected.values())} ({dict(self.injected)})")
        print(f"faults survived: {sum(self.survived.values())} ({dict(self.survived)})")
        print(f"rows logged: {len(self.seen)}; rows lost: {self.lost}; drivers: {self.drivers}")
        for problem in self.problems:
            print(f"problem: {problem}")
        return 1 if self.problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="how long to inject faults")
    parser.add_argument("--out", type=Path, required=True, help="a new directory for the soak")
    parser.add_argument("--gap", type=float, default=15.0, help="mean seconds between faults")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault schedule")
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} is not empty")
    args.out.mkdir(parents=True, exist_ok=True)
    # the head listens on loopback only (shared/notes/ray.md), and speaks the drivers' auth
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if Path("~/.ray/auth_token").expanduser().exists() or os.environ.get("RAY_AUTH_TOKEN"):
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    return Soak(args.out, args.seed).run(args.minutes, args.gap)


if __name__ == "__main__":
    sys.exit(main())
