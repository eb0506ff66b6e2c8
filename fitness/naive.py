"""The reference: one model at one learning rate, trained the way a plain PyTorch script would
(``loss.backward()`` and a per-parameter optimizer loop running the same program).

It shares the seeded initialisation, batch order and divergence rule with the batched trainer, so
the two give the same metrics; it is the baseline of ``tools/bench_fitness.py`` and the
reference of the equivalence tests.
"""

from __future__ import annotations

import math

import torch

from evodisc.interpreter import compile_program, init_state, step
from evodisc.program import Program
from fitness.runs import bad_loss, batch_indices, data_on, explosion_limit, seeded_model
from fitness.tasks import Task


def train_naive(
    task: Task,
    program: Program,
    lr: float,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> float:
    """Validation metric of one run, or NaN if it diverged."""
    data = data_on(task, device, dtype)
    x_train, y_train, x_val, y_val = data.x_train, data.y_train, data.x_val, data.y_val
    model = seeded_model(task, seed).to(device, dtype)
    params = list(model.parameters())
    compiled = compile_program(program, "torch")
    state = [init_state(program, p.detach()) for p in params]
    indices = batch_indices(seed, len(x_train), task.batch_size, task.steps).to(device)
    limit = None
    for k in range(task.steps):
        batch = indices[k]
        loss = task.loss(model(x_train[batch]), y_train[batch])
        model.zero_grad(set_to_none=True)
        loss.backward()
        loss = loss.detach()
        if limit is None:
            limit = explosion_limit(loss)
        if bad_loss(loss, limit):
            return math.nan
        with torch.no_grad():
            for i, p in enumerate(params):
                update, state[i] = step(compiled, p, p.grad, lr, k + 1, state[i])
                p.sub_(update)
    with torch.no_grad():
        if not all(torch.isfinite(p).all() for p in params):
            return math.nan
        score = float(task.score(model(x_val), y_val))
    return score if math.isfinite(score) else math.nan
