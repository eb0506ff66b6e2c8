"""The campaign controller: drives the evolution, screens candidates, keeps evaluators busy and
logs every result durably (DESIGN §1: the loop from the evolution to the log and back).

One round: ask the evolution for candidates until ``in_flight`` are outstanding; checkpoint
(so that every dispatched candidate is on disk before it is trained); screen them (invalid,
cached, waiting for an equivalent candidate, or new); send the new ones in batches to idle
evaluators; take whatever batches finished; log the finished candidates (a durable Parquet part)
and tell the evolution their fitness, in log order. The checkpoint after those tells is the next
round's, written once its asks are done (one checkpoint covers both), or the last one when the
run ends.

Crash safety follows from that order. The checkpoint holds the evolution state, including the
candidates asked but not yet told. After a ``kill -9`` at any moment, ``--resume`` reloads it,
tells the evolution the results that reached the log after the checkpoint (in log order),
rebuilds the fitness cache from the log, and dispatches the candidates still missing: no id is
lost, none is logged twice, and no function is trained twice once its result is logged.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from evodisc.campaign import store
from evodisc.campaign.config import Campaign
from evodisc.campaign.evaluators import Batch, Completion
from evodisc.campaign.progress import Progress, Stats
from evodisc.fitness_cache import CachedFitness
from evodisc.program import format_program, program_to_json
from evodisc.screen import WORST_FITNESS, Screen, Verdict
from fitness.messages import Baseline, Request
from search_spaces.evolution import Candidate, RegularizedEvolution

#: Dispatches of a batch whose evaluator crashed, before its candidates are logged as errors.
MAX_CRASHES = 3
#: Dispatches of a batch that ran past the deadline, before its candidates are logged as timeouts.
MAX_TIMEOUTS = 2
#: Results are made durable at least this often (seconds) while they come in.
FLUSH_EVERY = 0.5
#: ... or this often while evaluators wait for candidates that a flush would let the loop ask.
FLUSH_STARVING = 0.05
#: Statuses whose results are deterministic and go into the fitness cache.
CACHEABLE = ("ok", "diverged", "invalid", "error")


@dataclass(frozen=True)
class Summary:
    """What a finished (or interrupted) run leaves behind."""

    directory: Path
    candidates: int
    best: tuple[int, float, str] | None  # id, fitness, program text
    seconds: float


class Controller:
    """One campaign's loop over an evaluator pool (see the module docstring)."""

    def __init__(
        self,
        campaign: Campaign,
        directory: Path,
        pool,
        evolution: RegularizedEvolution,
        screen: Screen,
        baselines: dict[str, Baseline],
        log: store.CandidateLog,
        history: pa.Table | None = None,
        elapsed_before: float = 0.0,
    ):
        """``history``: the log so far, when resuming (for the counters)."""
        self.campaign = campaign
        self.directory = directory
        self.pool = pool
        self.evolution = evolution
        self.screen = screen
        self.log = log
        self.config = campaign.suite_config()
        self.baselines = baselines
        resources = campaign.resources
        #: Candidates per request (0 in the file: as many as fit the evaluators' memory) and
        #: at most in flight (0: two batches per evaluator, so none waits for work).
        self.batch_size = resources.batch_size or pool.batch_size(self.config)
        self.in_flight = resources.in_flight or 2 * self.batch_size * pool.size
        #: The configured deadline per batch; without one it is derived once batches are timed.
        pool.deadline = resources.timeout_seconds or None
        self.elapsed_before = elapsed_before
        self.start = time.monotonic()
        self.candidates: dict[int, Candidate] = {c.id: c for c in evolution.outstanding}
        self.to_dispatch: list[int] = []
        self.retry: list[Batch] = []  # batches to send again (crashed or timed-out evaluator)
        self.finished: list[dict] = []  # rows not yet durable
        self.told_since_checkpoint = False  # tells that no checkpoint holds yet
        self.program_json: dict[int, str] = {}  # candidate id -> program JSON (computed once)
        self.next_batch = 0
        self.batch_seconds: list[float] = []
        self.logged_now = 0  # this run
        if history is None or history.num_rows == 0:
            self.logged = self.cache_hits = self.invalid = 0
        else:
            self.logged = history.num_rows
            self.cache_hits = pc.sum(history.column("cache_hit")).as_py() or 0
            self.invalid = pc.sum(pc.equal(history.column("status"), "invalid")).as_py() or 0
        self.last_flush = time.monotonic()

    # ----------------------------------------------------------------------------- the loop

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.start

    def _may_ask(self) -> bool:
        budget = self.campaign.budget
        asked = self.evolution.asked
        if budget.evaluations and asked >= budget.evaluations:
            return False
        return not (budget.wall_seconds and self.elapsed() >= budget.wall_seconds)

    def run(self, progress: Progress) -> None:
        """Run rounds until the budget is spent and every candidate is logged."""
        self._dispatch_outstanding()
        while self.candidates or self._may_ask():
            self._round()
            progress.update(self.stats())
        self._flush()
        if self.told_since_checkpoint:
            self.checkpoint()
        progress.update(self.stats(), force=True)

    def _round(self) -> None:
        limit = self.in_flight
        asked = []
        while self._may_ask() and len(self.candidates) < limit:
            candidate = self.evolution.ask()
            self.candidates[candidate.id] = candidate
            asked.append(candidate)
        if asked or self.told_since_checkpoint:
            self.checkpoint()  # the last flush's tells, and the asked: before any is trained
        for candidate in asked:
            self._screen(candidate)
        self._send()
        busy = self.pool.busy() > 0
        for completion in self.pool.poll(timeout=0.05 if busy else 0.0):
            self._complete(completion)
        if self.finished and self._flush_due(busy):
            self._flush()

    def _flush_due(self, busy: bool) -> bool:
        """Flush every ``FLUSH_EVERY`` seconds while evaluators are busy; at once when none is
        or the budget is spent; and, at most every ``FLUSH_STARVING`` seconds, when evaluators
        are idle for want of candidates that only the finished ones' places can make (finished
        candidates count as in flight until they are flushed and told)."""
        since = time.monotonic() - self.last_flush
        if since >= FLUSH_EVERY or not busy or not self._may_ask():
            return True
        starving = self.pool.idle() > 0 and not self.to_dispatch and not self.retry
        full = len(self.candidates) >= self.in_flight
        return starving and full and since >= FLUSH_STARVING

    def _dispatch_outstanding(self) -> None:
        """Candidates asked before a crash and not in the log: screen them again."""
        for candidate in sorted(self.candidates.values(), key=lambda c: c.id):
            self._screen(candidate)

    def _screen(self, candidate: Candidate) -> None:
        screened = self.screen.screen(candidate.id, candidate.validity)
        if screened.verdict is Verdict.NEW:
            self.to_dispatch.append(candidate.id)
        elif screened.verdict is not Verdict.WAITING:
            cached = screened.verdict is Verdict.CACHED
            self._finish(candidate.id, screened.result, cache_hit=cached)

    def _send(self) -> None:
        while self.retry and self.pool.idle():
            self.pool.submit(self.retry.pop(0))
        size = self.batch_size
        while self.to_dispatch and self.pool.idle():
            ids, self.to_dispatch = self.to_dispatch[:size], self.to_dispatch[size:]
            programs = tuple(self.candidates[i].program for i in ids)
            request = Request(programs, self.config, self.baselines)
            self.pool.submit(Batch(self.next_batch, ids, request))
            self.next_batch += 1

    def _complete(self, completion: Completion) -> None:
        batch = completion.batch
        if completion.failure:
            self._failed(completion)
            return
        self.batch_seconds.append(completion.seconds)
        self._update_deadline()
        for cid, result in zip(batch.candidate_ids, completion.results, strict=True):
            cached, node = result.fitness, completion.node
            self._finish(
                cid, cached, False, node=node, seconds=result.seconds, worker=result.worker
            )
            digest = self.candidates[cid].validity.functional_hash
            for waiter in self.screen.resolve(digest, cached, cache=cached.status in CACHEABLE):
                self._finish(waiter, cached, cache_hit=True)

    def _failed(self, completion: Completion) -> None:
        batch = completion.batch
        crashed = completion.failure.startswith("crashed")
        limit = MAX_CRASHES if crashed else MAX_TIMEOUTS
        if batch.attempts < limit:
            self.retry.append(batch)
            return
        status = "error" if crashed else "timeout"
        reason = f"{completion.failure} ({batch.attempts} attempts)"
        result = CachedFitness(WORST_FITNESS, status, {"reason": reason})
        for cid in batch.candidate_ids:
            digest = self.candidates[cid].validity.functional_hash
            self._finish(cid, result, cache_hit=False, node=completion.node)
            for waiter in self.screen.resolve(digest, result, cache=False):
                self._finish(waiter, result, cache_hit=False)

    def _update_deadline(self) -> None:
        if not self.campaign.resources.timeout_seconds and len(self.batch_seconds) >= 3:
            self.pool.deadline = max(60.0, 10 * statistics.median(self.batch_seconds[-50:]))

    def _program_json(self, cid: int) -> str:
        text = self.program_json.get(cid)
        if text is None:
            text = self.program_json[cid] = program_to_json(self.candidates[cid].program)
        return text

    def _finish(self, cid: int, result: CachedFitness, cache_hit: bool, **source) -> None:
        candidate = self.candidates[cid]
        self.finished.append(
            candidate_row(
                candidate,
                result,
                cache_hit=cache_hit,
                config_key=self.screen.config_key,
                wall_time=self.elapsed(),
                program_json=self._program_json(cid),
                genome=self.evolution.genotype_json(candidate),
                **source,
            )
        )

    def _flush(self) -> None:
        """Make finished rows durable, then tell the evolution (the next round checkpoints)."""
        if not self.finished:
            return
        self.log.append(self.finished)
        self.log.flush()
        for row in self.finished:
            self.evolution.tell(row["id"], row["fitness"])
            del self.candidates[row["id"]]
            self.program_json.pop(row["id"], None)
            self.logged += 1
            self.logged_now += 1
            self.cache_hits += row["cache_hit"]
            self.invalid += row["status"] == "invalid"
        self.finished = []
        self.last_flush = time.monotonic()
        self.told_since_checkpoint = True

    def stop(self) -> None:
        """After Ctrl-C: make finished rows durable. No checkpoint: the interrupt may have cut a
        round short, and resuming reconciles the last checkpoint with the log anyway."""
        if self.finished:
            self.log.append(self.finished)
            self.log.flush()
            self.finished = []

    def checkpoint(self) -> None:
        state = write_checkpoint(self.directory, self.evolution, self.elapsed())
        self.told_since_checkpoint = False
        for doc in state["outstanding"]:  # the programs' JSON, made for the checkpoint anyway
            if doc["id"] in self.candidates:
                self.program_json.setdefault(doc["id"], doc["program_json"])

    # --------------------------------------------------------------------------- reporting

    def stats(self) -> Stats:
        budget = self.campaign.budget.evaluations or None
        seconds = time.monotonic() - self.start
        rate = self.logged_now / seconds if seconds > 0 else 0.0
        population = [
            m.fitness for p in self.evolution.populations for m in p if math.isfinite(m.fitness)
        ]
        best = self.evolution.best
        etas = [(budget - self.logged) / rate] if budget and rate > 0 else []
        if self.campaign.budget.wall_seconds:  # whichever budget is spent first
            etas.append(max(0.0, self.campaign.budget.wall_seconds - self.elapsed()))
        eta = min(etas, default=None)
        return Stats(
            done=self.logged,
            budget=budget,
            rate=rate,
            best=None if best is None else best[1],
            median=statistics.median(population) if population else None,
            cache_hit_share=self.cache_hits / self.logged if self.logged else 0.0,
            invalid_share=self.invalid / self.logged if self.logged else 0.0,
            in_flight=len(self.candidates),
            eta_seconds=eta,
        )


