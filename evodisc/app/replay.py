"""Replay a program on tasks (built-in or a user's own) against known optimizers.

Every task trains the program and the baselines together in one batched run, each with the same
learning-rate sweep, seeds and budget, and reports the best metric and learning rate of each.

A best learning rate on the edge of the grid may not be the optimum, so the grid is extended
(one ×3 step outward per round, for the program and each baseline whose best is on an edge)
until every best is interior, or a bound (:data:`LR_BOUNDS`, :data:`MAX_ROUNDS`) stops it — and
then the result says so. A one-point grid is taken as an explicit choice and never extended.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from rich.table import Table

from evodisc.program import Program
from fitness.config import DEFAULT_CHECKPOINTS, DEFAULT_LRS, MAX_SEEDS
from fitness.device import resolve_device
from fitness.normalise import ratio
from fitness.runs import best_over_lrs, check_untrained, grid_edge
from fitness.tasks import Task, TaskError, load_data, load_task, task_names
from fitness.trainer import train_batch
from search_spaces.zoo import load_known, resolve_program

#: The grid is never extended beyond these learning rates.
LR_BOUNDS = (1e-7, 100.0)
#: Nor for more than this many rounds (each trains the programs still on an edge once more).
MAX_ROUNDS = 8
#: The factor between a grid's end and the learning rate added beyond it.
STEP = 3.0

#: The name of the replayed program in messages.
PROGRAM = "the program"


@dataclass(frozen=True)
class ReplayRow:
    """One task: the program's best metric and lr, each baseline's, and the ratios."""

    task: str
    metric_name: str
    metric: float
    best_lr: float | None
    baselines: dict[str, tuple[float, float | None]]  # name -> (metric, best lr)
    ratios: dict[str, float]  # name -> program vs baseline (> 1: the program is better)
    lrs: tuple[float, ...] = ()  # the program's grid, extended where it had to be
    baseline_lrs: dict[str, tuple[float, ...]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # an edge a bound left, a degenerate metric, …


@dataclass(frozen=True)
class ReplayResult:
    """The rows of a replay, one per task."""

    rows: list[ReplayRow]

    @property
    def warnings(self) -> list[str]:
        """Every row's warnings, one line each."""
        return [w for row in self.rows for w in row.warnings]

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


class _Sweep:
    """One subject's (the program's or a baseline's) metrics by learning rate."""

    def __init__(self, name: str, program: Program):
        self.name, self.program = name, program
        self.runs: dict[float, np.ndarray] = {}  # lr -> metric per seed (NaN: diverged)
        self.stopped: str | None = None  # why the grid could not be extended further

    def add(self, lrs: Sequence[float], metric: np.ndarray) -> None:
        for lr, values in zip(lrs, metric, strict=True):
            self.runs[float(lr)] = np.asarray(values, dtype=np.float64)

    @property
    def lrs(self) -> tuple[float, ...]:
        return tuple(sorted(self.runs))

    def _array(self) -> np.ndarray:
        return np.stack([self.runs[lr] for lr in self.lrs])

    def best(self, higher: bool) -> tuple[float | None, float]:
        return best_over_lrs(self._array(), self.lrs, higher)

    def edge(self, higher: bool) -> str | None:
        return grid_edge(self._array(), self.lrs, higher)


def _next_lr(sweep: _Sweep, side: str) -> float | None:
    """The learning rate one step beyond ``side`` of the grid, or None (and why, in
    ``sweep.stopped``) when a bound forbids it."""
    low, high = LR_BOUNDS
    end = sweep.lrs[0] if side == "low" else sweep.lrs[-1]
    lr = float(f"{(end / STEP if side == 'low' else end * STEP):.12g}")
    if not low <= lr <= high:
        bound = low if side == "low" else high
        sweep.stopped = (
            f"its best learning rate {end:g} is the {'lowest' if side == 'low' else 'highest'} "
            f"tried; the grid was not extended past the bound {bound:g}"
        )
        return None
    return lr


def _train(task: Task, programs: list[Program], lrs, seeds, device) -> np.ndarray:
    """``metric[p, l, s]`` of ``programs`` on ``task`` (the anytime metric of the fitness:
    the mean over :data:`~fitness.config.DEFAULT_CHECKPOINTS` validations); any failure of the
    task's own code is a one-line :class:`TaskError` (a program cannot make training raise: it
    is interpreted)."""
    try:
        return train_batch(
            task, programs, lrs, seeds, device, checkpoints=DEFAULT_CHECKPOINTS
        ).metric
    except TaskError:
        raise
    except Exception as exc:  # a user's loss/model/score may fail in any way
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise TaskError(
            f"{task.name}: training failed ({type(exc).__name__}: {reason}); "
            "see the Task protocol in docs/fitness.md"
        ) from None


