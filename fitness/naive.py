"""The reference: one model at one learning rate, trained the way a plain PyTorch script would
(``loss.backward()`` and a per-parameter optimizer loop running the same program).

It shares the seeded initialisation, batch order and divergence rule with the batched trainer, so
the two give the same metrics; it is the baseline of ``tools/bench_fitness.py`` and the
reference of the equivalence tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from evodisc.interpreter import compile_program, init_state, step
from evodisc.program import Program
from fitness.runs import (
    bad_loss,
    batch_indices,
    checkpoint_steps,
    data_on,
    explosion_limit,
    seeded_model,
)
from fitness.tasks import Task


def train_naive(
    task: Task,
    program: Program,
    lr: float,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    checkpoints: int = 1,
) -> float:
    """Validation metric of one run (the mean over ``checkpoints`` points of training, as the
    batched trainer's), or NaN if it diverged."""
    compiled = compile_program(program, "torch")

    def make_update(params: list[torch.Tensor]) -> Callable[[int], None]:
        state = [init_state(program, p.detach()) for p in params]

        def update(k: int) -> None:
            with torch.no_grad():
                for i, p in enumerate(params):
                    u, state[i] = step(compiled, p, p.grad, lr, k + 1, state[i], T=task.steps)
                    p.sub_(u)

        return update

    return train_loop(task, make_update, seed, device, dtype, checkpoints)


def train_loop(
    task: Task,
    make_update: Callable[[list[torch.Tensor]], Callable[[int], None]],
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    checkpoints: int = 1,
) -> float:
    """The plain training loop every naive run shares — seeded model, batch order, divergence
    rule, validation at ``checkpoints`` points — with the update step ``make_update(params)(k)``
    applied after each backward pass (a program, or a ``torch.optim`` optimizer in the
    benchmarks)."""
    data = data_on(task, device, dtype)
    model = seeded_model(task, seed).to(device, dtype)
    params = list(model.parameters())
    update = make_update(params)
    indices = batch_indices(seed, len(data.x_train), task.batch_size, task.steps).to(device)
    limit = None
    at = checkpoint_steps(task.steps, checkpoints)
    scores: list[float] = []
    for k in range(task.steps):
        batch = indices[k]
        loss = task.loss(model(data.x_train[batch]), data.y_train[batch])
        model.zero_grad(set_to_none=True)
        loss.backward()
        loss = loss.detach()
        if limit is None:
            limit = explosion_limit(loss)
        if bad_loss(loss, limit):
            return math.nan
        update(k)
        if k + 1 in at:
            with torch.no_grad():
                scores.append(float(task.score(model(data.x_val), data.y_val)))
    if not all(torch.isfinite(p).all() for p in params) or not all(map(math.isfinite, scores)):
        return math.nan
    return sum(scores) / len(scores)
