"""Benchmark a campaign on a user's task file: how often the file is imported and the model's
memory cost measured per evaluation request, and trained candidates per second.

The task (written to a temporary directory) is a small regression MLP whose file counts its own
imports in a side file; the model-cost measurements are counted by wrapping
``fitness.batch_size._measure``, the requests by wrapping ``InProcessPool.submit``. The campaign
runs in-process (``--no-ray``), so every count is this process's.

    python tools/bench_user_task.py                              # this tree, once
    python tools/bench_user_task.py --trees /old/tree . --rounds 3
        # interleaved: each round runs every tree once (PYTHONPATH=tree), then medians

Output of one run: a JSON line (imports, measurements, requests, trained candidates, seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASK = """
from pathlib import Path

import torch

from fitness.tasks import TaskData

with open(Path(__file__).with_suffix(".imports"), "a") as counter:
    counter.write("x")


class Regression:
    name = "bench_regression"
    description = "MLP 8-32-1 fits a fixed random linear map"
    steps = 60
    batch_size = 32
    metric = "val mse"
    higher_is_better = False

    def data(self):
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(512, 8, generator=generator)
        y = x @ torch.randn(8, 1, generator=generator)
        return TaskData(x[:384], y[:384], x[384:], y[384:])

    def model(self):
        return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))

    def loss(self, output, target):
        return ((output - target) ** 2).mean()

    def score(self, output, target):
        return ((output - target) ** 2).mean()


def factory():
    return Regression()
"""

CAMPAIGN = """
[campaign]
seed = 0

[evolution]
population = 16
tournament = 4
warm_start = ["adamw", "sgd", "lion"]

[budget]
evaluations = {evaluations}

[fitness]
tasks = ["{task}"]
lrs = [1e-3, 1e-2, 0.1]
seeds = [0]
baseline_seeds = [0, 1]

[resources]
evaluators = 0
batch_size = 4
"""


def run_once(evaluations: int) -> dict:
    """One in-process campaign on the task, in a fresh cache; the counts and the rate."""
    import torch

    from evodisc.campaign import evaluators
    from evodisc.campaign.config import check_tasks, load_campaign
    from evodisc.campaign.run import run_campaign
    from fitness import batch_size

    torch.set_num_threads(1)
    counts = {"measurements": 0, "requests": 0}

    def counted(name: str, function):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return function(*args, **kwargs)

        return wrapper

    batch_size._measure = counted("measurements", batch_size._measure)
    evaluators.InProcessPool.submit = counted("requests", evaluators.InProcessPool.submit)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["EVODISC_CACHE"] = str(root / "cache")
        (root / "task.py").write_text(TASK)
        campaign_file = root / "bench.toml"
        task = f"{root / 'task.py'}:factory"
        campaign_file.write_text(CAMPAIGN.format(evaluations=evaluations, task=task))
        campaign = check_tasks(load_campaign(campaign_file))
        start = time.perf_counter()
        run_campaign(campaign, root / "run", no_ray=True)
        seconds = time.perf_counter() - start
        import pyarrow.parquet as pq

        log = pq.read_table(root / "run" / "log").to_pylist()
        trained = sum(1 for r in log if not r["cache_hit"] and r["status"] != "invalid")
        imports = len((root / "task.imports").read_text())
    return {
        "imports": imports,
        **counts,
        "trained": trained,
        "seconds": seconds,
        "trained_per_second": trained / seconds,
    }


def interleave(trees: list[str], rounds: int, evaluations: int) -> None:
    """Each round runs this script once per tree (``PYTHONPATH=tree``); prints medians."""
    runs: dict[str, list[dict]] = {tree: [] for tree in trees}
    for _ in range(rounds):
        for tree in trees:
            env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
            command = [sys.executable, __file__, "--evaluations", str(evaluations)]
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            runs[tree].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"# {tree}: {runs[tree][-1]}", flush=True)
    print("| tree | imports / request | model-cost measurements / request | trained / s |")
    print("| --- | --- | --- | --- |")
    for tree, results in runs.items():

        def median(key: str, per_request: bool = False, results=results) -> str:
            values = [r[key] / (r["requests"] if per_request else 1) for r in results]
            low, high = min(values), max(values)
            return f"{statistics.median(values):.2f} ({low:.2f}–{high:.2f})"

        print(
            f"| {tree} | {median('imports', True)} | {median('measurements', True)} | "
            f"{median('trained_per_second')} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evaluations", type=int, default=120)
    parser.add_argument("--trees", nargs="+", help="source trees to compare, interleaved")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.trees:
        interleave(args.trees, args.rounds, args.evaluations)
    else:
        print(json.dumps(run_once(args.evaluations)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
