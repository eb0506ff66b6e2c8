"""Faults of issue 20 that no other test covers (the table "Faults and what happens" in
docs/campaigns.md names the test of every case): a task that hangs in-process, a lost Ray head,
Ray's noise, a run that reaches its budget with batches in flight.

Every wait is for a state the test can see (a gate that holds, a process that ended); the
time limits are hang detectors only."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys

import pytest
from campaign_helpers import (
    Gate,
    assert_complete,
    assert_kept,
    log_rows,
    start_driver,
    write_campaign,
    write_hung_task,
)
from test_controller import campaign as fake_campaign

from evodisc.app.cli import main
from evodisc.campaign.evaluators import (
    RAY_HANDLED,
    Batch,
    EvaluatorError,
    InProcessPool,
    _quiet,
)
from evodisc.campaign.fake_pool import FakePool
from evodisc.campaign.headwatch import HeadWatch
from evodisc.campaign.run import run_campaign
from fitness.config import SuiteConfig
from fitness.messages import Baseline, Request
from search_spaces.zoo import load_known

# ------------------------------------------------------------- case 2: a hung task in-process


def test_a_task_whose_data_hangs_is_one_line_naming_it_before_anything_runs(tmp_path, capsys):
    hung = write_hung_task(tmp_path)
    path = write_campaign(tmp_path, task=hung)
    path.write_text(path.read_text() + "timeout_seconds = 1\n")  # in [resources], the last
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-ray", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"the fitness cache key, which loads {hung} (data() and model()), took longer " in err
    assert "than 1 s: does a task hang?" in err and "cannot be stopped" in err


def test_a_task_whose_factory_hangs_is_one_line_naming_it(tmp_path, capsys):
    hung = tmp_path / "hung_factory.py"
    hung.write_text("import time\n\n\ndef factory():\n    time.sleep(3600)\n")
    path = write_campaign(tmp_path, task=f"{hung}:factory")
    path.write_text(path.read_text() + "timeout_seconds = 1\n")  # in [resources], the last
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-ray", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"fitness.tasks: loading {hung}:factory took longer than 1 s" in err
    assert "does its factory hang?" in err


def test_a_task_whose_data_hangs_in_the_baselines_in_process_is_one_line_naming_it(tmp_path):
    hung = write_hung_task(tmp_path)
    config = SuiteConfig(tasks=(hung,), lrs=(0.1,), seeds=(0,))
    with pytest.raises(EvaluatorError, match=rf"^the baseline on {hung} took longer than 1 s "):
        InProcessPool("cpu").baselines(config, deadline=1.0)


def test_an_in_process_batch_past_its_deadline_is_one_line_naming_its_tasks(tmp_path):
    """As on --resume, where the baselines are stored and the first batch loads the task."""
    hung = write_hung_task(tmp_path)
    config = SuiteConfig(tasks=(hung,), lrs=(0.1,), seeds=(0,))
    request = Request((load_known("sgd"),), config, {hung: Baseline(0.05, 0.01, float("nan"), 1)})
    pool = InProcessPool("cpu")
    pool.deadline = 1.0
    with pytest.raises(EvaluatorError, match=rf"^a batch on {hung} took longer than 1 s "):
        pool.submit(Batch(0, [0], request))


# ----------------------------------------------------------- case 5: the Ray head is lost


def test_a_head_watch_notices_a_closed_port():
    listener = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    watch = HeadWatch(address, grace=0.2, step=0.05)
    try:
        listener.close()
        assert watch.lost.wait(60)  # a hang detector: it is lost 0.2 s after the close
    finally:
        watch.close()


@pytest.mark.xdist_group("ray")
def test_a_lost_head_is_one_line_with_the_resume_command_and_loses_nothing(tmp_path, monkeypatch):
    """A driver on a loopback Ray head: an evaluator killed mid-batch (Ray's worker-died
    lines stay silent), then the head killed; the driver ends on one evodisc line naming the
    address and the --resume command; --resume on a new head finishes with nothing lost."""
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the drivers speak this process's heads'
    out = tmp_path / "run"
    gate = Gate(tmp_path, out, rows=8)
    path = write_campaign(tmp_path, evaluations=40, evaluators=2, task=gate.task)
    head = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        address = head.address
        driver = start_driver(
            path, out, gate, ("--address", address), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        os.kill(gate.holder(), signal.SIGKILL)  # an evaluator dies in the middle of a batch
        head.remove_node(head.head_node, allow_graceful=False)  # and then the whole head
        stdout, stderr = driver.communicate(timeout=300)  # a hang detector
    finally:
        head.shutdown()
    assert driver.returncode == 2
    assert stderr.decode().splitlines() == [
        f"evodisc: error: lost the Ray head at {address}: no answer for 15 s; what finished is "
        f"logged. Once a Ray head runs again: evodisc run {path} --out {out} --resume "
        f"--address {address}"
    ]
    assert not any(line in stdout.decode() for line in RAY_HANDLED)
    before = log_rows(out)
    assert len(before) >= 8  # the rows logged before the gate held are there
    gate.release()
    head = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        command = [sys.executable, "-m", "evodisc.app.cli", "run", str(path), "--out", str(out)]
        again = [*command, "--resume", "--address", head.address, "--quiet"]
        assert subprocess.run(again, timeout=600).returncode == 0  # a hang detector
    finally:
        head.shutdown()
    after = log_rows(out)
    assert_complete(after, 40)
    assert_kept(before, after)


# ------------------------------------------------------------------- case 12: Ray's noise


def test_ray_notices_and_the_errors_evodisc_handles_are_silent_others_show(capsys):
    import ray

    _quiet(ray)
    _quiet(ray)  # once is enough: a second call wraps nothing twice
    show = ray._private.worker.print_to_stdstream
    others = ["Warning: a resource request cannot be scheduled", "Some actor failed to start"]
    for handled, other in zip(RAY_HANDLED, others, strict=True):
        show({"lines": [f"{handled} …", other], "pid": "raylet", "is_err": False}, False)
    out = capsys.readouterr().out
    assert all(other in out for other in others) and not any(h in out for h in RAY_HANDLED)
    logger, shown = logging.getLogger("ray._private.worker"), Shown()
    logger.addHandler(shown)  # after the logger's filters: sees what Ray would print
    try:
        logger.warning("SIGTERM handler is not set because current thread is not the main thread.")
        logger.warning("a real warning")
    finally:
        logger.removeHandler(shown)
    assert shown.messages == ["a real warning"]


class Shown(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# ------------------------------------------------- case 13: the budget with batches in flight


class HeldPool(FakePool):
    """Instant fake evaluators whose batches come back only once the run said it finishes
    them (or after many polls, so that a broken run fails instead of hanging)."""

    def __init__(self, size: int):
        super().__init__(size)
        self.hold, self.polls = True, 0

    def poll(self, timeout: float):
        self.polls += 1
        return [] if self.hold and self.polls < 100_000 else super().poll(timeout)


class Notes:
    """A progress display that records the run's notes and releases ``pool`` at the first."""

    def __init__(self, pool: HeldPool):
        self.pool, self.notes = pool, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.pool.hold = False

    def update(self, stats, force: bool = False) -> None:
        pass


def test_at_its_budget_the_run_says_it_finishes_the_batches_in_flight(tmp_path):
    pool = HeldPool(4)
    notes = Notes(pool)
    summary = run_campaign(fake_campaign(12, 4, 16), tmp_path / "run", pool=pool, progress=notes)
    (note,) = notes.notes
    said = re.fullmatch(
        r"budget reached \(12 evaluations\): finishing (\d+) batch\(es\) in flight \((\d+) "
        r"candidates\); Ctrl-C stops now, and --resume trains them",
        note,
    )
    assert said and 1 <= int(said[1]) <= int(said[2]) <= 12
    assert_complete(log_rows(tmp_path / "run"), 12)
    assert summary.candidates == 12 and summary.overhead >= 0
