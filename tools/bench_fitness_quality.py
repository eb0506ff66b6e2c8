"""Fitness quality: is the fitness signal worth optimizing? (issue 13)

For every task of the search suite and every held-out task, the zoo's optimizers are trained
together (one batched run per task: programs × learning rates × seeds, with the suite's anytime
metric) and, per seed (each seed tunes its own learning rate, :mod:`fitness.quality`):

* **CV** — the seed-to-seed coefficient of variation of the baseline's (AdamW's) best metric,
  for one seed and at the default settings (its mean over the baseline's seeds: CV / √S_b);
* **ratios** — each optimizer's ratio to AdamW on the same seed, min–max over seeds and mean;
* **spread** — the standard deviation of the optimizers' mean ratios (AdamW's is 1);
* **separation** — the spread over the noise of one optimizer's ratio: for one seed, and at the
  default settings (a candidate's mean over its seeds against the baseline's over its own);
* **best lr on an edge** — optimizers whose best learning rate (mean over seeds) is the lowest
  (↓) or highest (↑) of the grid and whose neighbour is worse: their ratio may be understated;

then the **fitness itself** (:func:`fitness.quality.fitness_on_seeds`, the code of
:mod:`fitness.suite`) of every optimizer at the default settings on two disjoint sets of seeds —
does a re-run with other seeds stay within the reported uncertainty? — on all suite seeds, and
on the held-out tasks; and the **proxy fidelity**: Spearman's ρ between the zoo's ranking by
suite fitness and by held-out fitness.

    python tools/bench_fitness_quality.py --threads 1 --json quality.json  # the full protocol
    python tools/bench_fitness_quality.py --threads 1 --tasks digits_mlp,breast_cancer_logreg \
        --zoo adamw,sgd --seeds 6 --candidate-seeds 1 --baseline-seeds 2      # a quick look
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

from fitness.config import (
    BASELINE,
    DEFAULT_BASELINE_SEEDS,
    DEFAULT_CHECKPOINTS,
    DEFAULT_LRS,
    DEFAULT_SEEDS,
)
from fitness.quality import TaskQuality, study, summary
from fitness.suite import Fitness
from fitness.tasks import heldout_task_names, task_names

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


def _task_row(q: TaskQuality, names: list[str], cells: list[str]) -> str:
    row = [q.task, *cells[:2]]
    for n in names[1:]:
        r = q.ratios[n]
        row.append(f"{_fmt(r.min())}–{_fmt(r.max())} ({_fmt(r.mean())})")
    row += [_fmt(q.spread, 3), *cells[2:]]
    return "| " + " | ".join(row) + " |"


def _percent(x: float) -> str:
    return f"{100 * x:.1f} %"


def _fitness_cell(f: Fitness) -> str:
    return (
        f"{f.value:.3f} ± {f.uncertainty:.3f}" if math.isfinite(f.uncertainty) else f"{f.value:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--seeds", type=int, default=None, help="seeds per suite task (default: 2 × baseline's)"
    )
    parser.add_argument("--heldout-seeds", type=int, default=5, help="seeds per held-out task")
    parser.add_argument(
        "--candidate-seeds", type=int, default=len(DEFAULT_SEEDS), help="a candidate's seeds"
    )
    parser.add_argument(
        "--baseline-seeds", type=int, default=len(DEFAULT_BASELINE_SEEDS), help="the baseline's"
    )
    parser.add_argument("--checkpoints", type=int, default=DEFAULT_CHECKPOINTS)
    parser.add_argument("--lrs", default=None, help="learning-rate grid (default: the suite's)")
    parser.add_argument("--zoo", default=",".join(DEFAULT_ZOO), help="optimizers, comma-separated")
    parser.add_argument("--tasks", default=None, help="only these tasks, comma-separated")
    parser.add_argument("--json", default=None, help="write every per-seed ratio here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.zoo.split(",") if n.strip()]
    names = [BASELINE] + [n for n in names if n != BASELINE]
    lrs = _floats(args.lrs) if args.lrs else DEFAULT_LRS
    cand, base = args.candidate_seeds, args.baseline_seeds
    count = args.seeds or 2 * max(cand, base)
    if count < 2 * max(cand, base):
        parser.error(f"--seeds must be at least {2 * max(cand, base)}: two disjoint seed sets")
    suite, heldout = task_names(), heldout_task_names()
    if args.tasks:
        chosen = set(args.tasks.split(","))
        suite = [t for t in suite if t in chosen]
        heldout = [t for t in heldout if t in chosen]

    started = time.perf_counter()
    result = study(
        names,
        suite,
        heldout,
        lrs,
        seeds=count,
        heldout_seeds=args.heldout_seeds,
        candidate_seeds=cand,
        baseline_seeds=base,
        device=args.device,
        checkpoints=args.checkpoints,
        trained=lambda task, seconds: print(f"# {task}: {seconds:.0f} s", flush=True),
    )
    seconds = time.perf_counter() - started
    arrows = {"low": "↓", "high": "↑"}
    edges = {  # task -> optimizers whose best lr is on an edge of the grid
        task: " ".join(
            f"{n}{arrows[e]}" for i, n in enumerate(names) if (e := batch.edge(i)) is not None
        )
        for task, batch in result.results.items()
    }
    print()
    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} thread(s), device {args.device}; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {seconds:.0f} s"
    )
    print(
        f"grid: {', '.join(f'{x:g}' for x in lrs)}; checkpoints {args.checkpoints}; "
        f"suite seeds 0-{count - 1}, held-out seeds 0-{args.heldout_seeds - 1}; "
        f"default settings: {cand} seed(s) per candidate, {base} for the baseline ({BASELINE})"
    )
    print()
    header = ["task", f"{BASELINE} CV, 1 seed", f"{BASELINE} CV, {base} seeds"]
    header += [f"{n} / {BASELINE}" for n in names[1:]]
    header += ["spread", "separation, 1 seed", f"separation, {cand} vs {base} seeds"]
    header += ["best lr on an edge"]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for name in suite + heldout:
        q = result.qualities[name]
        # a candidate's ratio at the default settings: noise of its mean over `cand` seeds and
        # of the baseline's over `base` seeds, each seed's noise that of one seed's ratio
        default_noise = math.sqrt(1 / cand + 1 / base) / math.sqrt(2)
        cells = [
            _percent(q.baseline_cv),
            _percent(q.baseline_cv / math.sqrt(base)),
            _fmt(q.separation, 1),
            _fmt(q.separation / default_noise, 1),
            edges[name] or "-",
        ]
        row = _task_row(q, names, cells)
        print(row.replace(f"| {name} |", f"| {name} (held out) |") if name in heldout else row)

    first, second, every, held = result.first, result.second, result.every, result.held
    other = max(cand, base)
    a = f"seeds 0-{cand - 1} / 0-{base - 1}"
    b = f"seeds {other}-{other + cand - 1} / {other}-{other + base - 1}"
    print()
    print(
        f"| optimizer | suite, {a} | suite, {b} | moved | within | suite, all {count} seeds "
        f"| held out, {args.heldout_seeds} seeds |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n in names:
        print(
            f"| {n} | {_fitness_cell(first[n])} | {_fitness_cell(second[n])} | "
            f"{result.moved(n):.3f} | {'yes' if result.within(n) else 'no'} | "
            f"{_fitness_cell(every[n])} | {_fitness_cell(held[n])} |"
        )
    within = sum(map(result.within, names))
    rho, rho_all = result.rho(), result.rho(every_seed=True)
    print()
    print(f"re-run with other seeds: {within} of {len(names)} within the reported uncertainty")
    print(
        f"proxy fidelity: Spearman rho (suite vs held out, {len(names)} optimizers) = "
        f"{rho:.2f} at the default settings, {rho_all:.2f} on all {count} suite seeds"
    )

    if args.json:
        doc = {
            "lrs": list(lrs),
            "seeds": count,
            "heldout_seeds": args.heldout_seeds,
            "zoo": names,
            "suite": suite,
            "heldout": heldout,
            "spearman": rho,
            "spearman_all_seeds": rho_all,
            "seconds": seconds,
            "tasks": summary(result.qualities, names),
            "fitness": {
                label: {n: [f.value, f.uncertainty] for n, f in fits.items()}
                for label, fits in (
                    ("first", first),
                    ("second", second),
                    ("all", every),
                    ("heldout", held),
                )
            },
        }
        Path(args.json).write_text(json.dumps(doc, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
