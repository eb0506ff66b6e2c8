"""The zoo with tuned constants: which published optimizer is the one to beat on the search suite.

A rule counts as a discovery only against the best zoo optimizer *with tuned constants*
(DESIGN.md §4). This scores every published optimizer at its own constants on the suite (one
batched evaluation), tunes the ``--top`` best (:func:`fitness.tuning.tune`: coordinate search on
the suite's seeds, cached under ``$EVODISC_CACHE/tuned/``), writes each tuned program to
``--out`` (``tuned_<name>.py``: a baseline for ``evodisc replay --baseline FILE``) with
``tuned.json`` (every optimizer's fitness at its own constants and, when tuned, with its tuned
ones; best tuned first) and prints a markdown table. Tuned values are optimistic on the seeds
they were tuned on: compare on other seeds (``tools/suite_compare.py``) or on held-out tasks.

    python tools/tune_zoo.py --top 6 --out experiments/results/tuned_zoo
"""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from pathlib import Path

from evodisc.files import atomic_write
from evodisc.program import format_constant, format_program
from fitness.config import SuiteConfig
from fitness.suite import evaluate
from fitness.tuning import Tuned, tune
from search_spaces.zoo import load_known, zoo


def _plus_minus(value: float, limit: float) -> str:
    return f"{value:.3f} ± {limit:.3f}" if limit == limit else f"{value:.3f}"


def _write(out: Path, name: str, tuned: Tuned, config: SuiteConfig) -> Path:
    """``out/tuned_<name>.py``: the tuned program, its docstring saying how it was tuned."""
    values = ", ".join(f"{k} = {format_constant(v)}" for k, v in tuned.tuned.items()) or "none"
    seeds = ", ".join(str(s) for s in config.seeds)
    doc = textwrap.fill(
        f"{name} with its named constants tuned on the search suite {', '.join(config.tasks)} "
        f"(seeds {seeds}; tools/tune_zoo.py): {values}. Fitness at its own constants "
        f"{_plus_minus(tuned.default_fitness.value, tuned.default_fitness.uncertainty)}, tuned "
        f"{_plus_minus(tuned.fitness.value, tuned.fitness.uncertainty)} ({tuned.variants} "
        "variants trained).",
        width=96,
    )
    path = out / f"tuned_{name}.py"
    atomic_write(path, f'"""{doc}\n"""\n\n\n' + format_program(tuned.program))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=6, help="optimizers tuned (default 6)")
    parser.add_argument("--out", type=Path, required=True, help="folder for tuned_<name>.py")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the constants (2)")
    args = parser.parse_args()
    config = SuiteConfig()
    names = sorted(zoo())
    start = time.perf_counter()
    fitnesses = evaluate([load_known(n) for n in names], config)
    print(
        f"{len(names)} zoo optimizers at their own constants: {time.perf_counter() - start:.0f} s"
    )
    ranked = sorted(zip(names, fitnesses, strict=True), key=lambda x: -x[1].value)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, _ in ranked[: args.top]:
        start = time.perf_counter()
        tuned = tune(load_known(name), config, rounds=args.rounds)
        path = _write(args.out, name, tuned, config)
        seconds = time.perf_counter() - start
        print(f"{name}: tuned in {seconds:.0f} s ({tuned.variants} variants) → {path}")
        rows.append((name, tuned))
    rows.sort(key=lambda r: -r[1].fitness.value)
    summary = [
        {
            "name": name,
            "file": f"tuned_{name}.py",
            "default": [tuned.default_fitness.value, tuned.default_fitness.uncertainty],
            "tuned": [tuned.fitness.value, tuned.fitness.uncertainty],
            "constants": tuned.tuned,
            "variants": tuned.variants,
        }
        for name, tuned in rows
    ] + [{"name": name, "default": [f.value, f.uncertainty]} for name, f in ranked[args.top :]]
    atomic_write(args.out / "tuned.json", json.dumps(summary, indent=1) + "\n")
    print("\n| optimizer | own constants | tuned | tuned constants |")
    print("| --- | ---: | ---: | --- |")
    for name, tuned in rows:
        values = ", ".join(f"{k} = {format_constant(v)}" for k, v in tuned.tuned.items())
        own = _plus_minus(tuned.default_fitness.value, tuned.default_fitness.uncertainty)
        best = _plus_minus(tuned.fitness.value, tuned.fitness.uncertainty)
        print(f"| {name} | {own} | {best} | {values or '—'} |")
    for name, fit in ranked[args.top :]:
        print(f"| {name} | {_plus_minus(fit.value, fit.uncertainty)} | not tuned | |")


if __name__ == "__main__":
    main()