def write_checkpoint(directory: Path, evolution: RegularizedEvolution, elapsed: float) -> dict:
    """The evolution's state (outstanding candidates included) and the time spent, durably;
    returns the evolution's state as written."""
    state = evolution.state_dict()
    store.write_checkpoint(directory, {"evolution": state, "elapsed": elapsed})
    return state


def candidate_row(
    candidate: Candidate,
    result: CachedFitness,
    *,
    cache_hit: bool,
    config_key: str,
    wall_time: float,
    seconds: float = 0.0,
    worker: str = "",
    node: str = "",
    program_json: str | None = None,
    genome: str | None = None,
) -> dict:
    """One row of the candidate log (columns: :data:`evodisc.campaign.store.LOG_SCHEMA`);
    ``program_json``: the program's JSON when already known (it is computed otherwise);
    ``genome``: the candidate's genotype JSON in a genome space."""
    info = candidate.validity.info
    fitness = result.fitness if math.isfinite(result.fitness) else WORST_FITNESS
    return {
        "id": candidate.id,
        "parent_id": candidate.parent_id,
        "mutation": candidate.mutation,
        "island": candidate.island,
        "program": format_program(candidate.program),
        "program_json": program_json or program_to_json(candidate.program),
        "genome": genome,
        "functional_hash": candidate.validity.functional_hash,
        "config_key": config_key,
        "cache_hit": cache_hit,
        "status": result.status,
        "fitness": fitness,
        "uncertainty": result.uncertainty,
        "details": json.dumps(dict(result.details), sort_keys=True, separators=(",", ":")),
        "statements": info.statements,
        "state_slots": info.state_slots,
        "memory": info.memory,
        "eval_seconds": seconds,
        "worker": worker,
        "node": node,
        "wall_time": wall_time,
        "time": datetime.now(UTC),
    }