def _sweep_task(task, sweeps: list[_Sweep], lrs, seeds, device, extend: bool) -> int:
    """Train every subject on ``lrs``, then extend each one's grid while its best is on an
    edge; returns the number of extension rounds."""
    higher = bool(task.higher_is_better)
    metric = _train(task, [s.program for s in sweeps], lrs, seeds, device)
    for i, sweep in enumerate(sweeps):
        sweep.add(lrs, metric[i])
    rounds = 0
    while extend and len(lrs) > 1:
        wanted: dict[int, float] = {}
        for i, sweep in enumerate(sweeps):
            side = sweep.edge(higher)
            if side is None:
                continue
            if rounds == MAX_ROUNDS:
                sweep.stopped = (
                    f"its best learning rate {sweep.best(higher)[0]:g} is still on the edge of "
                    f"the grid after {MAX_ROUNDS} extensions"
                )
                continue
            lr = _next_lr(sweep, side)
            if lr is not None:
                wanted[i] = lr
        if not wanted:
            break
        rounds += 1
        new_lrs = sorted(set(wanted.values()))
        chosen = sorted(wanted)
        metric = _train(task, [sweeps[i].program for i in chosen], new_lrs, seeds, device)
        for k, i in enumerate(chosen):
            j = new_lrs.index(wanted[i])
            sweeps[i].add([wanted[i]], metric[k, j : j + 1])
    return rounds


def _degenerate(task: Task, sweeps: list[_Sweep], seeds: Sequence[int]) -> list[str]:
    """Warnings for a best metric of exactly 0, which makes ratios 0 or the cap (10)."""
    higher = bool(task.higher_is_better)
    zero = [s.name for s in sweeps if s.best(higher)[1] == 0]
    if not zero:
        return []
    val = len(load_data(task).x_val)
    return [
        f"{task.name}: the best {task.metric} of {', '.join(zero)} is exactly 0 (on {val} "
        f"validation example(s), {len(seeds)} seed(s)), so its ratios are degenerate (0 or the "
        "cap); use more seeds (--seeds 5) or a larger validation set"
    ]


def replay(
    program: Program | str,
    tasks: Sequence[str | Task] | str | Task | None = None,
    baselines: Sequence[str] | str = ("adamw",),
    lrs: Sequence[float] = DEFAULT_LRS,
    seeds: Sequence[int] = (0,),
    device=None,
    extend: bool = True,
) -> ReplayResult:
    """Train ``program`` and each baseline (zoo names) with a learning-rate sweep on each task
    (registry names, ``path/to/file.py:factory`` specs or Task objects; one of them alone is
    fine; default: the suite). With ``extend`` (the default), a best learning rate on the edge
    of the grid extends that subject's grid (see the module docstring)."""
    main = program if isinstance(program, Program) else resolve_program(program)
    lrs = tuple(sorted({float(x) for x in lrs}))
    if not lrs or not all(0 < x < math.inf for x in lrs):
        raise ValueError("learning rates must be positive finite numbers (at least one)")
    seeds = tuple(int(s) for s in seeds)
    if not 1 <= len(seeds) <= MAX_SEEDS:
        raise ValueError(f"between 1 and {MAX_SEEDS} seeds, not {len(seeds)}")
    device = resolve_device(device)  # a bad device is a DeviceError, not a training failure
    names = [baselines] if isinstance(baselines, str) else list(baselines)
    others = {name: load_known(name) for name in names}
    specs = [tasks] if isinstance(tasks, str | Task) else list(tasks or task_names())
    loaded = [load_task(t) for t in specs]
    rows = []
    for task in loaded:
        higher = bool(task.higher_is_better)
        sweeps = [_Sweep(PROGRAM, main), *(_Sweep(n, p) for n, p in others.items())]
        _sweep_task(task, sweeps, lrs, seeds, device, extend)
        if all(s.best(higher)[0] is None for s in sweeps):
            broken = check_untrained(task)
            if broken is not None:
                raise TaskError(f"{task.name}: the task is broken: {broken} (check loss and score)")
        warnings = [f"{task.name}: {s.name}: {s.stopped}" for s in sweeps if s.stopped]
        warnings += _degenerate(task, sweeps, seeds)
        if len(sweeps) > 1 and all(s.best(higher)[0] is None for s in sweeps):
            warnings.append(
                f"{task.name}: every optimizer diverged at every learning rate, the baselines "
                "included; the grid may be too high, or the task's loss unstable"
            )
        best_lr, metric = sweeps[0].best(higher)
        base = {s.name: s.best(higher)[::-1] for s in sweeps[1:]}
        ratios = {
            name: math.nan if math.isnan(metric) and math.isnan(m) else ratio(metric, m, higher)
            for name, (m, _) in base.items()
        }
        rows.append(
            ReplayRow(
                task.name,
                task.metric,
                metric,
                best_lr,
                base,
                ratios,
                lrs=sweeps[0].lrs,
                baseline_lrs={s.name: s.lrs for s in sweeps[1:]},
                warnings=tuple(warnings),
            )
        )
    return ReplayResult(rows)
