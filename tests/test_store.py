"""The campaign directory: a crash-safe candidate log, atomic checkpoints, no overwritten runs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from evodisc.app.cli import main
from evodisc.campaign.store import (
    LOG_SCHEMA,
    CandidateLog,
    StoreError,
    open_directory,
    read_campaign,
    read_checkpoint,
    write_campaign,
    write_checkpoint,
)
from evodisc.files import DamagedFileWarning
from evodisc.fitness_cache import SCHEMA, FitnessCache
from evodisc.parts import QUARANTINE, PartStore


def row(i: int, **extra) -> dict:
    return {"id": i, "mutation": "random", "status": "ok", "fitness": i / 10, **extra}


def logged_ids(log: CandidateLog) -> list[int]:
    return log.read().column("id").to_pylist()


def test_rows_become_durable_parts_read_back_by_id(tmp_path):
    log = CandidateLog(tmp_path, writer=True)
    assert log.flush() is None and log.read().schema == LOG_SCHEMA
    log.append([row(2, parent_id=0, cache_hit=True, details='{"tasks":{}}'), row(0)])
    assert logged_ids(log) == []  # buffered until flushed
    first = log.flush()
    log.append([row(1)])
    second = log.flush()
    assert first.parent == second.parent == tmp_path / "log" and first.name < second.name
    table = log.read()
    assert table.schema == LOG_SCHEMA and table.column("id").to_pylist() == [0, 1, 2]
    assert table.column("parent_id").to_pylist() == [None, None, 0]
    assert table.column("time").null_count == 0  # filled in when appended
    assert logged_ids(CandidateLog(tmp_path)) == [0, 1, 2]  # a new process sees the same


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"id": 0, "fitnes": 1.0}], "log row: unknown column(s) fitnes"),
        ([{"parent_id": 3}], "log row: every row needs an id"),
        ([{"id": 0, "fitness": "high"}], "log row: "),
    ],
)
def test_bad_rows_are_refused_when_appended(tmp_path, rows, message):
    log = CandidateLog(tmp_path, writer=True)
    with pytest.raises(StoreError) as error:
        log.append(rows)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert log.flush() is None


def test_duplicate_ids_keep_the_first_row(tmp_path):
    log = CandidateLog(tmp_path, writer=True)
    for fitness in (0.5, 0.9):
        log.append([row(0, fitness=fitness)])
        log.flush()
    assert log.read().column("fitness").to_pylist() == [0.5]


def test_compaction_merges_parts_and_survives_a_crash_halfway(tmp_path, monkeypatch):
    log = CandidateLog(tmp_path, writer=True)
    for i in range(4):
        log.append([row(i)])
        log.flush()
    merged = log.compact()
    assert sorted(log.path.glob("*.parquet")) == [merged]
    assert logged_ids(log) == [0, 1, 2, 3] and log.compact() is None
    log.append([row(4)])
    log.flush()
    monkeypatch.setattr(PartStore, "delete", lambda self, parts: None)  # crash: sources stay
    log.compact()
    assert len(list(log.path.glob("*.parquet"))) == 3
    assert logged_ids(log) == [0, 1, 2, 3, 4]
    monkeypatch.undo()
    reopened = CandidateLog(tmp_path, writer=True)  # the writer finishes the compaction
    assert len(list(reopened.path.glob("*.parquet"))) == 1
    assert pq.read_table(reopened.path).column("id").to_pylist() == [0, 1, 2, 3, 4]
    reopened.append([row(5)])
    assert reopened.flush().name > merged.name  # numbering continues after the merged part


def test_other_readers_open_the_log_as_it_is(tmp_path):
    log = CandidateLog(tmp_path, writer=True)
    for i in range(3):
        log.append([row(i)])
        log.flush()
    (log.path / ".part-000009-0000abcd.parquet.tmp").write_bytes(b"half a part")
    assert sorted(pq.read_table(log.path).column("id").to_pylist()) == [0, 1, 2]
    assert ds.dataset(log.path).count_rows() == 3
    assert sorted(pandas.read_parquet(log.path)["id"]) == [0, 1, 2]


def test_opening_removes_temporaries_a_crash_left(tmp_path):
    (tmp_path / "log").mkdir()
    stale = tmp_path / "log" / ".part-000000-0000abcd.parquet.tmp"
    stale.write_bytes(b"half a part")
    assert logged_ids(CandidateLog(tmp_path, writer=True)) == [] and not stale.exists()


def test_an_unreadable_part_is_skipped_by_a_reader_and_set_aside_by_the_writer(tmp_path):
    log = CandidateLog(tmp_path, writer=True)
    for i in range(3):
        log.append([row(i)])
        part = log.flush()
    part.write_bytes(b"not parquet")  # the last of three parts
    with pytest.warns(DamagedFileWarning, match=r"part-000002-.*: unreadable log part skipped, "
                      "left in place") as caught:  # fmt: skip
        assert logged_ids(CandidateLog(tmp_path)) == [0, 1]
    assert len(caught) == 1 and part.exists()  # a reader changes nothing
    with pytest.warns(
        DamagedFileWarning, match=r"unreadable log part skipped, moved to .*quarantine"
    ):
        writer = CandidateLog(tmp_path, writer=True)  # as --resume opens it
    assert not part.exists() and (tmp_path / "log" / QUARANTINE / part.name).exists()
    writer.append([row(2)])
    writer.flush()
    assert logged_ids(writer) == [0, 1, 2]


def test_the_log_feeds_a_fitness_cache(tmp_path):
    assert all(LOG_SCHEMA.field(name).type == SCHEMA.field(name).type for name in SCHEMA.names)
    log = CandidateLog(tmp_path, writer=True)
    log.append([row(0, functional_hash="h", config_key="k", details="{}")])
    log.flush()
    cache = FitnessCache()
    assert cache.ingest(log.read()) == 1 and cache.get("h", "k").fitness == 0.0


CHILD = """
import sys
from evodisc.campaign.store import CandidateLog, write_checkpoint
log = CandidateLog(sys.argv[1], writer=True)
i = log.read().num_rows
while True:
    log.append([{"id": i, "status": "ok", "fitness": 0.5, "program": "x" * 1000}])
    log.flush()
    write_checkpoint(sys.argv[1], {"told": i + 1, "padding": "x" * 100_000})
    i += 1
    if i % 5 == 0:
        log.compact()
