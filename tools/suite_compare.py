"""Rules against a reference on the search suite, on seeds no search or tuning has seen.

A campaign's best and a tuned zoo optimizer are each the best of many on their own seeds, so
both are optimistic there. This re-scores every program given (files or known names) with the
fitness of the suite (:func:`fitness.suite.evaluate`, one batched run per task) on fresh seeds
and prints a markdown table: each one's fitness with its uncertainty, each task's ratio, and its
fitness over the reference's with the repeatability limit of that ratio
(:func:`fitness.uncertainty.ratio_uncertainty`).

    python tools/suite_compare.py found.py tuned_cautious_adamw.py adamw \\
        --reference tuned_cautious_adamw.py --seeds 8-15
"""

from __future__ import annotations

import argparse
import time

from fitness.config import SuiteConfig
from fitness.suite import evaluate
from fitness.uncertainty import ratio_uncertainty
from search_spaces.zoo import resolve_program


def _seeds(text: str) -> tuple[int, ...]:
    first, _, last = text.partition("-")
    return tuple(range(int(first), int(last or first) + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("programs", nargs="+", help="program files or known names")
    parser.add_argument("--reference", required=True, help="the program the ratios are against")
    parser.add_argument("--seeds", type=_seeds, default=_seeds("8-15"), help="e.g. 8-15")
    args = parser.parse_args()
    specs = list(dict.fromkeys([args.reference, *args.programs]))
    config = SuiteConfig(seeds=args.seeds)
    start = time.perf_counter()
    fitnesses = evaluate([resolve_program(s) for s in specs], config)
    print(f"{len(specs)} programs on seeds {args.seeds}: {time.perf_counter() - start:.0f} s\n")
    reference = fitnesses[0]
    tasks = list(config.tasks)
    print(f"| program | fitness | {' | '.join(tasks)} | vs {args.reference} |")
    print("| --- | ---: |" + " ---: |" * (len(tasks) + 1))
    for spec, fit in zip(specs, fitnesses, strict=True):
        ratio = fit.value / reference.value
        limit = ratio_uncertainty(
            fit.value, fit.uncertainty, reference.value, reference.uncertainty
        )
        against = "reference" if fit is reference else f"{ratio:.3f} ± {limit:.3f}"
        cells = [f"{fit.tasks[t].ratio:.3f}" for t in tasks]
        print(
            f"| {spec} | {fit.value:.3f} ± {fit.uncertainty:.3f} | {' | '.join(cells)} "
            f"| {against} |"
        )


if __name__ == "__main__":
    main()
