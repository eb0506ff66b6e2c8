"""`evodisc report`: a real (tiny) campaign's page, plots and archive, opened in headless
Chromium (``$EVODISC_BROWSER``, else Debian's ``chromium-headless-shell``; the README's test
command, ``tools/test.sh``, installs it when missing)."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess

import pytest
from campaign_helpers import write_campaign

from evodisc.app.cli import main
from evodisc.app.plots import pareto_front
from evodisc.app.report import write_report
from evodisc.campaign.config import check_tasks, load_campaign
from evodisc.campaign.run import run_campaign
from evodisc.campaign.store import CandidateLog
from evodisc.hashing import functional_hash
from evodisc.program import format_program, load_program

BROWSER = os.environ.get("EVODISC_BROWSER") or "chromium-headless-shell"


@pytest.fixture(scope="module")
def campaign_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    campaign = check_tasks(load_campaign(write_campaign(tmp, evaluations=60)))
    run_campaign(campaign, tmp / "run", no_ray=True)
    write_report(tmp / "run")  # each test may run first (xdist)
    return tmp / "run"


def open_in_browser(page) -> tuple[str, str]:
    """The rendered DOM and the browser's stderr (console messages are logged there)."""
    browser = shutil.which(BROWSER)
    assert browser, (
        f"{BROWSER} is needed: run the tests with 'bash tools/test.sh' (it installs Debian's "
        "chromium-headless-shell) or set EVODISC_BROWSER to a Chromium binary"
    )
    done = subprocess.run(
        [
            browser,
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=600,  # a hang detector: the page renders in seconds
    )
    return done.stdout, done.stderr


def test_report_page_loads_every_plot_without_console_errors(campaign_dir, capsys):
    assert main(["report", str(campaign_dir)]) == 0
    out = capsys.readouterr().out
    assert "campaign tiny: 60 candidates" in out and "#1 fitness" in out
    assert re.search(r"#1 fitness \d\.\d{4} ± \d\.\d{4} ", out)  # with its uncertainty
    page = campaign_dir / "report" / "index.html"
    dom, log = open_in_browser(page)
    assert 'data-images-loaded="5/5"' in dom
    assert "CONSOLE" not in log, log
    # the top programs are shown simplified (exact steps), with math and the closest optimizers
    assert dom.count("Simplified (exact, same functional hash)") >= 1
    assert "Closest known optimizers: " in dom and "_t = " in dom
    for name in ("fitness", "shares", "pareto_size", "pareto_memory", "rate"):
        assert (page.parent / f"{name}.png").stat().st_size > 10_000  # a real plot, not empty


def test_a_missing_plot_is_visible_on_the_page(campaign_dir, tmp_path):
    report = shutil.copytree(campaign_dir / "report", tmp_path / "report")
    (report / "rate.png").unlink()
    dom, _ = open_in_browser(report / "index.html")
    assert 'data-images-loaded="4/5"' in dom and "missing: rate.png" in dom


def test_archive_holds_every_distinct_program_with_its_fitness(campaign_dir):
    write_report(campaign_dir)
    rows = CandidateLog(campaign_dir).read().to_pylist()
    with open(campaign_dir / "report" / "archive.csv") as handle:
        archive = list(csv.DictReader(handle))
    assert {a["functional_hash"] for a in archive} == {r["functional_hash"] for r in rows}
    assert sum(int(a["count"]) for a in archive) == len(rows)
    fitness = {r["functional_hash"]: r["fitness"] for r in rows}
    assert all(float(a["fitness"]) == fitness[a["functional_hash"]] for a in archive)
    uncertainty = {r["functional_hash"]: r["uncertainty"] for r in rows if r["status"] == "ok"}
    assert all(
        float(a["uncertainty"]) == uncertainty[a["functional_hash"]]
        for a in archive
        if a["functional_hash"] in uncertainty
    )
    assert [float(a["fitness"]) for a in archive] == sorted(
        (float(a["fitness"]) for a in archive), reverse=True
    )


def test_a_campaign_with_an_empty_log_still_gets_a_page(tmp_path):
    campaign = check_tasks(load_campaign(write_campaign(tmp_path, evaluations=8)))
    run_campaign(campaign, tmp_path / "run", no_ray=True)
    for part in (tmp_path / "run" / "log").glob("*.parquet"):
        part.unlink()  # as if cut by a crash before the first result
    report = write_report(tmp_path / "run")
    assert report.summary == ["campaign tiny: no candidate logged yet"]
    assert (report.directory / "index.html").is_file()


def test_pareto_front_keeps_only_undominated_points():
    fitness = [1.0, 0.5, 0.9, 1.2, 0.4]
    size = [5, 2, 6, 9, 2]
    assert sorted(pareto_front(fitness, size)) == [0, 1, 3]


def test_the_report_writes_the_top_program_simplified_as_best_py(campaign_dir):
    """Without a selection stage, best.py is the top rule's fittest program: simplified, with
    the same functional hash as the one logged."""
    report = write_report(campaign_dir)
    top, simplified = report.top[0]
    written = load_program(campaign_dir / "report" / "best.py")
    assert functional_hash(written) == top.functional_hash
    assert format_program(written) == format_program(simplified.program)
    assert f"candidate {top.first_id}" in (campaign_dir / "report" / "best.py").read_text()


def test_a_report_is_written_from_the_log_alone(campaign_dir, tmp_path, capsys):
    """A missing campaign.json (the log intact) is one warning line, not a refusal."""
    copy = shutil.copytree(campaign_dir, tmp_path / "run")
    (copy / "campaign.json").unlink()
    assert main(["report", str(copy)]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "the report is written from the log alone" in (
        captured.err
    )
    assert "campaign run: 60 candidates" in captured.out
    assert (copy / "report" / "index.html").is_file()
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2  # no log either: nothing to report
