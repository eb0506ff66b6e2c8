"""Replay a program on tasks (built-in or a user's own) against known optimizers.

Every task trains the program and the baselines together in one batched run, each with the same
learning-rate sweep, seeds and budget, and reports the best metric and learning rate of each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table

from evodisc.program import Program
from fitness.config import DEFAULT_LRS
from fitness.device import resolve_device
from fitness.normalise import ratio
from fitness.tasks import Task, TaskError, load_task, task_names
from fitness.trainer import train_batch
from search_spaces.zoo import load_known, resolve_program


@dataclass(frozen=True)
class ReplayRow:
    """One task: the program's best metric and lr, each baseline's, and the ratios."""

    task: str
    metric_name: str
    metric: float
    best_lr: float | None
    baselines: dict[str, tuple[float, float | None]]  # name -> (metric, best lr)
    ratios: dict[str, float]  # name -> program vs baseline (> 1: the program is better)


@dataclass(frozen=True)
class ReplayResult:
    """The rows of a replay, one per task."""

    rows: list[ReplayRow]

    def table(self) -> Table:
        """A rich table: metric and best lr per task, and the ratio against each baseline."""
        names = list(self.rows[0].baselines) if self.rows else []
        table = Table(box=None)
        for column in ("task", "metric", "program", "best lr"):
            table.add_column(column, no_wrap=True)
        for name in names:
            table.add_column(name, no_wrap=True)
            table.add_column(f"vs {name}", no_wrap=True)
        for row in self.rows:
            cells = [row.task, row.metric_name, _num(row.metric), _lr(row.best_lr)]
            for name in names:
                metric, lr = row.baselines[name]
                value = row.ratios[name]
                cells += [
                    f"{_num(metric)} @ {_lr(lr)}",
                    "n/a" if value != value else f"{value:.3f}",
                ]
            table.add_row(*cells)
        return table


def _num(x: float) -> str:
    return "diverged" if x != x else f"{x:.4g}"


def _lr(lr: float | None) -> str:
    return "-" if lr is None else f"{lr:g}"


def replay(
    program: Program | str,
    tasks: Sequence[str | Task] | None = None,
    baselines: Sequence[str] = ("adamw",),
    lrs: Sequence[float] = DEFAULT_LRS,
    seeds: Sequence[int] = (0,),
    device=None,
) -> ReplayResult:
    """Train ``program`` and each baseline (zoo names) with a learning-rate sweep on each task
    (registry names, ``path/to/file.py:factory`` specs or Task objects; default: the suite)."""
    main = program if isinstance(program, Program) else resolve_program(program)
    device = resolve_device(device)  # a bad device is a DeviceError, not a training failure
    others = {name: load_known(name) for name in baselines}
    loaded = [load_task(t) for t in (tasks or task_names())]
    rows = []
    for task in loaded:
        try:
            result = train_batch(task, [main, *others.values()], lrs, seeds, device)
        except TaskError:
            raise
        except (RuntimeError, TypeError, ValueError) as exc:  # e.g. a user model vmap can't run
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise TaskError(
                f"{task.name}: training failed ({type(exc).__name__}: {reason}); "
                "see the Task protocol in docs/fitness.md"
            ) from None
        best_lr, metric = result.best(0)
        base = {name: result.best(i + 1)[::-1] for i, name in enumerate(others)}
        ratios = {n: ratio(metric, m, result.higher_is_better) for n, (m, _) in base.items()}
        rows.append(ReplayRow(task.name, task.metric, metric, best_lr, base, ratios))
    return ReplayResult(rows)
