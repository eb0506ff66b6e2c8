"""How many candidates to train together, and how many models to validate at once: from the
device's free memory and a measured cost per model.

A batched run's memory grows linearly with the candidates it trains (each is ``L·S`` models:
weights, gradients, state, the update's temporaries and the activations of a training step);
its throughput per candidate improves only up to a *knee* — a few candidates on a 2-core CPU,
hundreds on a GPU (``tools/bench_fitness.py --sweep``, docs/benchmarks.md). So
:func:`candidates_per_batch` is the number that fits in a share of the free memory, capped at the
knee of the device type; the evaluation worker splits a larger request into batches of that
size, so that evaluators neither run out of memory nor leave a GPU half empty. Evaluators that
share a device (Ray actors with ``gpus_per_evaluator = 0.25``, four to a GPU; CPU evaluators on one
machine) all read the same free memory: each passes ``sharing`` — how many share it — and plans
for its part of the share only, so that together they stay within :data:`MEMORY_SHARE`.

Costs are *measured*, not guessed: one model's forward pass, on a training batch and on the
validation set, runs with autograd's saved-tensor hooks adding up the activations it keeps for
the backward pass (once per task, precision and device type, in milliseconds). A training step
holds those and, during the backward pass, as much again in their gradients; a validation pass
(without autograd) frees each intermediate once it is used, so the saved total bounds it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from evodisc.interpreter import compile_program
from evodisc.program import Program
from fitness.device import resolve_device
from fitness.runs import data_on, seeded_model
from fitness.tasks import Task, is_builtin, load_task

#: Share of the free memory the batches of a device may plan to use together (the rest is slack
#: for the allocator and fragmentation); evaluators sharing the device divide it between them.
MEMORY_SHARE = 0.5
#: Candidates beyond which a batch stops paying, per device type (docs/benchmarks.md: on one CPU
#: core the suite's cost per candidate is lowest at 4-8 and grows beyond; on an H200 it still
#: falls at 512).
KNEE = {"cpu": 8, "cuda": 1024}
#: Free memory assumed where it cannot be read (no /proc/meminfo): conservative.
DEFAULT_FREE_BYTES = 2 * 2**30
#: Validation runs on chunks of models whose activations add up to at most this many bytes.
EVAL_BYTES = 256 * 2**20
#: The update's temporaries per model, in parameter-sized tensors, when the programs are not
#: known: the interpreter keeps every intermediate of a step (random programs have 5-15
#: statements of a few primitives each).
DEFAULT_UPDATE_TENSORS = 24


@dataclass(frozen=True)
class ModelCost:
    """Measured cost of one model of a task."""

    parameters: int  # elements
    step_bytes: int  # activations of one training step: saved for backward, and their gradients
    eval_bytes: int  # activations of one validation pass (bounded by what a forward saves)


def saved_bytes(fn: Callable[[], object], exclude: Sequence[torch.Tensor] = ()) -> int:
    """Bytes of the tensors autograd saves for the backward pass while ``fn()`` runs (each
    storage once; not those of ``exclude``: parameters and data are not activations)."""
    seen = {t.untyped_storage().data_ptr() for t in exclude}
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


#: Measured costs: (task object, precision, device type) → (the task, its cost). The task is
#: kept with its cost so that its id is never reused for another while cached; tasks come from
#: :func:`fitness.tasks.load_task`, which loads each once per process.
_COSTS: dict[tuple, tuple[Task, ModelCost]] = {}


def model_cost(task: Task, dtype: torch.dtype = torch.float32, device=None) -> ModelCost:
    """One model's parameters and the bytes its training step and validation pass allocate
    (measured once per task object, precision and device type; a built-in task once per name
    and batch size, whatever object holds it)."""
    device = resolve_device(device)
    what = (task.name, task.batch_size) if is_builtin(task) else id(task)
    key = (what, dtype, device.type)
    if key not in _COSTS:
        _COSTS[key] = task, _measure(task, dtype, device)
    return _COSTS[key][1]


def _measure(task: Task, dtype: torch.dtype, device: torch.device) -> ModelCost:
    data = data_on(task, device, dtype)
    model = seeded_model(task, 0).to(device, dtype)
    x, y = data.x_train[: task.batch_size], data.y_train[: task.batch_size]
    given = [*model.parameters(), data.x_train, data.y_train, data.x_val, data.y_val]
    return ModelCost(
        parameters=sum(p.numel() for p in model.parameters()),
        step_bytes=2 * saved_bytes(lambda: task.loss(model(x), y), given),
        eval_bytes=saved_bytes(lambda: task.score(model(data.x_val), data.y_val), given),
    )


def update_tensors(programs: Sequence[Program]) -> int:
    """Parameter-sized tensors a step of the worst of ``programs`` keeps per model: its state
    slots and every intermediate the interpreter holds until the step ends."""
    worst = 0
    for program in programs:
        compiled = compile_program(program, "numpy")  # the same registers, without torch
        worst = max(worst, len(program.state) + len(compiled.code) + len(compiled.constants))
    return worst


def candidate_bytes(
    task: Task,
    models_per_candidate: int,
    dtype: torch.dtype = torch.float32,
    device=None,
    programs: Sequence[Program] | None = None,
) -> int:
    """Memory one candidate (``models_per_candidate = L·S`` models) needs in a batched run:
    weights, gradients (twice: autograd's and the flat copy), the update's state and
    temporaries, and a training step's activations, per model."""
    cost = model_cost(task, dtype, device)
    extra = update_tensors(programs) if programs else DEFAULT_UPDATE_TENSORS
    item = torch.empty((), dtype=dtype).element_size()
    per_model = cost.parameters * item * (3 + extra) + cost.step_bytes
    return models_per_candidate * per_model


def batch_bytes(
    task: Task,
    candidates: int,
    models_per_candidate: int,
    dtype: torch.dtype = torch.float32,
    device=None,
    programs: Sequence[Program] | None = None,
) -> int:
    """Memory a batched run of ``candidates`` needs on ``task``: theirs
    (:func:`candidate_bytes`) and the validation's, which runs in chunks of at most
    :data:`EVAL_BYTES`."""
    models = candidates * models_per_candidate
    validation = min(EVAL_BYTES, models * model_cost(task, dtype, device).eval_bytes)
    return candidates * candidate_bytes(task, models_per_candidate, dtype, device, programs) + (
        validation
    )


def free_memory(device=None) -> int:
    """Bytes free on ``device``: CUDA's own count; on CPU, Linux's MemAvailable; else
    :data:`DEFAULT_FREE_BYTES`."""
    device = resolve_device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    meminfo = Path("/proc/meminfo")
    if sys.platform.startswith("linux") and meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return DEFAULT_FREE_BYTES


def candidates_per_batch(
    tasks: Sequence[str | Task],
    lrs: int,
    seeds: int = 1,
    dtype: torch.dtype = torch.float32,
    device=None,
    programs: Sequence[Program] | None = None,
    *,
    sharing: int = 1,
    free: int | None = None,
) -> int:
    """How many candidates to train together on ``device`` (``lrs`` learning rates × ``seeds``
    seeds each, every task of ``tasks`` trained in turn): as many as fit, with the validation's
    :data:`EVAL_BYTES`, in this evaluator's part of :data:`MEMORY_SHARE` of the free memory
    (``free`` bytes; read with :func:`free_memory` when None) — one ``sharing``-th when that
    many evaluators share the device —; at most the device type's :data:`KNEE`, at least 1."""
    device = resolve_device(device)
    if free is None:
        free = free_memory(device)
    budget = MEMORY_SHARE * free / max(1, sharing)
    fits = KNEE.get(device.type, KNEE["cpu"])
    for spec in tasks:  # trained one after the other: the most demanding one decides
        per_candidate = candidate_bytes(load_task(spec), lrs * seeds, dtype, device, programs)
        fits = min(fits, math.floor((budget - EVAL_BYTES) / max(per_candidate, 1)))
    return max(1, fits)


def models_per_evaluation(task: Task, dtype: torch.dtype, device=None) -> int:
    """How many models to validate at once: their validation activations within
    :data:`EVAL_BYTES`."""
    return max(1, EVAL_BYTES // max(model_cost(task, dtype, device).eval_bytes, 1))
