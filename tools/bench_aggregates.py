"""Selection that one task cannot carry: which aggregate of the suite's per-task ratios ranks the
zoo as the held-out tasks do? (issue 19, item 5)

The zoo's ten optimizers are trained once on every task, with the seeds of the fitness-quality
study (``tools/bench_fitness_quality.py``: 16 seeds per suite task, 5 per held-out task), and
the arrays are reused for every aggregate: per optimizer its per-task ratios at the default
settings (candidate seeds 0-2 against the baseline on 0-7, as a search scores it), then the
suite's value under each aggregate of :mod:`fitness.aggregate` (the registered ones, and the
power means and worst-k means around them), and Spearman's ρ between the suite's ranking and
the held-out ranking — held out under the geometric mean, and under the same aggregate. The
Pareto ranking across the tasks' ratios (DEAP's non-dominated sort) is measured alone (its
ties at their average rank) and with the geometric mean breaking its ties.

    python tools/bench_aggregates.py --threads 1 --save zoo.npz   # trains (~15 min on a CPU)
    python tools/bench_aggregates.py --load zoo.npz               # the table again, no training
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from bench_fitness_quality import DEFAULT_ZOO

from fitness.aggregate import AGGREGATES, Aggregate, pareto_ranks, power_mean, worst
from fitness.config import BASELINE, DEFAULT_BASELINE_SEEDS, DEFAULT_LRS, DEFAULT_SEEDS
from fitness.normalise import suite_value
from fitness.quality import fitness_on_seeds, spearman, study
from fitness.suite import Fitness
from fitness.tasks import heldout_task_names, task_names
from fitness.trainer import BatchResult

#: Aggregates measured beside the registered ones (name → function).
VARIANTS: dict[str, Aggregate] = {
    **{f"power mean p = {p:g}": power_mean(p) for p in (-0.5, -1.0, -2.0, -4.0, -8.0)},
    **{f"worst {k} of the tasks": worst(lambda tasks, k=k: k) for k in (2, 3)},
}

_FIELDS = ("metric", "diverged")


def save(path: str, results: Mapping[str, BatchResult]) -> None:
    """The trained arrays and what they mean, in one ``.npz`` file."""
    meta = {
        task: {
            "metric_name": r.metric_name,
            "higher_is_better": r.higher_is_better,
            "lrs": list(r.lrs),
            "seeds": list(r.seeds),
            "seconds": r.seconds,
        }
        for task, r in results.items()
    }
    arrays = {f"{task}/{f}": getattr(r, f) for task, r in results.items() for f in _FIELDS}
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)


def load(path: str) -> dict[str, BatchResult]:
    """What :func:`save` wrote (no pickles: plain arrays and JSON)."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        return {
            task: BatchResult(
                task,
                m["metric_name"],
                m["higher_is_better"],
                tuple(m["lrs"]),
                tuple(m["seeds"]),
                data[f"{task}/metric"],
                data[f"{task}/diverged"],
                m["seconds"],
            )
            for task, m in meta.items()
        }


def train(names: Sequence[str], suite_seeds: int, heldout_seeds: int) -> dict[str, BatchResult]:
    """Every optimizer of ``names`` on every task: the fitness-quality study's runs."""
    return study(
        names,
        task_names(),
        heldout_task_names(),
        DEFAULT_LRS,
        seeds=suite_seeds,
        heldout_seeds=heldout_seeds,
        candidate_seeds=len(DEFAULT_SEEDS),
        baseline_seeds=len(DEFAULT_BASELINE_SEEDS),
        trained=lambda task, seconds: print(f"# {task}: {seconds:.0f} s", flush=True),
    ).results


@dataclass(frozen=True)
class Row:
    """One aggregate (or ranking): the zoo's suite values at the default settings, Spearman's ρ
    against the held-out ranking under the geometric mean, under the same aggregate, and with
    all suite seeds; for an aggregate also the median relative uncertainty of the values and how
    many optimizers a re-run on other seeds moved by less than it."""

    name: str
    values: list[float]
    rho: float
    rho_same: float
    rho_all: float
    uncertainty: float = math.nan
    within: int | None = None


