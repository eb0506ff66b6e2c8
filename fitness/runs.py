"""What every training run shares, batched or not: seeded initialisation, the order of the
training batches, the divergence rule, and how the best learning rate is chosen.

How a metric is compared with the baseline's lives in :mod:`fitness.normalise`."""

from __future__ import annotations

import math

import numpy as np
import torch

from fitness.tasks import Task, TaskData

#: A run diverges when its training loss is non-finite or exceeds this many times its first loss.
EXPLODE_FACTOR = 100.0

def data_on(task: Task, device: torch.device | str, dtype: torch.dtype) -> TaskData:
    """The task's data on ``device``, floating-point tensors in ``dtype`` (labels keep theirs)."""
    data = task.data()

    def cast(x: torch.Tensor) -> torch.Tensor:
        return x.to(device, dtype if x.is_floating_point() else x.dtype)

    return TaskData(cast(data.x_train), cast(data.y_train), cast(data.x_val), cast(data.y_val))


def seeded_model(task: Task, seed: int) -> torch.nn.Module:
    """``task.model()`` drawn with torch's RNG seeded by ``seed`` (the global RNG is restored)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return task.model()


def batch_indices(seed: int, examples: int, batch_size: int, steps: int) -> torch.Tensor:
    """``(steps, batch_size)`` training-example indices: shuffled epochs drawn from ``seed``."""
    gen = torch.Generator().manual_seed(10_007 + seed)
    epochs = math.ceil(steps * batch_size / examples)
    order = torch.cat([torch.randperm(examples, generator=gen) for _ in range(epochs)])
    return order[: steps * batch_size].reshape(steps, batch_size)


def explosion_limit(first_loss: torch.Tensor) -> torch.Tensor:
    """The loss above which a run counts as diverged, from its first training loss."""
    limit = EXPLODE_FACTOR * first_loss.abs().clamp_min(1e-6)
    return torch.where(torch.isfinite(limit), limit, torch.full_like(limit, -math.inf))


def bad_loss(loss: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
    """True where a run's loss shows divergence."""
    return ~torch.isfinite(loss) | (loss > limit)


def best_over_lrs(
    metric: np.ndarray, lrs: tuple[float, ...], higher_is_better: bool
) -> tuple[float | None, float]:
    """Best learning rate and its metric (mean over seeds) from an ``(L, S)`` array in which a
    diverged run is NaN; a learning rate with any diverged seed is out. ``(None, nan)`` if none."""
    metric = np.asarray(metric, dtype=np.float64)
    per_lr = metric.mean(axis=1)  # NaN if any seed diverged
    valid = np.isfinite(per_lr)
    if not valid.any():
        return None, math.nan
    candidates = np.where(valid, per_lr, -np.inf if higher_is_better else np.inf)
    best = int(np.argmax(candidates) if higher_is_better else np.argmin(candidates))
    return float(lrs[best]), float(per_lr[best])
