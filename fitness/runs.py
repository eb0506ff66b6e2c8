"""What every training run shares, batched or not: seeded initialisation, the order of the
training batches, the divergence rule, and how the best learning rate is chosen.

How a metric is compared with the baseline's lives in :mod:`fitness.normalise`."""

from __future__ import annotations

import math

import numpy as np
import torch

from fitness.tasks import Task, TaskData, load_data, make_model

#: A run diverges when its training loss is non-finite or exceeds this many times its first loss.
EXPLODE_FACTOR = 100.0


def data_on(task: Task, device: torch.device | str, dtype: torch.dtype) -> TaskData:
    """The task's data on ``device``, floating-point tensors in ``dtype`` (labels keep theirs);
    checked (:func:`fitness.tasks.load_data`: NumPy arrays converted, mistakes one line)."""
    data = load_data(task)

    def cast(x: torch.Tensor) -> torch.Tensor:
        return x.to(device, dtype if x.is_floating_point() else x.dtype)

    return TaskData(cast(data.x_train), cast(data.y_train), cast(data.x_val), cast(data.y_val))


def seeded_model(task: Task, seed: int) -> torch.nn.Module:
    """``task.model()`` drawn with torch's RNG seeded by ``seed`` (the global RNG is restored)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make_model(task)


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


def checkpoint_steps(steps: int, count: int) -> tuple[int, ...]:
    """After which steps (1-based counts, ascending, the last one ``steps``) a run is validated
    when its metric is the mean over ``count`` evenly spaced points of its validation curve."""
    if count < 1:
        raise ValueError(f"checkpoints must be at least 1, not {count}")
    return tuple(sorted({max(1, round(steps * (k + 1) / count)) for k in range(count)}))


def stall_step(steps: int, fraction: float) -> int | None:
    """After how many of ``steps`` steps a run that has not improved stops (early stopping at
    ``fraction`` of the run: ``ceil(fraction·steps)``, at least 1), or None when ``fraction`` is
    0 or leaves no step to save."""
    if fraction <= 0:
        return None
    step = max(1, math.ceil(fraction * steps))
    return step if step < steps else None


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


def grid_edge(metric: np.ndarray, lrs: tuple[float, ...], higher_is_better: bool) -> str | None:
    """``"low"`` or ``"high"`` when the best learning rate of an ``(L, S)`` metric array (see
    :func:`best_over_lrs`) is the lowest or the highest of the grid and its neighbour is worse,
    so the optimum may lie beyond the grid; None when it is interior, on a plateau that reaches
    inside, when every run diverged, or for a one-point grid."""
    order = np.argsort(lrs, kind="stable")
    lrs = tuple(float(lrs[i]) for i in order)
    metric = np.asarray(metric, dtype=np.float64)[order]
    best_lr, best = best_over_lrs(metric, lrs, higher_is_better)
    if best_lr is None or len(lrs) < 2:
        return None
    per_lr = metric.mean(axis=1)
    index = lrs.index(best_lr)
    for end, neighbour, side in ((0, 1, "low"), (len(lrs) - 1, len(lrs) - 2, "high")):
        if index == end and per_lr[neighbour] != best:  # NaN (diverged) is worse
            return side
    return None


def check_untrained(task: Task, dtype: torch.dtype = torch.float32) -> str | None:
    """Why ``task`` is broken before any optimizer touches it — the untrained model's training
    loss or validation score is not finite — or None. (On the CPU, one model, seed 0.)"""
    data = data_on(task, "cpu", dtype)
    model = seeded_model(task, 0).to("cpu", dtype)
    batch = batch_indices(0, len(data.x_train), task.batch_size, 1)[0]
    with torch.no_grad():
        loss = task.loss(model(data.x_train[batch]), data.y_train[batch])
        score = task.score(model(data.x_val), data.y_val)
    for what, value in (("training loss", loss), ("validation score", score)):
        value = torch.as_tensor(value)
        if value.numel() != 1:
            return f"its {what} is not a scalar (shape {tuple(value.shape)})"
        if not torch.isfinite(value).all():
            return f"its {what} is {float(value)} for the untrained model, before any step"
    return None
