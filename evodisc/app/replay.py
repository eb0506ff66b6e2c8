"""Replay a program on tasks (built-in or a user's own) against known optimizers.

Every task trains the program and the baselines together in one batched run, each with the same
learning-rate sweep, seeds and budget, and reports, for the anytime metric of the fitness (the
mean over the validations during training) and for the final metric (the last validation), each
one's best learning rate and its metric there (mean over seeds), and the program's ratio against
each baseline (> 1: the program is better) with its repeatability limit: from the seed-to-seed
spread of both sides at their best learning rates, as the fitness's uncertainty
(:mod:`fitness.uncertainty`; unknown with one seed). Over several tasks the geometric mean of a
baseline's ratios carries the combined limit (:meth:`ReplayResult.summary`).

A best learning rate on the edge of the grid may not be the optimum, so the grid is extended
(one ×3 step outward per round, for the program and each baseline whose best anytime metric is
on an edge) until every best is interior, or a bound (:data:`LR_BOUNDS`, :data:`MAX_ROUNDS`)
stops it — and then the result says so. A one-point grid is taken as an explicit choice and
never extended.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.table import Table

from evodisc.program import Program
from fitness.config import DEFAULT_CHECKPOINTS, DEFAULT_LRS, MAX_SEEDS
from fitness.device import resolve_device
from fitness.normalise import ratio
from fitness.runs import best_over_lrs, check_untrained, grid_edge
from fitness.tasks import Task, TaskError, load_data, load_task, task_names
from fitness.trainer import train_batch
from fitness.uncertainty import RatioError, cv, log_ratio_error, suite_uncertainty
from search_spaces.zoo import resolve_program

#: The grid is never extended beyond these learning rates.
LR_BOUNDS = (1e-7, 100.0)
#: Nor for more than this many rounds (each trains the programs still on an edge once more).
MAX_ROUNDS = 8
#: The factor between a grid's end and the learning rate added beyond it.
STEP = 3.0

#: The name of the replayed program in messages.
PROGRAM = "the program"
#: The two metrics a replay reports: the fitness's anytime metric and the final validation.
KINDS = ("anytime", "final")


@dataclass(frozen=True)
class Standing:
    """One task by one metric (``anytime`` or ``final``): the program's best metric (mean over
    seeds) and learning rate, each baseline's, and the program's ratio against each with its
    repeatability limit (NaN: unknown) and the standard error of its log (for summaries)."""

    metric: float
    best_lr: float | None
    baselines: dict[str, tuple[float, float | None]]  # name -> (metric, best lr)
    ratios: dict[str, float]  # name -> program vs baseline (> 1: the program is better)
    errors: dict[str, RatioError] = field(default_factory=dict)

    @property
    def uncertainties(self) -> dict[str, float]:
        """Each ratio's repeatability limit, from its error (NaN: unknown, or no ratio)."""
        return {
            name: suite_uncertainty(value, [self.errors[name]]) if value > 0 else math.nan
            for name, value in self.ratios.items()
        }

    def cell(self, name: str) -> str:
        """``1.042 ± 0.031`` (``n/a`` when there is no ratio)."""
        value = self.ratios[name]
        if value != value:
            return "n/a"
        limit = self.uncertainties[name]
        return f"{value:.3f}" + (f" ± {limit:.3f}" if math.isfinite(limit) else "")


