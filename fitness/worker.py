"""The worker side of an evaluation: a typed :class:`~fitness.messages.Request` in, one
:class:`~fitness.messages.Result` per program out, and no program's failure loses the others'
results.

A request holds the programs, the suite (:class:`~fitness.config.SuiteConfig`) and the tuned
baselines computed once per campaign (:class:`~fitness.messages.Baseline` per task). Every
program gets a result, whatever happens to the others: a program that makes training raise is
isolated by bisection (status ``error`` with the reason; the rest of its batch is trained), and
a batch that runs out of memory is split in halves and retried.

A result is the program's :class:`~evodisc.fitness_cache.CachedFitness` — ``status`` (``ok`` |
``diverged`` | ``error``), ``fitness``, ``details`` (per task: ``metric`` — None when diverged
—, ``best_lr``, ``ratio``, ``edge`` — ``"low"`` or ``"high"`` when the best learning rate is on
that edge of the grid, a result to re-evaluate on a wider one, else None —; or ``reason``),
``uncertainty`` (:mod:`fitness.uncertainty`; None when unknown) — with ``seconds`` (this
program's share of the batch's training time) and ``worker``.

How many programs are trained together is the evaluator's decision
(:meth:`evodisc.campaign.evaluators.Evaluator.batch_size`), given as ``batch_size``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import torch

from evodisc.fitness_cache import CachedFitness
from evodisc.program import Program
from evodisc.screen import WORST_FITNESS
from fitness.config import SuiteConfig
from fitness.messages import Baseline, Request, Result
from fitness.suite import evaluate
from fitness.tasks import TaskError

#: torch.OutOfMemoryError (torch >= 2.5) is torch.cuda.OutOfMemoryError before that.
_OUT_OF_MEMORY = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), MemoryError)


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, _OUT_OF_MEMORY) or "out of memory" in str(exc)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _train(
    programs: Sequence[Program],
    config: SuiteConfig,
    baselines: Mapping[str, Baseline],
    device,
) -> list[CachedFitness]:
    """Results for ``programs``, bisecting around failures (see the module docstring). A
    :class:`TaskError` (a task that cannot run at all) is no program's fault: it propagates."""
    if not programs:
        return []
    try:
        return [f.as_cached() for f in evaluate(programs, config, device, baselines)]
    except TaskError:
        raise
    except Exception as exc:  # a program (or the batch's size) broke training: isolate it
        if len(programs) == 1:
            oom = _is_out_of_memory(exc)
            reason = "out of memory even alone" if oom else _reason(exc)
            return [CachedFitness(WORST_FITNESS, "error", {"reason": reason})]
        if _is_out_of_memory(exc) and torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = len(programs) // 2
        return _train(programs[:half], config, baselines, device) + _train(
            programs[half:], config, baselines, device
        )


def evaluate_request(
    request: Request, device=None, worker: str = "", batch_size: int | None = None
) -> list[Result]:
    """Train the programs of ``request``, ``batch_size`` at a time (all together when None),
    and return one result per program, in order."""
    programs = list(request.programs)
    size = batch_size or max(len(programs), 1)
    start = time.perf_counter()
    results = []
    for first in range(0, len(programs), size):
        results += _train(programs[first : first + size], request.config, request.baselines, device)
    seconds = (time.perf_counter() - start) / max(len(programs), 1)
    return [Result(r, seconds, worker) for r in results]
