"""Benchmark whole campaigns: Ray's overhead against ``--no-ray``, and the scaling of evaluated
candidates per second with 1, 2, 4 evaluator actors on a multi-node Ray cluster on loopback.

Both parts run the same small campaign (the quickstart's two tasks and learning-rate grid, random
initial programs, a fixed seed and an evaluation budget), written to a temporary directory.

1. Overhead: ``evodisc run FILE --quiet`` in a fresh subprocess, ``evaluators = 0`` (in-process)
   against ``evaluators = 1`` (one actor on an embedded local Ray), interleaved (A B B A …).
2. Scaling: a ``ray.cluster_utils.Cluster`` in this process (a head without CPUs for the driver,
   and worker nodes), :func:`evodisc.campaign.run.run_campaign` with ``address=`` the cluster's,
   1, 2 and 4 actors of one CPU each (the same ``in_flight`` for all), interleaved.

The rate is *trained candidates per second of the campaign*: log rows that were trained (not a
cache hit; status ok, diverged or error) over the log's ``wall_time`` span (the controller's
clock: it starts once the evaluators are up and the baselines known, so Ray's start-up is not in
it). Start-up (process, imports, Ray, actors, baselines) and teardown are reported apart: the
process's wall time minus that span. The baselines are computed once, before any timed run, into
a private ``EVODISC_CACHE``.

    python tools/bench_campaign.py [--evaluations 240] [--repeats 3] [--actors 1 2 4]
    python tools/bench_campaign.py --skip-scaling      # only Ray vs --no-ray
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

CAMPAIGN = """\
# bench_campaign.py: the quickstart's tasks and grid, a fixed seed and budget
[campaign]
name = "bench"
seed = {seed}

[space]
state = ["m", "v"]
max_statements = 15
max_state_slots = 3

[evolution]
population = 16
tournament = 4
warm_start = []
random_programs = 16

[budget]
evaluations = {evaluations}

[fitness]
tasks = ["teacher_student", "ill_conditioned"]
lrs = [1e-3, 3e-3, 1e-2, 3e-2, 0.1]
seeds = [0]
dtype = "float32"

[resources]
evaluators = {evaluators}
cpus_per_evaluator = 1
batch_size = {batch_size}
in_flight = {in_flight}
"""

TRAINED = ("ok", "diverged", "error")


def write_campaign(root: Path, name: str, evaluations: int, evaluators: int, seed: int,
                   batch_size: int = 8, in_flight: int = 16) -> Path:  # fmt: skip
    path = root / f"{name}.toml"
    path.write_text(CAMPAIGN.format(evaluations=evaluations, evaluators=evaluators, seed=seed,
                                    batch_size=batch_size, in_flight=in_flight))  # fmt: skip
    return path


def summarise(directory: Path) -> dict:
    """Rows, trained rows, the wall_time span, trained per second, per node and worker."""
    from evodisc.campaign.store import CandidateLog

    rows = CandidateLog(directory).read().to_pylist()
    trained = [r for r in rows if not r["cache_hit"] and r["status"] in TRAINED]
    span = max(r["wall_time"] for r in rows)
    busy = sum(r["eval_seconds"] for r in trained)
    return {
        "rows": len(rows),
        "trained": len(trained),
        "span": span,
        "rate": len(trained) / span,
        "nodes": Counter(r["node"] for r in trained),
        "workers": Counter(r["worker"] for r in trained),
        "busy_seconds": busy,
        "seconds_per_trained": statistics.median(r["eval_seconds"] for r in trained),
    }


def own_processes(marker: str) -> set[int]:
    """Pids of live processes started by this benchmark's runs: their environment holds
    ``marker`` (this benchmark's ``EVODISC_CACHE``, inherited by Ray's processes), so that other
    users' Ray processes on the machine are not counted."""
    pids = set()
    needle = f"EVODISC_CACHE={marker}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    pids.add(int(entry.name))
            except OSError:
                continue
    return pids


def run_cli(campaign: Path, out: Path, env: dict) -> dict:
    """``evodisc run`` in a fresh process; its wall time and the log's summary."""
    marker = env["EVODISC_CACHE"]
    before = own_processes(marker)
    command = [sys.executable, "-m", "evodisc.app.cli", "run", str(campaign), "--out", str(out),
               "--quiet"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"evodisc run failed ({done.returncode}): {done.stderr.strip()}")
    time.sleep(1.0)  # let Ray's processes exit
    left = sorted(own_processes(marker) - before)
    result = summarise(out) | {"process_seconds": seconds, "left_behind": left}
    result["startup"] = seconds - result["span"]
    return result


