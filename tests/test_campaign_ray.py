"""Campaigns on real Ray: a 3-node cluster on loopback (``ray.cluster_utils.Cluster``), an
evaluator process killed mid-run, a batch past its deadline, evaluators that may share a node,
and a bad ``--address``.

All tests of this module share one cluster (starting Ray costs seconds) and run in one xdist
worker (``xdist_group``)."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import ray
from campaign_helpers import Gate, assert_complete, log_rows, write_campaign, write_hung_task
from ray.cluster_utils import Cluster

from evodisc.app.cli import main
from evodisc.campaign.config import check_tasks, load_campaign
from evodisc.campaign.evaluators import NAMESPACE, Batch, EvaluatorError, RayPool
from evodisc.campaign.run import run_campaign
from fitness.config import SuiteConfig
from fitness.messages import Baseline, Request
from search_spaces.zoo import load_known

pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def cluster(shared_cache_dir):
    os.environ["EVODISC_CACHE"] = str(shared_cache_dir)  # before the workers start
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_a_campaign_spreads_over_the_nodes_of_a_cluster(cluster, tmp_path):
    assert len({n["NodeID"] for n in ray.nodes() if n["Alive"]}) == 3
    campaign = check_tasks(load_campaign(write_campaign(tmp_path, 60, evaluators=3, in_flight=16)))
    run_campaign(campaign, tmp_path / "run", address=cluster.address)
    rows = log_rows(tmp_path / "run")
    assert_complete(rows, 60)
    trained = [r for r in rows if r["node"]]
    assert len({r["node"] for r in trained}) > 1  # evaluators ran on more than one node
    assert len({r["worker"] for r in trained}) == 3


def test_an_evaluator_killed_mid_run_loses_nothing(cluster, tmp_path):
    out = tmp_path / "run"
    gate = Gate(tmp_path, out, rows=8)  # the evaluators hold once 8 candidates are logged
    path = write_campaign(tmp_path, evaluations=160, evaluators=2, task=gate.task)
    campaign = check_tasks(load_campaign(path))
    failures = []

    def run() -> None:
        try:
            run_campaign(campaign, out)
        except Exception as exc:  # reported by the assertion below
            failures.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    gate.wait_held(runner.is_alive)
    os.kill(gate.holder(), signal.SIGKILL)  # an evaluator crashes in the middle of a batch
    gate.release()
    runner.join(600)  # a hang detector: the campaign has a few seconds of work left
    assert not runner.is_alive() and not failures, failures
    rows = log_rows(out)
    assert_complete(rows, 160)
    workers = {r["worker"] for r in rows if r["node"]}
    # a replacement (evaluator-<slot>-<generation>-…; 1 and 2 were the first two) took over
    # the crashed batch
    assert any(w.split("-")[2] == "3" for w in workers)


def test_a_batch_past_its_deadline_is_cancelled_and_its_evaluator_replaced(cluster, tmp_path):
    slow = tmp_path / "slow.py"
    slow.write_text(
        "import dataclasses, time\n"
        "from fitness.builtin import ill_conditioned\n"
        "class Slow:\n"
        "    def __init__(self):\n"
        "        self.task = ill_conditioned()\n"
        "    def __getattr__(self, name):\n"
        "        return getattr(self.task, name)\n"
        "    def data(self):\n"
        "        time.sleep(3600)  # a hung evaluation\n"
        "        return self.task.data()\n"
        "def factory():\n"
        "    return Slow()\n"
    )
    pool = RayPool(1, deadline=1.0)
    try:
        first = pool.info[0]["name"]
        config = SuiteConfig(tasks=(f"{slow}:factory",), lrs=(0.1,), seeds=(0,))
        one = Baseline(metric=1.0, best_lr=0.01, cv=math.nan, seeds=1)
        request = Request((load_known("sgd"),), config, {config.tasks[0]: one})
        pool.submit(Batch(0, [0], request))
        done = []
        start = time.monotonic()
        while not done and time.monotonic() - start < 600:  # only bounds a broken test
            done = pool.poll(0.2)
        assert [c.failure for c in done] == ["timeout"]  # long before the hour it would take
        assert pool.info[0]["name"] != first and pool.idle() == 1
    finally:
        pool.close()


def test_an_evaluator_that_dies_before_it_starts_is_started_again(cluster, monkeypatch):
    real, dead = RayPool._start, []

    def start(pool, index, deaths):
        actor = real(pool, index)
        if len(dead) < deaths:  # as Ray does with a worker that a loaded machine starts late
            ray.kill(actor, no_restart=True)
            dead.append(index)
        return actor

    monkeypatch.setattr(RayPool, "_start", lambda pool, index: start(pool, index, 1))
    pool = RayPool(1)
    try:
        assert dead == [0] and pool.info[0]["name"].split("-")[2] == "2"  # the second one
    finally:
        pool.close()
    dead.clear()
    monkeypatch.setattr(RayPool, "_start", lambda pool, index: start(pool, index, 99))
    with pytest.raises(EvaluatorError, match=r"^an evaluator did not answer info \(3 attempts\): "):
        RayPool(1)


def test_an_evaluator_lost_before_the_baselines_is_replaced_and_they_are_computed(cluster):
    pool = RayPool(1)
    try:
        first = pool.info[0]["name"]
        ray.kill(pool.actors[0], no_restart=True)  # gone before it is asked
        config = SuiteConfig(
            tasks=("ill_conditioned",), lrs=(0.1,), seeds=(0,), baseline_seeds=(0,)
        )
        baselines = pool.baselines(config)
        assert set(baselines) == {"ill_conditioned"} and baselines["ill_conditioned"].seeds == 1
        assert pool.info[0]["name"] != first  # a replacement computed them
    finally:
        pool.close()


@pytest.mark.parametrize(
    ("count", "cpus", "gpus"), [(1, 64.0, 0.0), (1, 1.0, 1.0), (4, 1.0, 0.0), (2, 1.5, 0.0)]
)
def test_evaluators_the_cluster_cannot_place_are_one_line_at_once(cluster, count, cpus, gpus):
    """The cluster: three nodes of one CPU, no GPU. Ray would keep such actors pending."""
    with pytest.raises(EvaluatorError, match=r"cannot be placed on this Ray cluster \(its nodes: "):
        RayPool(count, cpus=cpus, gpus=gpus)


def test_a_task_that_hangs_in_the_baselines_is_one_line_naming_it(cluster, tmp_path):
    hung = write_hung_task(tmp_path)
    config = SuiteConfig(tasks=(hung,), lrs=(0.1,), seeds=(0,))
    pool = RayPool(1)
    try:
        first = pool.info[0]["name"]
        with pytest.raises(EvaluatorError, match=rf"^the baseline on {hung} took longer "):
            pool.baselines(config, deadline=5.0)
        assert pool.info[0]["name"] != first  # the hung evaluator was replaced
    finally:
        pool.close()


def test_ray_evaluators_size_their_batches_for_the_others_that_may_share_their_node(cluster):
    pool = RayPool(2)  # CPU evaluators: both may land on one node
    try:
        assert [info["sharing"] for info in pool.info] == [2, 2]
    finally:
        pool.close()


def test_the_embedded_default_starts_its_own_ray_beside_a_running_cluster(cluster, tmp_path):
    """`evodisc run` without --address (a process of its own, as a user starts it) never joins
    a cluster that `ray start` — here this module's — left as the machine's current one: that
    cluster may end under it."""
    ours = {n["NodeID"][:12] for n in ray.nodes()}
    path = write_campaign(tmp_path, evaluations=8, evaluators=1)
    command = [sys.executable, "-m", "evodisc.app.cli", "run", str(path)]
    command += ["--out", str(tmp_path / "run"), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    nodes = {r["node"] for r in log_rows(tmp_path / "run") if r["node"]}
    assert nodes and not nodes & ours


def test_a_bad_address_is_one_line(cluster, tmp_path, capsys):
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray.shutdown()  # the CLI must connect by itself
    try:
        path = write_campaign(tmp_path, evaluators=1)
        assert (
            main(["run", str(path), "--out", str(tmp_path / "x"), "--address", f"127.0.0.1:{port}"])
            == 2
        )
        err = capsys.readouterr().err
        assert err == f"evodisc: error: no Ray cluster at 127.0.0.1:{port} (Connection refused)\n"
        assert {p.name for p in (tmp_path / "x").iterdir()} <= {".lock"}  # nothing written
    finally:
        ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
