"""The funnel's last stage: when the budget is spent, the campaign's best distinct candidates are
evaluated again on more seeds (and the selection stage's tasks, never held-out ones), and ranked
by that, so that "the best" is not the luckiest of many noisy evaluations.

``DIR/selection.json`` holds the stage's configuration, its cache key and the re-evaluated
candidates, best first: per candidate its id, functional hash, program, search fitness and
uncertainty, and its selection fitness, uncertainty, status and details. It is written whole
when the stage ends; a campaign interrupted during it runs the stage again on ``--resume``, and a
finished campaign resumed with the same selection keeps the file.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from evodisc.campaign import store
from evodisc.campaign.evaluators import Batch
from evodisc.files import DamagedFileWarning
from evodisc.fitness_cache import CachedFitness
from evodisc.program import program_from_json
from evodisc.screen import WORST_FITNESS
from fitness.config import SuiteConfig
from fitness.messages import Baseline, Request

SELECTION_FILE = "selection.json"
#: Dispatches of a selection batch whose evaluator crashed or timed out, before its candidates
#: are recorded as failed.
MAX_ATTEMPTS = 3


def top_candidates(log: pa.Table, count: int) -> list[dict]:
    """The ``count`` fittest candidates that passed the full protocol (status ``ok``), one per
    functional hash (its first such candidate), fittest first (ties: the lower id)."""
    ok = log.filter(pc.equal(log.column("status"), "ok"))
    if "stage" in ok.column_names:  # logs from before the funnel hold full results only
        stage = ok.column("stage")
        ok = ok.filter(pc.fill_null(pc.equal(stage, "full"), True))
    rows = sorted(ok.to_pylist(), key=lambda r: (-r["fitness"], r["id"]))
    chosen: dict[str, dict] = {}
    for row in rows:
        chosen.setdefault(row["functional_hash"], row)
        if len(chosen) == count:
            break
    return list(chosen.values())


def read_selection(directory: str | Path) -> dict | None:
    """``DIR/selection.json``, or None when there is none (not run, or not finished) or it is
    damaged (with a :class:`~evodisc.files.DamagedFileWarning`)."""
    path = Path(directory) / SELECTION_FILE
    if not path.is_file():
        return None
    try:
        return store.read_json(path, "selection")
    except store.StoreError as exc:  # damaged: as if not run (the stage runs again)
        warnings.warn(str(exc), DamagedFileWarning, stacklevel=2)
        return None


def select(
    directory: Path,
    pool,
    config: SuiteConfig,
    config_key: str,
    baselines: Mapping[str, Baseline],
    log: pa.Table,
    top: int,
    batch_size: int,
) -> dict:
    """Run the selection stage over the ``top`` best candidates of ``log`` on ``pool`` (unless
    ``DIR/selection.json`` already holds it for the same candidates and configuration) and
    return its document."""
    chosen = top_candidates(log, top)
    ids = [row["id"] for row in chosen]
    previous = read_selection(directory)
    if previous and previous.get("config_key") == config_key and previous.get("ids") == ids:
        return previous
    programs = [program_from_json(row["program_json"]) for row in chosen]
    results = evaluate_on(pool, programs, config, baselines, batch_size)
    entries = [
        {
            "id": row["id"],
            "functional_hash": row["functional_hash"],
            "program": row["program"],
            "fitness": row["fitness"],
            "uncertainty": row["uncertainty"],
            "selection_fitness": result.fitness if math.isfinite(result.fitness) else None,
            "selection_uncertainty": result.uncertainty,
            "status": result.status,
            "details": dict(result.details),
        }
        for row, result in zip(chosen, results, strict=True)
    ]
    entries.sort(key=lambda e: (-(e["selection_fitness"] or WORST_FITNESS), e["id"]))
    document = {
        "config_key": config_key,
        "suite": config.to_dict(),
        "ids": ids,
        "candidates": entries,
    }
    store.write_json(directory / SELECTION_FILE, document)
    return document


def evaluate_on(
    pool,
    programs: list,
    config: SuiteConfig,
    baselines: Mapping[str, Baseline],
    batch_size: int,
) -> list[CachedFitness]:
    """Each program's result under ``config``, trained on ``pool`` in batches of
    ``batch_size``; a batch whose evaluator fails :data:`MAX_ATTEMPTS` times gives its programs
    the status ``error``."""
    stage_baselines = {task: baselines[task] for task in config.tasks}
    waiting = []
    for k, first in enumerate(range(0, len(programs), batch_size)):
        indices = list(range(first, min(first + batch_size, len(programs))))
        request = Request(tuple(programs[i] for i in indices), config, stage_baselines)
        waiting.append(Batch(k, indices, request, stage="selection"))
    results: dict[int, CachedFitness] = {}
    running = 0
    while waiting or running:
        while waiting and pool.idle():
            pool.submit(waiting.pop(0))
            running += 1
        for completion in pool.poll(timeout=0.5):
            running -= 1
            batch = completion.batch
            if not completion.failure:
                for index, result in zip(batch.candidate_ids, completion.results, strict=True):
                    results[index] = result.fitness
            elif batch.attempts < MAX_ATTEMPTS:
                waiting.append(batch)
            else:
                reason = f"{completion.failure} ({batch.attempts} attempts)"
                for index in batch.candidate_ids:
                    results[index] = CachedFitness(WORST_FITNESS, "error", {"reason": reason})
    return [results[i] for i in range(len(programs))]


def selected_best(document: Mapping | None) -> dict | None:
    """The selection's best entry (status ``ok``), or None."""
    if not document:
        return None
    ok = [e for e in document.get("candidates", []) if e.get("status") == "ok"]
    return ok[0] if ok else None
