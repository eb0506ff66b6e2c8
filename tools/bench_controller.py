"""Benchmark the campaign controller: candidates per second through the whole loop (ask =
mutate + functional hash + validity → checkpoint → screen → dispatch → ingest → durable log →
tell) with instant fake evaluators, so that only the controller's own work is timed.

The real :class:`~evodisc.app.controller.Controller` drives a real
:class:`~evodisc.app.evolution.RegularizedEvolution`, :class:`~evodisc.app.screen.Screen`,
:class:`~evodisc.fitness_cache.FitnessCache` and :class:`~evodisc.app.store.CandidateLog` in a
temporary directory (real files, real fsyncs). The pool (:class:`FakePool`) has the interface of
:class:`evodisc.app.evaluators.InProcessPool` and answers at once: the fitness is a
deterministic function of the program's canonical JSON (no training), with per-task details of
the real shape. Configurations are run interleaved, ``--repeats`` times each; the median and the
spread are printed, with the time split over the loop's steps (measured by wrapping them).

    python tools/bench_controller.py [--evaluations 5000] [--repeats 3]
    python tools/bench_controller.py --configs 8x64 --profile   # cProfile once, top functions
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from evodisc.app import store  # noqa: E402
from evodisc.app.campaign import Campaign  # noqa: E402
from evodisc.app.controller import Controller  # noqa: E402
from evodisc.app.evaluators import Batch, Completion  # noqa: E402
from evodisc.app.evolution import RegularizedEvolution  # noqa: E402
from evodisc.app.progress import Progress  # noqa: E402
from evodisc.app.screen import Screen  # noqa: E402
from evodisc.fitness_cache import FitnessCache  # noqa: E402
from fitness.config import SuiteConfig  # noqa: E402

TASKS = ("teacher_student", "ill_conditioned")
LRS = (1e-3, 3e-3, 1e-2, 3e-2, 0.1)


def fake_result(program_json: str, worker: str) -> dict:
    """A deterministic stand-in for training ``program_json``: fitness in [0, 1.2), about one
    in ten diverged, per-task details shaped like :func:`fitness.worker.evaluate_request`'s."""
    digest = hashlib.blake2b(program_json.encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    diverged = digest[0] < 26
    fitness = 0.0 if diverged else 1.2 * u
    details = {
        task: {
            "metric": None if diverged else 0.05 / (fitness + 0.01 + k),
            "best_lr": LRS[(digest[1] + k) % len(LRS)],
            "ratio": 0.0 if diverged else fitness,
        }
        for k, task in enumerate(TASKS)
    }
    status = "diverged" if diverged else "ok"
    return {"status": status, "fitness": fitness, "details": details, "seconds": 0.0,
            "worker": worker}  # fmt: skip


class FakePool:
    """``size`` instant evaluators with :class:`~evodisc.app.evaluators.InProcessPool`'s
    interface; a submitted batch holds its evaluator until the next :meth:`poll`."""

    def __init__(self, size: int, nodes: int = 2):
        self.size = size
        self.info = [
            {"name": f"fake-{k}", "node": f"node-{k % nodes}", "device": "cpu"} for k in range(size)
        ]
        self.deadline = None
        self._running: list[tuple[int, Batch]] = []
        self.seconds = 0.0  # time spent inside the fake evaluators (charged to the controller)

    def idle(self) -> int:
        return self.size - len(self._running)

    def busy(self) -> int:
        return len(self._running)

    def submit(self, batch: Batch) -> None:
        taken = {index for index, _ in self._running}
        index = next(k for k in range(self.size) if k not in taken)
        batch.attempts += 1
        self._running.append((index, batch))

    def poll(self, timeout: float) -> list[Completion]:
        start = time.perf_counter()
        done = []
        for index, batch in self._running:
            name = self.info[index]["name"]
            results = [fake_result(text, name) for text in batch.request["programs"]]
            done.append(Completion(batch, results, node=self.info[index]["node"], seconds=1e-3))
        self._running = []
        self.seconds += time.perf_counter() - start
        return done

    def baselines(self, suite: Mapping) -> dict[str, float]:
        return {task: 0.05 for task in suite["tasks"]}

    def close(self) -> None:
        pass


def campaign_for(evaluations: int, batch_size: int, in_flight: int, seed: int = 0) -> Campaign:
    return Campaign.from_dict(
        {
            "campaign": {"name": "bench-controller", "seed": seed},
            "evolution": {"population": 64, "tournament": 8, "warm_start": ["adamw"]},
            "budget": {"evaluations": evaluations},
            "fitness": {"tasks": list(TASKS), "lrs": list(LRS)},
            "resources": {"evaluators": 1, "batch_size": batch_size, "in_flight": in_flight},
        }
    )


class Timers:
    """Seconds and calls per step, from wrapped callables."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, owner, attribute: str, name: str) -> None:
        inner = getattr(owner, attribute)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start
                self.calls[name] += 1

        setattr(owner, attribute, timed)


def run_once(
    evaluations: int, batch_size: int, in_flight: int, root: Path, timed: bool = True
) -> dict:
    """One campaign of ``evaluations`` candidates; rate, and seconds per step."""
    directory = Path(tempfile.mkdtemp(prefix="bench-controller-", dir=root))
    try:
        campaign = campaign_for(evaluations, batch_size, in_flight)
        store.write_campaign(directory, campaign.to_dict(), campaign.digest())
        pool = FakePool(max(1, in_flight // batch_size))
        suite = campaign.fitness_config()
        key = SuiteConfig.from_dict(suite).cache_key(pool.info[0]["device"])
        evolution = RegularizedEvolution(campaign.evolution_config())
        log = store.CandidateLog(directory)
        controller = Controller(
            campaign, directory, pool, evolution, Screen(FitnessCache(), key),
            pool.baselines(suite), log,
        )  # fmt: skip
        timers = Timers()
        if timed:
            timers.wrap(evolution, "ask", "ask (mutate + hash + validity)")
            timers.wrap(evolution, "_check", "  of which check_candidate (hash + analyse)")
            timers.wrap(controller, "checkpoint", "checkpoint (all)")
            timers.wrap(evolution, "state_dict", "  of which state_dict")
            timers.wrap(controller.screen, "screen", "screen (cache, in-flight look-up)")
            timers.wrap(controller, "_send", "dispatch (request JSON)")
            timers.wrap(controller, "_finish", "ingest: log rows (analyse, format, JSON)")
            timers.wrap(log, "append", "log append (Arrow table)")
            timers.wrap(log, "flush", "log flush (Parquet + fsync)")
            timers.wrap(evolution, "tell", "tell")
        start = time.perf_counter()
        controller.run(Progress(quiet=True))
        seconds = time.perf_counter() - start
        table = log.read()
        assert table.num_rows == evaluations, (table.num_rows, evaluations)
        assert table.column("id").to_pylist() == list(range(evaluations))
        return {
            "batch_size": batch_size,
            "in_flight": in_flight,
            "candidates": table.num_rows,
            "seconds": seconds,
            "rate": table.num_rows / seconds,
            "cache_hits": sum(table.column("cache_hit").to_pylist()),
            "invalid": table.column("status").to_pylist().count("invalid"),
            "parts": len(list((directory / store.LOG_DIR).glob("*.parquet"))),
            "checkpoints": timers.calls.get("checkpoint (all)", 0),
            "fake_pool_seconds": pool.seconds,
            "steps": dict(timers.seconds),
            "digest": hashlib.blake2b(
                "\n".join(table.column("program").to_pylist()).encode(), digest_size=8
            ).hexdigest(),
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def parse_config(text: str) -> tuple[int, int]:
    batch, in_flight = text.lower().split("x")
    return int(batch), int(in_flight)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evaluations", type=int, default=5000, help="candidates per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration")
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["8x64", "16x128", "32x256", "64x512"],
        help="BATCHxIN_FLIGHT configurations, run interleaved",
    )
    parser.add_argument("--dir", default=None, help="where the campaign directories go")
    parser.add_argument("--profile", action="store_true", help="cProfile the first run")
    parser.add_argument("--json", default=None, help="also write the raw results here")
    args = parser.parse_args()
    root = Path(args.dir or tempfile.gettempdir())
    configs = [parse_config(c) for c in args.configs]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, dir {root}, "
          f"{args.evaluations} candidates per run, population 64, tournament 8, warm start adamw")  # fmt: skip

    if args.profile:
        batch, in_flight = configs[0]
        profiler = cProfile.Profile()
        profiler.enable()
        result = run_once(args.evaluations, batch, in_flight, root, timed=False)
        profiler.disable()
        print(f"\ncProfile, batch {batch}, in flight {in_flight}: {result['rate']:,.0f} cand/s "
              "under the profiler")  # fmt: skip
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
        print(out.getvalue())
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())

    run_once(min(args.evaluations, 500), *configs[0], root)  # warm-up: imports, zoo, caches
    results: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for _ in range(args.repeats):
        for config in configs:
            results[config].append(run_once(args.evaluations, *config, root))

    print("\n| batch | in flight | cand/s (median) | spread (min-max) | checkpoints | log parts |"
          " cache hits | invalid |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for config, runs in results.items():
        rates = [r["rate"] for r in runs]
        first = runs[0]
        if len({r["digest"] for r in runs}) != 1:
            print("warning: repeated runs logged different programs", file=sys.stderr)
        print(f"| {config[0]} | {config[1]} | {statistics.median(rates):,.0f} | "
              f"{min(rates):,.0f}-{max(rates):,.0f} | {first['checkpoints']} | {first['parts']} | "
              f"{first['cache_hits'] / first['candidates']:.1%} | "
              f"{first['invalid'] / first['candidates']:.1%} |")  # fmt: skip

    print("\nTime split, µs per candidate (median over runs; nested rows are part of the row above):")
    names = list(next(iter(results.values()))[0]["steps"])
    header = " | ".join(f"{b}x{f}" for b, f in results)
    print(f"| step | {header} |")
    print("| --- |" + " ---: |" * len(results))
    for name in [*names, "fake evaluators", "other (loop, poll, bookkeeping)", "loop total"]:
        cells = []
        for runs in results.values():
            if name == "fake evaluators":
                values = [r["fake_pool_seconds"] for r in runs]
            elif name == "loop total":
                values = [r["seconds"] for r in runs]
            elif name.startswith("other"):
                values = [
                    r["seconds"] - r["fake_pool_seconds"]
                    - sum(v for k, v in r["steps"].items() if not k.startswith(" "))
                    for r in runs
                ]  # fmt: skip
            else:
                values = [r["steps"].get(name, 0.0) for r in runs]
            cells.append(f"{1e6 * statistics.median(values) / runs[0]['candidates']:,.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        serialisable = {f"{b}x{f}": runs for (b, f), runs in results.items()}
        Path(args.json).write_text(json.dumps(serialisable, indent=1))


if __name__ == "__main__":
    main()