def overhead(args, root: Path, env: dict) -> None:
    files = {
        "no-ray": write_campaign(root, "inprocess", args.evaluations, 0, args.seed),
        "ray": write_campaign(root, "ray", args.evaluations, 1, args.seed),
    }
    results: dict[str, list[dict]] = {"no-ray": [], "ray": []}
    order = []
    for repeat in range(args.repeats):
        pair = ["no-ray", "ray"] if repeat % 2 == 0 else ["ray", "no-ray"]
        for mode in pair:
            out = root / f"run-{mode}-{repeat}"
            result = run_cli(files[mode], out, env)
            results[mode].append(result)
            order.append(mode)
            print(f"  {mode:7s} repeat {repeat}: {result['trained']} trained / {result['rows']} "
                  f"in {result['span']:.1f} s = {result['rate']:.2f}/s; process "
                  f"{result['process_seconds']:.1f} s (start-up + teardown "
                  f"{result['startup']:.1f} s)"
                  + (f"; left behind: {result['left_behind']}" if result["left_behind"] else ""),
                  flush=True)  # fmt: skip
            shutil.rmtree(out, ignore_errors=True)
    print(f"\norder: {' '.join(order)}")
    print(
        "\n| mode | trained cand/s (median) | spread (min-max) | trained / logged | "
        "campaign s (median) | start-up + teardown s (median) | process s (median) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for mode, runs in results.items():
        rates = [r["rate"] for r in runs]
        print(f"| {mode} | {statistics.median(rates):.2f} | {min(rates):.2f}-{max(rates):.2f} | "
              f"{statistics.median(r['trained'] for r in runs):.0f} / {runs[0]['rows']} | "
              f"{statistics.median(r['span'] for r in runs):.1f} | "
              f"{statistics.median(r['startup'] for r in runs):.1f} | "
              f"{statistics.median(r['process_seconds'] for r in runs):.1f} |")  # fmt: skip
    ray_rate = statistics.median(r["rate"] for r in results["ray"])
    local_rate = statistics.median(r["rate"] for r in results["no-ray"])
    pairs = [n / r for n, r in zip((r["rate"] for r in results["no-ray"]),
                                   (r["rate"] for r in results["ray"]), strict=True)]  # fmt: skip
    extra = statistics.median(r["startup"] for r in results["ray"]) - statistics.median(
        r["startup"] for r in results["no-ray"]
    )
    print(f"\nRay / no-ray, trained cand/s: {ray_rate / local_rate:.3f} (per pair: "
          f"{', '.join(f'{1 / p:.3f}' for p in pairs)}); Ray's extra start-up + teardown: "
          f"{extra:.1f} s")  # fmt: skip
    e2e = [statistics.median(r["process_seconds"] for r in results[m]) for m in results]
    print(f"end to end (process), ray / no-ray: {e2e[1] / e2e[0]:.3f}")


def scaling(args, root: Path) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from evodisc.campaign.config import check_tasks, load_campaign
    from evodisc.campaign.evaluators import NAMESPACE
    from evodisc.campaign.run import run_campaign

    start = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(args.nodes):
        cluster.add_node(num_cpus=args.cpus_per_node)
    ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
    print(f"cluster at {cluster.address}: head (0 CPUs, the driver) + {args.nodes} nodes of "
          f"{args.cpus_per_node} CPUs, up in {time.perf_counter() - start:.1f} s")  # fmt: skip
    names = {}
    for node in ray.nodes():
        if node["Alive"]:
            cpus = node["Resources"].get("CPU", 0)
            names[node["NodeID"][:12]] = f"{'head' if not cpus else 'node'}-{node['NodeID'][:6]}"
    try:
        results: dict[int, list[dict]] = {n: [] for n in args.actors}
        for repeat in range(args.repeats):
            for count in args.actors:
                in_flight = args.scaling_in_flight
                path = write_campaign(root, f"scale{count}", args.evaluations, count, args.seed,
                                      in_flight=in_flight)  # fmt: skip
                campaign = check_tasks(load_campaign(path))
                out = root / f"scale-{count}-{repeat}"
                t0 = time.perf_counter()
                run_campaign(campaign, out, address=cluster.address)
                seconds = time.perf_counter() - t0
                result = summarise(out) | {"seconds": seconds, "in_flight": in_flight}
                results[count].append(result)
                spread = ", ".join(f"{names.get(k, k)}: {v}" for k, v in
                                   sorted(result["nodes"].items()))  # fmt: skip
                print(f"  {count} actor(s) repeat {repeat}: {result['trained']} trained in "
                      f"{result['span']:.1f} s = {result['rate']:.2f}/s; actors busy "
                      f"{result['busy_seconds'] / (count * result['span']):.0%}; "
                      f"start-up {seconds - result['span']:.1f} s; by node: {spread}",
                      flush=True)  # fmt: skip
                shutil.rmtree(out, ignore_errors=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    base = statistics.median(r["rate"] for r in results[args.actors[0]])
    print(
        "\n| actors | in flight | trained cand/s (median) | spread (min-max) | speed-up | "
        "actors busy | s per trained candidate | trained per node (first run) |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for count, runs in results.items():
        rates = [r["rate"] for r in runs]
        busy = statistics.median(r["busy_seconds"] / (count * r["span"]) for r in runs)
        per = statistics.median(r["seconds_per_trained"] for r in runs)
        spread = ", ".join(f"{names.get(k, k)}: {v}" for k, v in sorted(runs[0]["nodes"].items()))
        print(f"| {count} | {runs[0]['in_flight']} | {statistics.median(rates):.2f} | "
              f"{min(rates):.2f}-{max(rates):.2f} | {statistics.median(rates) / base:.2f}x | "
              f"{busy:.0%} | {per:.3f} | {spread} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evaluations", type=int, default=240, help="campaign budget")
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--nodes", type=int, default=2, help="worker nodes besides the head")
    parser.add_argument("--cpus-per-node", type=int, default=2)
    parser.add_argument(
        "--scaling-in-flight", type=int, default=64, help="in_flight of the scaling runs (all)"
    )
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only
    root = Path(tempfile.mkdtemp(prefix="bench-campaign-"))
    os.environ["EVODISC_CACHE"] = str(root / "cache")
    env = dict(os.environ)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; campaign: "
          f"{args.evaluations} evaluations, seed {args.seed}, batch 8; dir {root}")  # fmt: skip
    try:
        # Baselines into the private cache, untimed (every timed run then reads them).
        warm = write_campaign(root, "warm", 16, 0, args.seed)
        run_cli(warm, root / "warm-run", env)
        if not args.skip_overhead:
            print("\nRay (1 actor, embedded local Ray) vs --no-ray, interleaved:")
            overhead(args, root, env)
        if not args.skip_scaling:
            print("\nScaling on a multi-node cluster on loopback, interleaved:")
            scaling(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