@dataclass(frozen=True)
class ReplayRow:
    """One task: its :class:`Standing` by the anytime metric and by the final one, the grids
    trained, and warnings. ``metric``, ``best_lr``, ``baselines`` and ``ratios`` are the
    anytime metric's (the fitness's)."""

    task: str
    metric_name: str
    anytime: Standing
    final: Standing
    lrs: tuple[float, ...] = ()  # the program's grid, extended where it had to be
    baseline_lrs: dict[str, tuple[float, ...]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # an edge a bound left, a degenerate metric, …

    @property
    def metric(self) -> float:
        return self.anytime.metric

    @property
    def best_lr(self) -> float | None:
        return self.anytime.best_lr

    @property
    def baselines(self) -> dict[str, tuple[float, float | None]]:
        return self.anytime.baselines

    @property
    def ratios(self) -> dict[str, float]:
        return self.anytime.ratios

    def standing(self, kind: str) -> Standing:
        """The :class:`Standing` by ``kind`` (one of :data:`KINDS`)."""
        return {"anytime": self.anytime, "final": self.final}[kind]


@dataclass(frozen=True)
class ReplayResult:
    """The rows of a replay, one per task, and the seeds each subject trained on."""

    rows: list[ReplayRow]
    seeds: tuple[int, ...] = (0,)

    @property
    def warnings(self) -> list[str]:
        """Every row's warnings, one line each."""
        return [w for row in self.rows for w in row.warnings]

    @property
    def names(self) -> list[str]:
        """The baselines, in the order given."""
        return list(self.rows[0].baselines) if self.rows else []

    def summary(self, kind: str = "anytime") -> dict[str, tuple[float, float]]:
        """Per baseline: the geometric mean of the program's ratios over the tasks by ``kind``
        and its repeatability limit (the tasks' errors combined as the suite's fitness combines
        them; NaN where a task's ratio or noise is unknown)."""
        out = {}
        standings = [row.standing(kind) for row in self.rows]
        for name in self.names:
            ratios = np.array([s.ratios[name] for s in standings], dtype=np.float64)
            if not np.isfinite(ratios).all():
                out[name] = (math.nan, math.nan)
                continue
            value = 0.0 if (ratios == 0).any() else float(np.exp(np.log(ratios).mean()))
            errors = [s.errors[name] for s in standings]
            out[name] = (value, suite_uncertainty(value, errors))
        return out

    def table(self, kind: str = "anytime") -> Table:
        """A rich table: metric and best lr per task by ``kind``, and the ratio (± its
        repeatability limit) against each baseline."""
        table = Table(box=None, title=f"{kind} metric", title_justify="left")
        for column in ("task", "metric", "program", "best lr"):
            table.add_column(column, no_wrap=True)
        for name in self.names:
            table.add_column(name, no_wrap=True)
            table.add_column(f"vs {name}", no_wrap=True)
        for row in self.rows:
            standing = row.standing(kind)
            cells = [row.task, row.metric_name, _num(standing.metric), _lr(standing.best_lr)]
            for name in self.names:
                metric, lr = standing.baselines[name]
                cells += [f"{_num(metric)} @ {_lr(lr)}", standing.cell(name)]
            table.add_row(*cells)
        return table

    def to_dict(self) -> dict:
        """Plain data (for JSON): every row's standings, grids and warnings, and the
        summaries."""

        def standing(s: Standing) -> dict:
            return {
                "metric": _json(s.metric),
                "best_lr": s.best_lr,
                "baselines": {
                    n: {"metric": _json(m), "best_lr": lr} for n, (m, lr) in s.baselines.items()
                },
                "ratios": {n: _json(v) for n, v in s.ratios.items()},
                "uncertainties": {n: _json(v) for n, v in s.uncertainties.items()},
            }

        return {
            "seeds": list(self.seeds),
            "rows": [
                {
                    "task": row.task,
                    "metric_name": row.metric_name,
                    **{kind: standing(row.standing(kind)) for kind in KINDS},
                    "lrs": list(row.lrs),
                    "baseline_lrs": {n: list(v) for n, v in row.baseline_lrs.items()},
                    "warnings": list(row.warnings),
                }
                for row in self.rows
            ],
            "summary": {
                kind: {n: [_json(v), _json(u)] for n, (v, u) in self.summary(kind).items()}
                for kind in KINDS
            },
        }


def _json(x: float) -> float | None:
    """JSON has no NaN: None stands for it."""
    return x if math.isfinite(x) else None


def _num(x: float) -> str:
    return "diverged" if x != x else f"{x:.4g}"


def _lr(lr: float | None) -> str:
    return "-" if lr is None else f"{lr:g}"


class _Sweep:
    """One subject's (the program's or a baseline's) metrics by learning rate."""

    def __init__(self, name: str, program: Program):
        self.name, self.program = name, program
        #: kind -> lr -> metric per seed (NaN: diverged)
        self.runs: dict[str, dict[float, np.ndarray]] = {kind: {} for kind in KINDS}
        self.stopped: str | None = None  # why the grid could not be extended further

    def add(self, lrs: Sequence[float], metrics: dict[str, np.ndarray]) -> None:
        for kind, metric in metrics.items():
            for lr, values in zip(lrs, metric, strict=True):
                self.runs[kind][float(lr)] = np.asarray(values, dtype=np.float64)

    @property
    def lrs(self) -> tuple[float, ...]:
        return tuple(sorted(self.runs["anytime"]))

    def _array(self, kind: str) -> np.ndarray:
        return np.stack([self.runs[kind][lr] for lr in self.lrs])

    def best(self, higher: bool, kind: str = "anytime") -> tuple[float | None, float]:
        return best_over_lrs(self._array(kind), self.lrs, higher)

    def at_best(self, higher: bool, kind: str) -> np.ndarray:
        """The per-seed metrics at the best learning rate by ``kind`` (empty: none)."""
        lr, _ = self.best(higher, kind)
        return np.array([]) if lr is None else self.runs[kind][lr]

    def edge(self, higher: bool) -> str | None:
        return grid_edge(self._array("anytime"), self.lrs, higher)


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


def _train(task: Task, programs: list[Program], lrs, seeds, device) -> dict[str, np.ndarray]:
    """``metric[p, l, s]`` of ``programs`` on ``task`` by kind: the anytime metric of the
    fitness (the mean over :data:`~fitness.config.DEFAULT_CHECKPOINTS` validations) and the
    final one (the last); any failure of the task's own code is a one-line :class:`TaskError`
    (a program cannot make training raise: it is interpreted)."""
    try:
        result = train_batch(task, programs, lrs, seeds, device, checkpoints=DEFAULT_CHECKPOINTS)
        return {"anytime": result.metric, "final": result.curve[..., -1]}
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
    metrics = _train(task, [s.program for s in sweeps], lrs, seeds, device)
    for i, sweep in enumerate(sweeps):
        sweep.add(lrs, {kind: metric[i] for kind, metric in metrics.items()})
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
        metrics = _train(task, [sweeps[i].program for i in chosen], new_lrs, seeds, device)
        for k, i in enumerate(chosen):
            j = new_lrs.index(wanted[i])
            sweeps[i].add([wanted[i]], {kind: m[k, j : j + 1] for kind, m in metrics.items()})
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


def _standing(sweeps: list[_Sweep], higher: bool, kind: str) -> Standing:
    """The program (``sweeps[0]``) against the baselines by ``kind``."""
    best_lr, metric = sweeps[0].best(higher, kind)
    own = sweeps[0].at_best(higher, kind)
    base, ratios, errors = {}, {}, {}
    for sweep in sweeps[1:]:
        lr, m = sweep.best(higher, kind)
        base[sweep.name] = (m, lr)
        value = math.nan if math.isnan(metric) and math.isnan(m) else ratio(metric, m, higher)
        ratios[sweep.name] = value
        if math.isfinite(metric) and math.isfinite(m):
            other = sweep.at_best(higher, kind)
            errors[sweep.name] = log_ratio_error(own, cv(other), len(other))
        else:  # a side diverged everywhere: the ratio (0, the cap or none) is exact
            errors[sweep.name] = RatioError(0.0, math.inf)
    return Standing(metric, best_lr, base, ratios, errors)


def baseline_labels(specs: Sequence[str]) -> list[str]:
    """The baselines' names in tables: a known optimizer's own, a file's stem; a
    :class:`ValueError` when two would have the same."""
    labels = [Path(spec).stem if spec.endswith(".py") else spec for spec in specs]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ValueError(f"two baselines named {twice[0]!r}: give the files different names")
    return labels


def replay(
    program: Program | str,
    tasks: Sequence[str | Task] | str | Task | None = None,
    baselines: Sequence[str] | str = ("adamw",),
    lrs: Sequence[float] = DEFAULT_LRS,
    seeds: Sequence[int] = (0,),
    device=None,
    extend: bool = True,
) -> ReplayResult:
    """Train ``program`` and each baseline (known names or program files: a zoo optimizer with
    tuned constants from ``evodisc tune -o``) with a learning-rate sweep on each task (registry
    names, ``path/to/file.py:factory`` specs or Task objects; one of them alone is fine;
    default: the suite). With ``extend`` (the default), a best learning rate on the edge of the
    grid extends that subject's grid (see the module docstring)."""
    main = program if isinstance(program, Program) else resolve_program(program)
    lrs = tuple(sorted({float(x) for x in lrs}))
    if not lrs or not all(0 < x < math.inf for x in lrs):
        raise ValueError("learning rates must be positive finite numbers (at least one)")
    seeds = tuple(int(s) for s in seeds)
    if not 1 <= len(seeds) <= MAX_SEEDS:
        raise ValueError(f"between 1 and {MAX_SEEDS} seeds, not {len(seeds)}")
    device = resolve_device(device)  # a bad device is a DeviceError, not a training failure
    names = [baselines] if isinstance(baselines, str) else list(baselines)
    labels = baseline_labels(names)
    others = {label: resolve_program(name) for label, name in zip(labels, names, strict=True)}
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
        rows.append(
            ReplayRow(
                task.name,
                task.metric,
                *(_standing(sweeps, higher, kind) for kind in KINDS),
                lrs=sweeps[0].lrs,
                baseline_lrs={s.name: s.lrs for s in sweeps[1:]},
                warnings=tuple(warnings),
            )
        )
    return ReplayResult(rows, seeds)
