"""The campaign controller: drives the evolution, screens candidates, keeps evaluators busy and
logs every result durably (DESIGN §1: the loop from the evolution to the log and back).

One round: ask the evolution for candidates until ``in_flight`` are outstanding; checkpoint
(so that every dispatched candidate is on disk before it is trained); screen them (invalid,
cached, waiting for an equivalent candidate, or new); send the new ones in batches to idle
evaluators; take whatever batches finished; log the finished candidates (a durable Parquet part)
and tell the evolution their fitness, in log order. The checkpoint after those tells is the next
round's, written once its asks are done (one checkpoint covers both), or the last one when the
run ends.

With the funnel (``[screen] enabled``), a candidate is first screened and trained under the
screening stage's configuration; one whose screen fitness (plus its uncertainty) falls below the
``quantile`` of its island population's screen fitness is logged as ``rejected`` (stage
``screen``; it does not join the population), the others go on to the full protocol (stage
``full``), each stage with its own cache key. When the budget is spent and every candidate is
logged, the selection stage (``[selection] top``) evaluates the best distinct candidates again on
more seeds and writes ``DIR/selection.json`` (:mod:`evodisc.campaign.selection`).

Crash safety follows from that order. The checkpoint holds the evolution state, including the
candidates asked but not yet told. After a ``kill -9`` at any moment, ``--resume`` reloads it,
tells the evolution the results that reached the log after the checkpoint (in log order),
rebuilds the fitness cache from the log, and dispatches the candidates still missing: no id is
lost, none is logged twice, and no function is trained twice once its result is logged (a
candidate that passed the screen but was not logged is screened again: its screen result is in
the log only with its row).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from evodisc.campaign import store
from evodisc.campaign.config import Campaign
from evodisc.campaign.evaluators import Batch, Completion
from evodisc.campaign.progress import Progress, Stats
from evodisc.fitness_cache import CachedFitness
from evodisc.hashing import RuleIdentity
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
#: The status of a candidate the screening stage stopped (its fitness is the worst).
REJECTED = "rejected"
#: Candidates whose screen always lets them on: the start of an island, not a mutation.
UNSCREENED = ("seed:", "restart:", "migration:")


@dataclass(frozen=True)
class Summary:
    """What a finished (or interrupted) run leaves behind."""

    directory: Path
    candidates: int
    best: tuple[int, float, str] | None  # id, fitness, program text
    seconds: float  # the campaign's time (its loop, over every run; the wall-clock budget's)
    overhead: float = 0.0  # this run's time outside it: evaluators started, baselines, selection


class Controller:
    """One campaign's loop over an evaluator pool (see the module docstring)."""

    def __init__(
        self,
        campaign: Campaign,
        directory: Path,
        pool,
        evolution: RegularizedEvolution,
        screens: dict[str, Screen],
        baselines: dict[str, Baseline],
        log: store.CandidateLog,
        history: pa.Table | None = None,
        elapsed_before: float = 0.0,
    ):
        """``screens``: one :class:`Screen` per stage a candidate goes through
        (:meth:`Campaign.stages`, in order); ``history``: the log so far, when resuming (for the
        counters and the populations' screen fitness)."""
        self.campaign = campaign
        self.directory = directory
        self.pool = pool
        self.evolution = evolution
        self.screens = screens
        self.stages = tuple(screens)
        self.log = log
        self.configs = {stage: campaign.stage_config(stage) for stage in self.stages}
        self.baselines = baselines
        resources = campaign.resources
        #: Candidates per request (0 in the file: as many as fit the evaluators' memory) and
        #: at most in flight (0: two batches per evaluator, so none waits for work).
        self.batch_size = resources.batch_size or pool.batch_size(self.configs["full"])
        self.in_flight = resources.in_flight or 2 * self.batch_size * pool.size
        #: The configured deadline per batch; without one it is derived once batches are timed.
        pool.deadline = resources.timeout_seconds or None
        self.elapsed_before = elapsed_before
        self.start = time.monotonic()
        self.candidates: dict[int, Candidate] = {c.id: c for c in evolution.outstanding}
        self.to_dispatch: dict[str, list[int]] = {stage: [] for stage in self.stages}
        self.retry: list[Batch] = []  # batches to send again (crashed or timed-out evaluator)
        self.finished: list[dict] = []  # rows not yet durable
        self.told_since_checkpoint = False  # tells that no checkpoint holds yet
        self.program_json: dict[int, str] = {}  # candidate id -> program JSON (computed once)
        self.screened: dict[int, CachedFitness] = {}  # in flight: the screen result it passed
        self.spent: dict[int, float] = {}  # in flight: evaluation seconds of its earlier stages
        #: Screen fitness of the candidates that passed the screen (the populations' members
        #: among them set each island's bar).
        self.screen_fitness: dict[int, float] = {}
        self.next_batch = 0
        self.batch_seconds: dict[str, list[float]] = {}  # stage -> seconds of its batches
        self.logged_now = 0  # this run
        self.logged = self.cache_hits = self.invalid = self.rejected = 0
        if history is not None and history.num_rows:
            self.logged = history.num_rows
            self.cache_hits = pc.sum(history.column("cache_hit")).as_py() or 0
            status = history.column("status")
            self.invalid = pc.sum(pc.equal(status, "invalid")).as_py() or 0
            self.rejected = pc.sum(pc.equal(status, REJECTED)).as_py() or 0
            passed = pc.and_(
                pc.is_valid(history.column("screen_fitness")), pc.not_equal(status, REJECTED)
            )
            kept = history.filter(pc.fill_null(passed, False))
            ids, values = kept.column("id").to_pylist(), kept.column("screen_fitness").to_pylist()
            self.screen_fitness = dict(zip(ids, values, strict=True))
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
        finishing = False
        while self.candidates or self._may_ask():
            if not finishing and not self._may_ask():
                finishing = True
                progress.note(self._finishing())
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

    def _finishing(self) -> str:
        """What the run does once its budget is spent: it finishes the batches in flight."""
        budget = self.campaign.budget
        spent = (
            f"{budget.evaluations} evaluations"
            if budget.evaluations and self.evolution.asked >= budget.evaluations
            else f"wall_seconds = {budget.wall_seconds:g}"
        )
        batches = (
            self.pool.busy()
            + len(self.retry)
            + sum(math.ceil(len(q) / self.batch_size) for q in self.to_dispatch.values())
        )
        return (
            f"budget reached ({spent}): finishing {batches} batch(es) in flight "
            f"({len(self.candidates)} candidates); Ctrl-C stops now, and --resume trains them"
        )

    def _flush_due(self, busy: bool) -> bool:
        """Flush every ``FLUSH_EVERY`` seconds while evaluators are busy; at once when none is
        or the budget is spent; and, at most every ``FLUSH_STARVING`` seconds, when evaluators
        are idle for want of candidates that only the finished ones' places can make (finished
        candidates count as in flight until they are flushed and told)."""
        since = time.monotonic() - self.last_flush
        if since >= FLUSH_EVERY or not busy or not self._may_ask():
            return True
        waiting = any(self.to_dispatch.values())
        starving = self.pool.idle() > 0 and not waiting and not self.retry
        full = len(self.candidates) >= self.in_flight
        return starving and full and since >= FLUSH_STARVING

    def _dispatch_outstanding(self) -> None:
        """Candidates asked before a crash and not in the log: screen them again."""
        for candidate in sorted(self.candidates.values(), key=lambda c: c.id):
            self._screen(candidate)

    def _screen(self, candidate: Candidate) -> None:
        self._enter(candidate.id, self.stages[0])

    def _enter(self, cid: int, stage: str) -> None:
        """Screen candidate ``cid`` for ``stage``: its result now (invalid, cached), later (an
        equivalent one is in flight), or after training (dispatched)."""
        screened = self.screens[stage].screen(cid, self.candidates[cid].validity)
        if screened.verdict is Verdict.NEW:
            self.to_dispatch[stage].append(cid)
        elif screened.verdict is not Verdict.WAITING:
            cached = screened.verdict is Verdict.CACHED
            self._staged(cid, stage, screened.result, cache_hit=cached)

    def _staged(self, cid: int, stage: str, result: CachedFitness, cache_hit: bool, **source):
        """Candidate ``cid`` has its result for ``stage``: on to the next stage, or finished."""
        if stage != "screen":
            self._finish(cid, result, cache_hit, stage=stage, **source)
            return
        self.screened[cid] = result
        if result.status == "ok" and self._passes(self.candidates[cid], result):
            self.spent[cid] = source.get("seconds", 0.0)  # added to the full protocol's
            self.screen_fitness[cid] = result.fitness
            self._enter(cid, "full")
            return
        # invalid, diverged or failed already (no full protocol), or below the bar
        if result.status == "ok":
            result = CachedFitness(WORST_FITNESS, REJECTED, {}, None)
        self._finish(cid, result, cache_hit, stage=stage, **source)

    def _passes(self, candidate: Candidate, result: CachedFitness) -> bool:
        """Whether a screen result lets the candidate on (see :func:`screen_bar`)."""
        if candidate.mutation.startswith(UNSCREENED):
            return True
        population = self.evolution.population(candidate.island)
        known = [self.screen_fitness.get(m.candidate.id) for m in population]
        bar = screen_bar([x for x in known if x is not None], self.campaign.screen.quantile)
        return passes_screen(result, bar, self.campaign.screen.margin)

    def _send(self) -> None:
        while self.retry and self.pool.idle():
            self.pool.submit(self.retry.pop(0))
        size = self.batch_size
        for stage in reversed(self.stages):  # the full protocol first: it finishes candidates
            queue = self.to_dispatch[stage]
            while queue and self.pool.idle():
                ids, self.to_dispatch[stage] = queue[:size], queue[size:]
                queue = self.to_dispatch[stage]
                programs = tuple(self.candidates[i].program for i in ids)
                request = Request(programs, self.configs[stage], self.baselines_for(stage))
                self.pool.submit(Batch(self.next_batch, ids, request, stage=stage))
                self.next_batch += 1

    def baselines_for(self, stage: str) -> dict[str, Baseline]:
        """The baselines of the tasks ``stage`` trains."""
        return {task: self.baselines[task] for task in self.configs[stage].tasks}

    def _complete(self, completion: Completion) -> None:
        batch = completion.batch
        if completion.failure:
            self._failed(completion)
            return
        self.batch_seconds.setdefault(batch.stage, []).append(completion.seconds)
        self._update_deadline()
        screen = self.screens[batch.stage]
        for cid, result in zip(batch.candidate_ids, completion.results, strict=True):
            cached, node = result.fitness, completion.node
            validity, cacheable = self.candidates[cid].validity, cached.status in CACHEABLE
            waiters = screen.resolve(validity, cached, cache=cacheable)
            source = {"node": node, "seconds": result.seconds, "worker": result.worker}
            self._staged(cid, batch.stage, cached, False, **source)
            for waiter, mapped in waiters:
                self._staged(waiter, batch.stage, mapped, cache_hit=True)

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
        screen = self.screens[batch.stage]
        for cid in batch.candidate_ids:
            validity = self.candidates[cid].validity
            waiters = screen.resolve(validity, result, cache=False)
            node = completion.node
            self._finish(cid, result, cache_hit=False, stage=batch.stage, node=node)
            for waiter, mapped in waiters:
                self._finish(waiter, mapped, cache_hit=False, stage=batch.stage, node=node)

    def _update_deadline(self) -> None:
        """Without a configured timeout, a batch may take ten times the median of the recent
        batches of the slowest stage, and at least 60 s: a screen's quick batches never set
        the deadline of a full evaluation."""
        if self.campaign.resources.timeout_seconds:
            return
        medians = [statistics.median(s[-50:]) for s in self.batch_seconds.values() if len(s) >= 3]
        if medians:
            self.pool.deadline = max(60.0, 10 * max(medians))

    def _program_json(self, cid: int) -> str:
        text = self.program_json.get(cid)
        if text is None:
            text = self.program_json[cid] = program_to_json(self.candidates[cid].program)
        return text

    def _finish(
        self, cid: int, result: CachedFitness, cache_hit: bool, stage: str = "full", **source
    ) -> None:
        candidate = self.candidates[cid]
        screened = self.screened.pop(cid, None)
        if cid in self.spent:  # its screen's time, and the full protocol's (if trained)
            source["seconds"] = source.get("seconds", 0.0) + self.spent.pop(cid)
        self.finished.append(
            candidate_row(
                candidate,
                result,
                cache_hit=cache_hit,
                config_key=self.screens[stage].config_key,
                rule=self.screens[stage].rule(candidate.validity),
                wall_time=self.elapsed(),
                program_json=self._program_json(cid),
                stage=stage,
                screened=screened,
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
            rejected = row["status"] == REJECTED
            self.evolution.tell(row["id"], row["fitness"], join=not rejected)
            del self.candidates[row["id"]]
            self.program_json.pop(row["id"], None)
            self.logged += 1
            self.logged_now += 1
            self.cache_hits += row["cache_hit"]
            self.invalid += row["status"] == "invalid"
            self.rejected += rejected
        self._forget_screen_fitness()
        self.finished = []
        self.last_flush = time.monotonic()
        self.told_since_checkpoint = True

    def _forget_screen_fitness(self) -> None:
        """Drop the screen fitness of candidates no population holds any more."""
        if len(self.screen_fitness) > 2 * sum(map(len, self.evolution.populations)) + 1000:
            members = {m.candidate.id for p in self.evolution.populations for m in p}
            keep = members | set(self.candidates)
            self.screen_fitness = {i: v for i, v in self.screen_fitness.items() if i in keep}

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
            rejected_share=self.rejected / self.logged if self.logged else 0.0,
            in_flight=len(self.candidates),
            eta_seconds=eta,
        )


def write_checkpoint(directory: Path, evolution: RegularizedEvolution, elapsed: float) -> dict:
    """The evolution's state (outstanding candidates included) and the time spent, durably;
    returns the evolution's state as written."""
    state = evolution.state_dict()
    store.write_checkpoint(directory, {"evolution": state, "elapsed": elapsed})
    return state


def screen_bar(values: list[float], quantile: float) -> float | None:
    """The screen fitness a candidate must reach: the ``quantile`` (linear interpolation) of its
    island population's screen fitness ``values``; None (no bar) below two known values."""
    if len(values) < 2:
        return None
    return float(np.quantile(values, quantile))


def passes_screen(result: CachedFitness, bar: float | None, margin: float) -> bool:
    """Whether a screen result lets its candidate on: status ``ok``, and no bar, or its fitness
    plus ``margin`` times its uncertainty (0 when unknown) reaches the bar."""
    uncertainty = result.uncertainty if result.uncertainty is not None else 0.0
    ok = result.status == "ok"
    return ok and (bar is None or result.fitness + margin * uncertainty >= bar)


def candidate_row(
    candidate: Candidate,
    result: CachedFitness,
    *,
    cache_hit: bool,
    config_key: str,
    wall_time: float,
    rule: RuleIdentity | None = None,
    seconds: float = 0.0,
    worker: str = "",
    node: str = "",
    program_json: str | None = None,
    stage: str = "full",
    screened: CachedFitness | None = None,
    genome: str | None = None,
) -> dict:
    """One row of the candidate log (columns: :data:`evodisc.campaign.store.LOG_SCHEMA`);
    ``program_json``: the program's JSON when already known (it is computed otherwise);
    ``stage``: the funnel stage whose result ``result`` is; ``screened``: its screen result
    (kept in ``details["screen"]``, and its fitness as ``screen_fitness``); ``rule``: its rule
    identity when the campaign merges scale variants; ``genome``: the candidate's genotype JSON
    in a genome space."""
    info = candidate.validity.info
    fitness = _finite(result.fitness)
    details = {key: value for key, value in result.details.items() if key != "screen"}
    if screened is not None:
        details["screen"] = store.screen_document(screened)
    return {
        "id": candidate.id,
        "parent_id": candidate.parent_id,
        "mutation": candidate.mutation,
        "island": candidate.island,
        "program": format_program(candidate.program),
        "program_json": program_json or program_to_json(candidate.program),
        "genome": genome,
        "functional_hash": candidate.validity.functional_hash,
        "identity": None if rule is None else rule.digest,
        "scale": None if rule is None else rule.scale,
        "config_key": config_key,
        "cache_hit": cache_hit,
        "status": result.status,
        "fitness": fitness,
        "uncertainty": result.uncertainty,
        "details": json.dumps(details, sort_keys=True, separators=(",", ":")),
        "statements": info.statements,
        "state_slots": info.state_slots,
        "memory": info.memory,
        "eval_seconds": seconds,
        "worker": worker,
        "node": node,
        "wall_time": wall_time,
        "time": datetime.now(UTC),
        "stage": stage,
        "screen_fitness": None if screened is None else _finite(screened.fitness),
    }


def _finite(x: float) -> float:
    return x if math.isfinite(x) else WORST_FITNESS
