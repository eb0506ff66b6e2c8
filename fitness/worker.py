"""The worker side of a distributed evaluation: a plain, serialisable request in, one plain
result per program out.

A request holds the programs as canonical JSON IR, the suite as a plain dict
(:meth:`SuiteConfig.to_dict`) and the tuned baselines computed once per campaign
(:meth:`fitness.baselines.Baseline.to_dict` per task). Every
program gets a result, whatever happens to the others: a program that makes training raise is
isolated by bisection (status ``error`` with the reason; the rest of its batch is trained), and a
batch that runs out of memory is split in halves and retried.

A result is a dict: ``status`` (``ok`` | ``diverged`` | ``error``), ``fitness``, ``details``
(per task: ``metric`` — None when diverged —, ``best_lr``, ``ratio``, ``edge`` — ``"low"`` or
``"high"`` when the best learning rate is on that edge of the grid, a result to re-evaluate on a
wider one, else None —; or ``reason``),
``uncertainty`` (:mod:`fitness.uncertainty`; None when unknown),
``seconds`` (this program's share of the batch's training time) and ``worker``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import torch

from evodisc.fitness_cache import CachedFitness
from evodisc.program import Program, program_from_json
from evodisc.screen import WORST_FITNESS
from fitness.baselines import Baseline
from fitness.batch_size import candidates_per_batch
from fitness.config import SuiteConfig
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


def _batch_size(programs: Sequence[Program], config: SuiteConfig, device, sharing: int = 1) -> int:
    """How many of ``programs`` to train together (:func:`fitness.batch_size.candidates_per_batch`,
    ``sharing`` evaluators sharing the device; all of them if it cannot be estimated: training
    then reports what is wrong)."""
    try:
        return candidates_per_batch(
            config.tasks,
            len(config.lrs),
            len(config.seeds),
            config.torch_dtype,
            device,
            programs,
            sharing=sharing,
        )
    except TaskError:
        raise
    except Exception:
        return max(len(programs), 1)


def evaluate_request(
    request: Mapping, device=None, worker: str = "", sharing: int = 1
) -> list[dict]:
    """Train the programs of ``request`` (``programs``: JSON IR list, ``suite``: dict,
    ``baselines``: task → baseline dict) and return one result dict per program, in order; more than
    fit this worker's part of the device (``sharing`` workers share it) are trained in batches."""
    config = SuiteConfig.from_dict(request["suite"])
    programs = [program_from_json(text) for text in request["programs"]]
    baselines = {task: Baseline.from_dict(doc) for task, doc in request["baselines"].items()}
    start = time.perf_counter()
    size = _batch_size(programs, config, device, sharing)
    results = []
    for first in range(0, len(programs), size):  # more than the device holds: in batches
        results += _train(programs[first : first + size], config, baselines, device)
    seconds = (time.perf_counter() - start) / max(len(programs), 1)
    return [
        {"status": r.status, "fitness": r.fitness, "details": dict(r.details)}
        | {"uncertainty": r.uncertainty, "seconds": seconds, "worker": worker}
        for r in results
    ]