"""


def test_kill_9_loses_nothing_flushed(tmp_path):
    last = 0
    for delay in (0.05, 0.25, 0.6):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)])
        while read_count(tmp_path) <= last:  # wait for the child to log something new
            assert child.poll() is None, "the writer died before it was killed"
            time.sleep(0.05)
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        for part in (tmp_path / "log").glob("*.parquet"):
            pq.read_table(part)  # every visible part is whole
        ids = logged_ids(CandidateLog(tmp_path, writer=True))  # as --resume opens it
        assert ids == list(range(len(ids))) and len(ids) > last
        assert pq.read_table(tmp_path / "log").num_rows == len(ids)  # leftovers were removed
        assert read_checkpoint(tmp_path)["told"] in (len(ids), len(ids) - 1)
        last = len(ids)


def read_count(directory: Path) -> int:
    try:
        return read_checkpoint(directory)["told"]
    except StoreError:
        return 0


def test_checkpoint_is_replaced_whole(tmp_path, monkeypatch):
    write_checkpoint(tmp_path, {"generation": 1})
    assert read_checkpoint(tmp_path) == {"generation": 1}

    def crash(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StoreError, match="checkpoint.json: cannot write .No space left"):
        write_checkpoint(tmp_path, {"generation": 2})
    monkeypatch.undo()
    assert read_checkpoint(tmp_path) == {"generation": 1}  # the old one, whole
    assert not list(tmp_path.glob(".*.tmp"))
    write_checkpoint(tmp_path, {"generation": 2})
    assert read_checkpoint(tmp_path) == {"generation": 2}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "checkpoint.json: no checkpoint"),
        ('{"generation": ', "checkpoint.json: unreadable checkpoint"),
        ("[1, 2]", "checkpoint.json: unreadable checkpoint (not a JSON object)"),
        (b"\xff\xfe", "checkpoint.json: unreadable checkpoint"),
    ],
)
def test_a_missing_or_corrupt_checkpoint_is_an_error(tmp_path, content, message):
    path = tmp_path / "checkpoint.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(StoreError) as error:
        read_checkpoint(tmp_path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_campaign_file_round_trips(tmp_path):
    write_campaign(tmp_path, {"evolution": {"population": 8}}, "abc")
    assert read_campaign(tmp_path) == {
        "campaign": {"evolution": {"population": 8}},
        "digest": "abc",
    }
    (tmp_path / "campaign.json").write_text(json.dumps({"campaign": {}}))
    with pytest.raises(StoreError, match="unreadable campaign file"):
        read_campaign(tmp_path)


def prepared(out: Path, resume: bool) -> Path:
    with open_directory(out, resume) as directory:
        return directory


def test_a_previous_run_is_never_overwritten(tmp_path):
    out = tmp_path / "runs" / "a"
    assert prepared(out, resume=False) == out and out.is_dir()
    assert prepared(out, resume=False) == out  # empty (but for its lock file): fine
    (out / "campaign.json").write_text("{}")
    with pytest.raises(StoreError, match="is not empty: use --resume to continue it, or another"):
        prepared(out, resume=False)
    with pytest.raises(StoreError, match="cannot be resumed: it has no checkpoint.json"):
        prepared(out, resume=True)
    write_checkpoint(out, {})
    (out / ".checkpoint.json.tmp").write_text("{")
    assert prepared(out, resume=True) == out
    assert not (out / ".checkpoint.json.tmp").exists()


def test_resume_needs_a_campaign_directory(tmp_path):
    with pytest.raises(StoreError, match="does not exist: there is no campaign to resume"):
        prepared(tmp_path / "nothing", resume=True)
    assert not (tmp_path / "nothing").exists()
    with pytest.raises(StoreError, match="cannot be resumed: it has no campaign.json"):
        prepared(tmp_path, resume=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="is not a directory"):
        prepared(tmp_path / "file", resume=False)


def test_one_writer_per_directory(tmp_path, capsys):
    """A second run into a directory in use is refused at once, whatever it was asked, and
    the directory is free again when the first ends."""
    out = tmp_path / "run"
    with open_directory(out, resume=False):
        for resume in (False, True):
            with pytest.raises(
                StoreError, match=rf"in use by another evodisc run \(pid {os.getpid()} on .* since "
            ):
                prepared(out, resume)
        campaign = tmp_path / "c.toml"
        campaign.write_text("[budget]\nevaluations = 2\n")
        assert main(["run", str(campaign), "--out", str(out), "--no-ray"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "in use by another evodisc run" in err
    assert prepared(out, resume=False) == out  # released


def test_a_reader_never_touches_the_writers_files(tmp_path):
    """`evodisc report` on a running campaign opens the log while the writer is writing: a
    reader must not delete the writer's temporary part (a test watching a campaign did)."""
    writer = CandidateLog(tmp_path, writer=True)
    writer.append([row(0)])
    writer.flush()
    in_progress = writer.path / ".part-000001-0000abcd.parquet.tmp"
    in_progress.write_bytes(b"being written")
    assert logged_ids(CandidateLog(tmp_path)) == [0]
    assert in_progress.exists()
    assert logged_ids(CandidateLog(tmp_path / "no-such-campaign")) == []
