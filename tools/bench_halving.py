"""How faithful learning-rate halving is (``[fitness] keep_lrs``, docs/campaigns.md): for each
cut (a fraction of the steps) and each number of learning rates kept, how often a program's best
learning rate at the end of the whole grid is among its ``k`` best at the cut, how much of its
metric is lost when it is not, and what the halved grid costs.

The programs: zoo optimizers and random valid mutants of AdamW (1–3 mutations each: the stream
of a warm-started search); the four suite tasks, the default grid and seeds. Every program ×
learning rate × seed trains once per task with the whole grid, validated at each cut (which
does not change training), so each (cut, k) is read off the same runs.

    python tools/bench_halving.py [--mutants 32] [--seed 0]

Results: docs/benchmarks.md, "The funnel with learning-rate halving".
"""

from __future__ import annotations

import argparse
import math
import os
import random

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from evodisc.program import Program  # noqa: E402
from evodisc.validity import check_candidate  # noqa: E402
from fitness.config import DEFAULT_LRS, DEFAULT_SEEDS  # noqa: E402
from fitness.tasks import load_task, task_names  # noqa: E402
from fitness.trainer import BatchedRun  # noqa: E402
from search_spaces.mutations import MUTATIONS  # noqa: E402
from search_spaces.zoo import load_known  # noqa: E402

ZOO = ("adamw", "lion", "momentum", "sgd", "adabelief", "signsgd", "rmsprop", "nadam")
CUTS = (1 / 16, 1 / 8, 1 / 4)
KEEP = (1, 2, 3)


def mutants(count: int, seed: int) -> list[Program]:
    """``count`` functionally distinct valid mutants of AdamW (1–3 random mutations each)."""
    rng, seen, found = random.Random(seed), set(), []
    while len(found) < count:
        program = load_known("adamw")
        for _ in range(rng.choice((1, 1, 2, 3))):
            program = MUTATIONS[rng.choice(list(MUTATIONS))](program, rng)
        validity = check_candidate(program, 15, 3)
        if validity.valid and validity.functional_hash not in seen:
            seen.add(validity.functional_hash)
            found.append(program)
    return found


def per_lr_at_cuts(task_name: str, programs: list[Program]) -> tuple[dict, np.ndarray, bool]:
    """Per cut, the ``(P, L)`` mean-over-seeds validation metric then (NaN where a seed is
    dead); the ``(P, L)`` final metric of the whole grid; whether higher is better."""
    task = load_task(task_name)
    run = BatchedRun(task, programs, DEFAULT_LRS, DEFAULT_SEEDS, checkpoints=8)
    shape = (len(programs), len(DEFAULT_LRS), len(DEFAULT_SEEDS))
    at, done = {}, 0
    for cut in CUTS:
        step = max(1, math.ceil(cut * task.steps))
        run._train_steps(done, step, cuda_graphs=False)
        done = step
        scores = torch.where(run.alive, run.validate(), torch.nan).view(shape)
        at[cut] = scores.mean(dim=2).double().numpy()
    run._train_steps(done, task.steps, cuda_graphs=False)
    result = run.evaluate()
    return at, result.metric.mean(axis=2), result.higher_is_better


def fidelity(programs: list[Program]) -> dict[tuple[float, int], tuple[int, int, list]]:
    """Per (cut, k): pairs seen, pairs whose best learning rate was kept, relative losses."""
    stats = {(cut, k): [0, 0, []] for cut in CUTS for k in KEEP}
    for name in task_names():
        at, final, higher = per_lr_at_cuts(name, programs)
        sign = 1.0 if higher else -1.0
        for p in range(len(programs)):
            end = np.where(np.isfinite(final[p]), sign * final[p], -np.inf)
            if not np.isfinite(end).any():
                continue
            best = int(np.argmax(end))
            for cut in CUTS:
                early = np.where(np.isfinite(at[cut][p]), sign * at[cut][p], -np.inf)
                order = np.argsort(-early, kind="stable")
                for k in KEEP:
                    entry = stats[(cut, k)]
                    entry[0] += 1
                    entry[1] += best in order[:k]
                    lost = end[best] - end[order[:k]].max()
                    entry[2].append(lost / max(abs(end[best]), 1e-12))
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    programs = [load_known(n) for n in ZOO] + mutants(args.mutants, args.seed)
    stats = fidelity(programs)
    print("| cut at | keep k | best kept | relative metric lost, median / 90th pct | cost |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for (cut, k), (seen, kept, lost) in stats.items():
        lost = np.array(lost)
        cost = cut + (1 - cut) * k / len(DEFAULT_LRS)
        print(
            f"| {cut:g} | {k} | {kept}/{seen} ({kept / seen:.1%}) | "
            f"{np.median(lost):.2g} / {np.quantile(lost, 0.9):.2g} | {cost:.2f} |"
        )


if __name__ == "__main__":
    main()