def _pareto_scores(fits: Mapping[str, Fitness], names: Sequence[str], tie_break: bool):
    """Higher is better: minus the Pareto rank, ties broken by the geometric mean if asked."""
    ratios = [[t.ratio for t in fits[n].tasks.values()] for n in names]
    ranks = pareto_ranks(ratios)
    if not tie_break:
        return [-float(r) for r in ranks]
    order = sorted(range(len(ranks)), key=lambda i: (ranks[i], -suite_value(ratios[i], "geomean")))
    return [-float(order.index(i) + 1) for i in range(len(ranks))]


def fidelity_table(results: Mapping[str, BatchResult], names: Sequence[str]) -> list[Row]:
    """A :class:`Row` per aggregate of :data:`AGGREGATES` and :data:`VARIANTS`, then the Pareto
    rankings."""
    suite, heldout = task_names(), heldout_task_names()
    cand, base = len(DEFAULT_SEEDS), len(DEFAULT_BASELINE_SEEDS)
    other = max(cand, base)
    on_suite = {t: results[t] for t in suite}
    every = len(results[suite[0]].seeds)
    default = fitness_on_seeds(on_suite, names, BASELINE, range(cand), range(base))
    later = range(other, other + cand), range(other, other + base)
    second = fitness_on_seeds(on_suite, names, BASELINE, *later)
    all_seeds = fitness_on_seeds(on_suite, names, BASELINE, range(every), range(every))
    held_seeds = range(len(results[heldout[0]].seeds))
    held = fitness_on_seeds(
        {t: results[t] for t in heldout}, names, BASELINE, held_seeds, held_seeds, "geomean"
    )
    held_geomean = [held[n].value for n in names]
    rows = []
    aggregates = {f"{name} (registered)": a for name, a in AGGREGATES.items()} | VARIANTS
    for name, aggregate in aggregates.items():
        first, again, on_all, out = (
            [Fitness.of(fits[n].tasks, aggregate) for n in names]
            for fits in (default, second, all_seeds, held)
        )
        values = [f.value for f in first]
        within = sum(
            abs(a.value - b.value) < math.hypot(a.uncertainty, b.uncertainty) / math.sqrt(2)
            for a, b in zip(first, again, strict=True)
        )
        rows.append(
            Row(
                name,
                values,
                spearman(values, held_geomean),
                spearman(values, [f.value for f in out]),
                spearman([f.value for f in on_all], held_geomean),
                float(np.median([f.uncertainty / f.value for f in first])),
                within,
            )
        )
    for name, tie_break in (
        ("Pareto rank (ties averaged)", False),
        ("Pareto rank, geomean breaks ties", True),
    ):
        values = _pareto_scores(default, names, tie_break)
        rows.append(
            Row(
                name,
                values,
                spearman(values, held_geomean),
                spearman(values, _pareto_scores(held, names, tie_break)),
                spearman(_pareto_scores(all_seeds, names, tie_break), held_geomean),
            )
        )
    return rows


def _fmt(x: float) -> str:
    return f"{x:.2f}" if math.isfinite(x) else "nan"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seeds", type=int, default=16, help="seeds per suite task")
    parser.add_argument("--heldout-seeds", type=int, default=5, help="seeds per held-out task")
    parser.add_argument("--save", default=None, help="write the trained arrays here (.npz)")
    parser.add_argument("--load", default=None, help="read them from here instead of training")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = list(DEFAULT_ZOO)
    started = time.perf_counter()
    results = load(args.load) if args.load else train(names, args.seeds, args.heldout_seeds)
    if args.save:
        save(args.save, results)
    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} thread(s), cpu; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; "
        f"{time.perf_counter() - started:.0f} s{' (arrays loaded)' if args.load else ''}"
    )
    print()
    header = ["aggregate", *names, "ρ vs held out (geomean)", "ρ vs held out (same)"]
    header += ["ρ, all suite seeds", "median uncertainty", "re-run within"]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in fidelity_table(results, names):
        pareto = row.name.startswith("Pareto")
        cells = [f"{-v:g}" if pareto else f"{v:.3f}" for v in row.values]
        cells += [_fmt(row.rho), _fmt(row.rho_same), _fmt(row.rho_all)]
        cells.append("-" if pareto else f"{100 * row.uncertainty:.1f} %")
        cells.append("-" if row.within is None else f"{row.within} of {len(names)}")
        print("| " + " | ".join([row.name, *cells]) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
