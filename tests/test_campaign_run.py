"""Campaigns end to end: `evodisc run` in-process and on real Ray (a 3-node cluster on loopback),
a killed evaluator, a killed driver and `--resume`, and one-line errors."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess

import pytest
from campaign_helpers import (
    Gate,
    assert_complete,
    assert_kept,
    log_rows,
    run_killed,
    start_driver,
    write_campaign,
)

from evodisc.app.cli import main
from evodisc.campaign.config import check_tasks, load_campaign
from evodisc.campaign.evaluators import InProcessPool, evaluators_per_device
from evodisc.campaign.run import run_campaign
from fitness import batch_size
from fitness.batch_size import candidates_per_batch
from fitness.config import SuiteConfig
from fitness.tasks import load_task

# ------------------------------------------------------------------------------- in-process


def test_in_process_campaign_is_deterministic_and_logs_everything(tmp_path):
    campaign = check_tasks(load_campaign(write_campaign(tmp_path, max_retries=0)))
    first = run_campaign(campaign, tmp_path / "a", no_ray=True)
    second = run_campaign(campaign, tmp_path / "b", no_ray=True)
    a, b = log_rows(tmp_path / "a"), log_rows(tmp_path / "b")
    assert_complete(a, 40)
    varying = ("eval_seconds", "wall_time", "time", "worker", "node")
    assert [{k: v for k, v in r.items() if k not in varying} for r in a] == [
        {k: v for k, v in r.items() if k not in varying} for r in b
    ]
    assert first.best == second.best
    assert a[0]["mutation"] == "seed:adamw" and first.best[1] >= a[0]["fitness"]
    statuses = {r["status"] for r in a}
    assert "ok" in statuses and statuses <= {"ok", "invalid", "diverged", "error"}
    # seeds are logged as such, children name their parent and mutation
    assert a[0]["mutation"] == "seed:adamw" and a[0]["parent_id"] is None
    children = [r for r in a if r["parent_id"] is not None]
    assert children and all(r["parent_id"] < r["id"] for r in children)
    # equivalent programs are trained once: every repeat of a function is a cache hit, and
    # repeats happen (the campaign keeps children equal to their parent: max_retries = 0)
    first = {}
    for row in a:
        first.setdefault(row["functional_hash"], row["id"])
    repeats = [r for r in a if first[r["functional_hash"]] != r["id"]]
    assert repeats and all(r["cache_hit"] for r in repeats)
    # every trained fitness is logged with its uncertainty; an untrained one has none
    assert all(0 < r["uncertainty"] < math.inf for r in a if r["status"] == "ok")
    assert all(r["uncertainty"] is None for r in a if r["status"] == "invalid")


def test_killed_driver_resumes_with_nothing_lost_and_nothing_trained_twice(tmp_path):
    out = tmp_path / "run"
    gate = Gate(tmp_path, out, rows=30)
    path = write_campaign(tmp_path, evaluations=120, task=gate.task)
    before = run_killed(path, out, gate)
    assert 30 <= len(before) < 120

    assert main(["run", str(path), "--out", str(out), "--no-ray", "--quiet"]) == 2  # not --resume
    assert main(["run", str(path), "--out", str(out), "--no-ray", "--resume", "--quiet"]) == 0
    after = log_rows(out)
    assert_complete(after, 120)
    assert_kept(before, after)


def test_resuming_with_another_campaign_file_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(write_campaign(tmp_path, 8)), "--out", str(out), "--no-ray"]) == 0
    best = re.search(
        r"best: candidate (\d+), fitness ([\d.]+) ± ([\d.]+) ", capsys.readouterr().out
    )
    assert best, "the best fitness is printed with its uncertainty"
    (row,) = [r for r in log_rows(out) if r["id"] == int(best[1])]
    assert float(best[3]) == pytest.approx(row["uncertainty"], abs=1e-4)
    other = write_campaign(tmp_path, 8, seed=1, name="other")
    capsys.readouterr()
    assert main(["run", str(other), "--out", str(out), "--no-ray", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different campaign file" in err and "--force" in err
    # a campaign of protocol 2 kept only the baselines' metrics: they are computed again
    (out / "baselines.json").write_text(json.dumps({"suite": {}, "metrics": {"x": 1.0}}))
    assert main(["run", str(other), "--out", str(out), "--no-ray", "--resume", "--force"]) == 0
    baselines = json.loads((out / "baselines.json").read_text())["baselines"]
    assert baselines["ill_conditioned"]["seeds"] == 2  # the campaign's baseline_seeds
    # continued with the other file: from now on a plain --resume with it is the same campaign
    assert main(["run", str(other), "--out", str(out), "--no-ray", "--resume"]) == 0


def test_a_campaign_is_its_content_not_its_file_name(tmp_path):
    out, path = tmp_path / "run", write_campaign(tmp_path, 8)
    assert main(["run", str(path), "--out", str(out), "--no-ray", "--quiet"]) == 0
    same = tmp_path / "renamed.toml"
    same.write_bytes(path.read_bytes())  # byte-identical under another name
    assert main(["run", str(same), "--out", str(out), "--no-ray", "--resume", "--quiet"]) == 0
    # a directory written before the identity left the name out holds the digest with the name
    stored = json.loads((out / "campaign.json").read_text())
    campaign = check_tasks(load_campaign(path))
    assert stored["digest"] == campaign.digest() != campaign.digests()[1]
    stored["digest"] = campaign.digests()[1]
    (out / "campaign.json").write_text(json.dumps(stored))
    assert main(["run", str(path), "--out", str(out), "--no-ray", "--resume", "--quiet"]) == 0


def test_a_damaged_checkpoint_is_one_line_and_damaged_baselines_are_computed_again(
    tmp_path, capsys
):
    out, path = tmp_path / "run", write_campaign(tmp_path, 8)
    assert main(["run", str(path), "--out", str(out), "--no-ray", "--quiet"]) == 0
    checkpoint = (out / "checkpoint.json").read_text()
    capsys.readouterr()
    for damaged in ("{}", '{"evolution": {}}', '{"evolution": {"format": 1}, "elapsed": "x"}'):
        (out / "checkpoint.json").write_text(damaged)
        assert main(["run", str(path), "--out", str(out), "--no-ray", "--resume"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "checkpoint.json: unreadable checkpoint (" in err, err
    (out / "checkpoint.json").write_text(checkpoint)
    baselines = (out / "baselines.json").read_text()
    (out / "baselines.json").write_text(baselines[: len(baselines) // 2])  # truncated
    assert main(["run", str(path), "--out", str(out), "--no-ray", "--resume", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "baselines.json: unreadable baselines" in err
    assert json.loads((out / "baselines.json").read_text()) == json.loads(baselines)


def test_bad_campaign_file_and_missing_checkpoint_are_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(write_campaign(tmp_path).read_text().replace("population", "populaton"))
    assert main(["run", str(bad), "--out", str(tmp_path / "x"), "--no-ray"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "populaton" in err and "population" in err
    (tmp_path / "empty").mkdir()
    assert (
        main(["run", str(write_campaign(tmp_path)), "--out", str(tmp_path / "empty"), "--resume"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be resumed" in err


def test_ctrl_c_stops_cleanly_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    gate = Gate(tmp_path, out, rows=20)
    path = write_campaign(tmp_path, evaluations=120, task=gate.task)
    driver = start_driver(
        path, out, gate, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=600)  # a hang detector: it stops at once
    gate.release()
    assert driver.returncode == 2
    assert err.count("\n") == 1 and "interrupted" in err and "--resume" in err
    before = log_rows(out)
    assert 20 <= len(before) < 120
    assert main(["run", str(path), "--out", str(out), "--no-ray", "--resume", "--quiet"]) == 0
    after = log_rows(out)
    assert_complete(after, 120)
    assert_kept(before, after)


def test_ctrl_c_before_the_campaign_started_says_there_is_nothing_to_resume(
    tmp_path, monkeypatch, capsys
):
    def interrupted(*args):
        raise KeyboardInterrupt  # Ctrl-C while the evaluators start

    monkeypatch.setattr("evodisc.campaign.run.open_pool", interrupted)
    path = write_campaign(tmp_path, evaluations=4)
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "evodisc: error: interrupted before the campaign started; nothing to resume: run it again\n"
    )
    monkeypatch.undo()  # run again, as it says: the directory is not in the way
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-ray", "--quiet"]) == 0


def test_zero_batch_size_and_in_flight_are_sized_from_the_evaluators_memory(tmp_path):
    text = write_campaign(tmp_path, evaluations=24).read_text()
    auto = tmp_path / "auto.toml"
    auto.write_text(
        text.replace("batch_size = 4", "batch_size = 0").replace("in_flight = 8", "in_flight = 0")
    )
    campaign = check_tasks(load_campaign(auto))
    pool = InProcessPool("cpu")
    config = campaign.suite_config()
    expected = candidates_per_batch(config.tasks, len(config.lrs), len(config.seeds))
    assert pool.batch_size(config) == expected >= 1
    run_campaign(campaign, tmp_path / "run", no_ray=True)
    assert_complete(log_rows(tmp_path / "run"), 24)


def test_evaluators_sharing_a_device_size_their_batches_for_their_part(monkeypatch):
    config = SuiteConfig(tasks=("markov_lm",), lrs=(1e-3, 1e-2), seeds=(0,))
    per_candidate = batch_size.candidate_bytes(load_task("markov_lm"), 2)
    # a fixed free memory in which two evaluators fit 3 candidates each, one alone more
    free = int(2 * (batch_size.EVAL_BYTES + 3.5 * per_candidate) / batch_size.MEMORY_SHARE)
    monkeypatch.setattr(batch_size, "free_memory", lambda device=None: free)
    alone, shared = InProcessPool("cpu"), InProcessPool("cpu", sharing=2)
    assert (alone.info[0]["sharing"], shared.info[0]["sharing"]) == (1, 2)
    expected = candidates_per_batch(config.tasks, 2, 1, device="cpu", sharing=2, free=free)
    assert shared.batch_size(config) == expected == 3 < alone.batch_size(config)


@pytest.mark.parametrize(
    ("evaluators", "gpus", "sharing"),
    [(4, 0.25, 4), (2, 0.25, 2), (8, 0.3, 3), (10, 0.1, 10), (4, 0.6, 1), (4, 1, 1), (2, 2, 1)]
    + [(3, 0, 3), (1, 0, 1)],  # CPU: all of them may land on one node
)
def test_evaluators_per_device_follows_the_resources(evaluators, gpus, sharing):
    assert evaluators_per_device(evaluators, gpus) == sharing
