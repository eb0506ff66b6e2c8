"""Fitness quality: is the fitness signal worth optimizing? (issue 13, part 2)

For every task of the search suite and every held-out task, the zoo's optimizers are trained
together (one batched run per task: programs × learning rates × seeds) and, per seed (each seed
tunes its own learning rate, :mod:`fitness.quality`):

* **CV** — the seed-to-seed coefficient of variation of the baseline's (AdamW's) best metric;
* **ratios** — each optimizer's ratio to AdamW on the same seed, min–max over seeds and mean;
* **spread** — the standard deviation of the optimizers' mean ratios (AdamW's is 1);
* **separation** — the spread divided by the seed-to-seed std of one optimizer's ratio: below
  ~1, a one-seed fitness cannot tell the zoo apart;
* **best lr on an edge** — optimizers whose best learning rate (mean over seeds) is the lowest
  (↓) or highest (↑) of the grid and whose neighbour is worse: their ratio may be understated;
* **proxy fidelity** — Spearman's ρ between the zoo's ranking by mean fitness on the search
  suite and on the held-out tasks;

and each optimizer's fitness (mean of its ratios) on the suite and on the held-out tasks, mean
± standard deviation over seeds (the uncertainty of a one-seed fitness).

    python tools/bench_fitness_quality.py --threads 1                      # full grid, 5 seeds
    python tools/bench_fitness_quality.py --threads 1 --lrs 1e-4,1e-3,1e-2,0.1 --seeds 3
    python tools/bench_fitness_quality.py --threads 1 --json quality.json  # also the raw ratios
    python tools/bench_fitness_quality.py --threads 1 --first-seed 5      # other seeds: 5..9
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import time
from pathlib import Path

import torch

from fitness.config import BASELINE, DEFAULT_LRS
from fitness.quality import TaskQuality, proxy_fidelity, suite_fitness, summary, task_quality
from fitness.tasks import heldout_task_names, load_task, task_names
from fitness.trainer import train_batch
from search_spaces.zoo import load_known

#: The zoo's optimizers compared by default (the baseline first).
DEFAULT_ZOO = (
    "adamw",
    "adam",
    "lion",
    "sgd",
    "momentum",
    "rmsprop",
    "nadam",
    "adabelief",
    "signsgd",
    "adagrad",
)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _fmt(x: float, digits: int = 2) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.{digits}f}"


def _task_row(q: TaskQuality, names: list[str], baseline: str, edges: str) -> str:
    cells = [q.task, f"{100 * q.baseline_cv:.1f} %"]
    for n in names:
        if n == baseline:
            continue
        r = q.ratios[n]
        cells.append(f"{_fmt(r.min())}–{_fmt(r.max())} ({_fmt(r.mean())})")
    cells += [_fmt(q.spread, 3), _fmt(q.separation, 1), edges or "-"]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per task (default 5)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds start here (default 0)")
    parser.add_argument("--lrs", default=None, help="learning-rate grid (default: the suite's)")
    parser.add_argument("--zoo", default=",".join(DEFAULT_ZOO), help="optimizers, comma-separated")
    parser.add_argument("--tasks", default=None, help="only these tasks, comma-separated")
    parser.add_argument("--json", default=None, help="write every per-seed ratio here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.zoo.split(",") if n.strip()]
    if BASELINE not in names:
        names.insert(0, BASELINE)
    lrs = _floats(args.lrs) if args.lrs else DEFAULT_LRS
    seeds = tuple(range(args.first_seed, args.first_seed + args.seeds))
    programs = [load_known(n) for n in names]
    suite, heldout = task_names(), heldout_task_names()
    if args.tasks:
        chosen = set(args.tasks.split(","))
        suite = [t for t in suite if t in chosen]
        heldout = [t for t in heldout if t in chosen]

    started = time.perf_counter()
    qualities: dict[str, TaskQuality] = {}
    edges: dict[str, str] = {}  # task -> optimizers whose best lr is on an edge of the grid
    for name in suite + heldout:
        task = load_task(name)
        t0 = time.perf_counter()
        result = train_batch(task, programs, lrs, seeds, args.device)
        qualities[name] = task_quality(name, result.metric, names, BASELINE, task.higher_is_better)
        arrows = {"low": "↓", "high": "↑"}
        edges[name] = " ".join(
            f"{n}{arrows[e]}" for i, n in enumerate(names) if (e := result.edge(i)) is not None
        )
        print(f"# {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    seconds = time.perf_counter() - started

    others = [n for n in names if n != BASELINE]
    print()
    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} thread(s), device {args.device}; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {seconds:.0f} s"
    )
    print(f"grid: {', '.join(f'{x:g}' for x in lrs)}; seeds: {seeds}; baseline: {BASELINE}")
    print()
    header = ["task", f"{BASELINE} CV"] + [f"{n} / {BASELINE}" for n in others]
    header += ["spread", "separation", "best lr on an edge"]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for name in suite + heldout:
        row = _task_row(qualities[name], names, BASELINE, edges[name])
        print(row.replace(f"| {name} |", f"| {name} (held out) |") if name in heldout else row)

    groups = [
        ("suite", [qualities[t] for t in suite]),
        ("held out", [qualities[t] for t in heldout]),
    ]
    groups = [(label, qs) for label, qs in groups if qs]
    print()
    print(
        "| optimizer | " + " | ".join(f"fitness, {label} (mean ± sd)" for label, _ in groups) + " |"
    )
    print("| --- |" + " --- |" * len(groups))
    for n in names:
        cells = []
        for _, qs in groups:
            f = suite_fitness(qs, n)
            cells.append(f"{f.mean():.3f} ± {f.std(ddof=1) if f.size > 1 else 0:.3f}")
        print(f"| {n} | " + " | ".join(cells) + " |")
    rho = math.nan
    if len(groups) == 2:
        rho = proxy_fidelity(groups[0][1], groups[1][1], names)
        print()
        print(
            f"proxy fidelity: Spearman rho (suite vs held out, {len(names)} optimizers) = {rho:.2f}"
        )

    if args.json:
        doc = {
            "lrs": list(lrs),
            "seeds": list(seeds),
            "zoo": names,
            "suite": suite,
            "heldout": heldout,
            "spearman": rho,
            "seconds": seconds,
            "tasks": summary(qualities, names),
        }
        Path(args.json).write_text(json.dumps(doc, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
