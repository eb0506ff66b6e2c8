"""Start or resume a campaign: the directory, the evaluators, the baselines, the fitness cache
and the evolution; then the controller's loop (:mod:`evodisc.campaign.controller`).

``evodisc run CAMPAIGN.toml`` calls :func:`run_campaign`. Resuming (``resume=True``) needs the
directory's campaign, checkpoint and log: a changed campaign file is refused unless ``force``,
a missing or unreadable checkpoint is an error (never a silent fresh start).
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from contextlib import ExitStack
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from evodisc.campaign import selection, store
from evodisc.campaign.config import Campaign, CampaignError
from evodisc.campaign.controller import (
    CACHEABLE,
    REJECTED,
    Controller,
    Summary,
    write_checkpoint,
)
from evodisc.campaign.evaluators import (
    DEFAULT_DEADLINE,
    EvaluatorError,
    InProcessPool,
    RayPool,
    start_ray,
    within,
)
from evodisc.campaign.progress import Progress
from evodisc.campaign.store import StoreError
from evodisc.files import DamagedFileWarning
from evodisc.fitness_cache import FitnessCache
from evodisc.screen import Screen
from fitness.config import SuiteConfig
from fitness.messages import Baseline
from search_spaces.evolution import RegularizedEvolution

BASELINES_FILE = "baselines.json"


def open_pool(campaign: Campaign, address: str | None, no_ray: bool):
    """The evaluators the campaign asks for: in-process with ``no_ray`` or ``evaluators = 0``,
    else Ray actors on an embedded local Ray or on the cluster at ``address``."""
    resources = campaign.resources
    device = "cuda" if resources.gpus_per_evaluator > 0 else "cpu"
    if no_ray or resources.evaluators == 0:
        return InProcessPool(device, threads=max(1, int(resources.cpus_per_evaluator)))
    start_ray(address)
    return RayPool(
        resources.evaluators,
        cpus=resources.cpus_per_evaluator,
        gpus=resources.gpus_per_evaluator,
    )


def _baselines(directory: Path, pool, config: SuiteConfig, timeout: float) -> dict[str, Baseline]:
    """The tuned baseline of each of ``config``'s tasks (every stage's: they share the grid,
    the baseline's seeds, precision and checkpoints), computed once per campaign by an
    evaluator and kept in DIR (a file of an older protocol, which kept only metrics, or one
    that lacks a task, is computed again); each task within ``timeout`` seconds (the
    campaign's ``timeout_seconds``; 0: :data:`~evodisc.campaign.evaluators.DEFAULT_DEADLINE`)."""
    path = directory / BASELINES_FILE
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
            kept = stored.get("baselines", {})
            if set(config.tasks) <= set(kept):
                return {task: Baseline.from_dict(kept[task]) for task in config.tasks}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # damaged: train again
            warnings.warn(
                f"{path}: unreadable baselines ({type(exc).__name__}), computed again",
                DamagedFileWarning,
                stacklevel=2,
            )
    baselines = pool.baselines(config, deadline=timeout or DEFAULT_DEADLINE)
    documents = {task: baseline.to_dict() for task, baseline in baselines.items()}
    store.write_json(path, {"suite": config.to_dict(), "baselines": documents})
    return baselines


def _resume_state(directory: Path, campaign: Campaign, force: bool):
    """The campaign as the directory runs it (:meth:`Campaign.as_stored`, unless ``force``),
    its evolution and elapsed seconds."""
    stored = store.read_campaign(directory)
    if not force:
        campaign = campaign.as_stored(stored["campaign"])
    if stored["digest"] not in campaign.digests() and not force:
        raise CampaignError(
            f"{directory} was run with a different campaign file; resume with the same file, "
            "or add --force to continue with this one"
        )
    if force:  # continued with this file from now on: a plain --resume with it is the same
        store.write_campaign(directory, campaign.to_dict(), campaign.digest())
    checkpoint = store.read_checkpoint(directory)
    try:
        evolution = RegularizedEvolution.from_state(
            campaign.evolution_config(), checkpoint["evolution"]
        )
        elapsed = float(checkpoint.get("elapsed", 0.0))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise StoreError(
            f"{directory / store.CHECKPOINT_FILE}: unreadable checkpoint ({reason}); the log is "
            "intact, but the search cannot continue from it"
        ) from None
    return campaign, evolution, elapsed


def run_campaign(
    campaign: Campaign,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    address: str | None = None,
    no_ray: bool = False,
    progress: Progress | None = None,
    pool=None,
) -> Summary:
    """Run ``campaign`` into ``out`` until its budget is spent (see the module docstring), on
    ``pool`` when given (anything with :class:`~evodisc.campaign.evaluators.InProcessPool`'s
    interface, e.g. :class:`~evodisc.campaign.fake_pool.FakePool`), else on the evaluators the
    campaign asks for."""
    started = time.monotonic()
    with ExitStack() as stack:
        directory = stack.enter_context(store.open_directory(out, resume))  # ours alone
        if resume:
            campaign, evolution, elapsed = _resume_state(directory, campaign, force)
        else:
            evolution, elapsed = RegularizedEvolution(campaign.evolution_config()), 0.0
        pool = pool or open_pool(campaign, address, no_ray)  # first: a bad address leaves DIR empty
        stack.callback(pool.close)
        if not resume:
            store.write_campaign(directory, campaign.to_dict(), campaign.digest())
            write_checkpoint(directory, evolution, elapsed=0.0)
        log = store.CandidateLog(directory, writer=True)
        logged = log.read()
        device = pool.info[0]["device"]
        every_task = dataclasses.replace(campaign.suite_config(), tasks=campaign.baseline_tasks())
        timeout = campaign.resources.timeout_seconds
        screens = _keyed_screens(campaign, logged, device, timeout or DEFAULT_DEADLINE)
        baselines = _baselines(directory, pool, every_task, timeout)
        _tell_logged_outstanding(evolution, logged)
        controller = Controller(
            campaign,
            directory,
            pool,
            evolution,
            screens,
            baselines,
            log,
            history=logged,
            elapsed_before=elapsed,
        )
        progress = progress or Progress(quiet=True)
        with progress:
            try:
                controller.run(progress)
                loop_seconds = controller.elapsed() - elapsed
            except (KeyboardInterrupt, EvaluatorError):  # Ctrl-C, a lost Ray head, …
                controller.stop()
                raise
        log.compact()  # one part instead of one per flush, for readers and resumes
        if campaign.selection.top:
            config = campaign.stage_config("selection")
            # more seeds and no halving: the search's batch times say nothing of its batches,
            # so the configured timeout (or the default hang detector) is its deadline
            pool.deadline = campaign.resources.timeout_seconds or None
            selection.select(
                directory,
                pool,
                config,
                config.cache_key(device),
                baselines,
                log.read(),
                campaign.selection.top,
                controller.batch_size,
            )
        best = evolution.best
    return Summary(
        directory,
        controller.logged,
        None if best is None else (best[0], best[1], str(best[2])),
        controller.elapsed(),
        time.monotonic() - started - loop_seconds,
    )


def _keyed_screens(
    campaign: Campaign, logged: pa.Table, device: str, deadline: float
) -> dict[str, Screen]:
    """:func:`stage_screens` within ``deadline`` seconds: their cache keys load each user
    task (its ``data()`` and ``model()``) in this process, which may hang."""
    users = [task for task in campaign.baseline_tasks() if ":" in task]
    why = (
        f"the fitness cache key, which loads {', '.join(users) or 'the tasks'} (data() and "
        f"model()), took longer than {deadline:g} s: does a task hang? A call in this process "
        "cannot be stopped, so the run ends here"
    )
    return within(deadline, lambda: stage_screens(campaign, logged, device), why)


def stage_screens(campaign: Campaign, logged: pa.Table, device: str) -> dict[str, Screen]:
    """One :class:`Screen` per stage a candidate goes through, over one fitness cache rebuilt
    from the log: each row's result under its stage's key, and the screening stage's results
    that rows keep in their details."""
    keys = {stage: campaign.stage_config(stage).cache_key(device) for stage in campaign.stages()}
    cache, merge = FitnessCache(), campaign.evolution.merge_scale_variants
    reuse = campaign.resources.reuse_results
    screens = {stage: Screen(cache, key, merge, reuse) for stage, key in keys.items()}
    cacheable = pc.is_in(logged.column("status"), value_set=pa.array(CACHEABLE))
    screens["full"].ingest(logged.filter(cacheable))  # each row under its own key
    if "screen" in screens:
        screens["screen"].ingest(store.screen_rows(logged, keys["screen"]))
    return screens


def _tell_logged_outstanding(evolution: RegularizedEvolution, logged: pa.Table) -> None:
    """Tell the evolution the results logged after its checkpoint, in the order they arrived
    (``wall_time``; the log itself reads back sorted by id), as the interrupted run did."""
    outstanding = {c.id for c in evolution.outstanding}
    rows = zip(
        logged.column("wall_time").to_pylist(),
        logged.column("id").to_pylist(),
        logged.column("fitness").to_pylist(),
        logged.column("status").to_pylist(),
        strict=True,
    )
    for _, cid, fitness, status in sorted(rows):
        if cid in outstanding:
            evolution.tell(cid, fitness, join=status != REJECTED)
