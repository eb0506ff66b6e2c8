"""Benchmark the campaign controller: candidates per second through the whole loop (ask =
mutate + functional hash + validity → checkpoint → screen → dispatch → ingest → durable log →
tell) with instant fake evaluators, so that only the controller's own work is timed.

The real :class:`~evodisc.campaign.controller.Controller` drives a real
:class:`~search_spaces.evolution.RegularizedEvolution`, :class:`~evodisc.campaign.screen.Screen`,
:class:`~evodisc.fitness_cache.FitnessCache` and :class:`~evodisc.campaign.store.CandidateLog` in a
temporary directory (real files, real fsyncs). The pool
(:class:`evodisc.campaign.fake_pool.FakePool`, which the controller's tests use too) has the
interface of :class:`evodisc.campaign.evaluators.InProcessPool` and answers at once: the fitness
is a deterministic function of the program's canonical JSON (no training), with per-task details
of the real shape.

Two phases per configuration: *fresh* (the first ``--evaluations`` candidates of a campaign
warm-started from AdamW) and *mature* (``--evaluations`` more after ``--mature`` candidates,
resumed from a snapshot like ``evodisc run --resume``: by then the programs have grown to the
statement limit, and most mutations touch dead code and are re-drawn). Runs are interleaved,
``--repeats`` times each; the median and the spread are printed, with the time split over the
loop's steps (measured by wrapping them).

    python tools/bench_controller.py [--evaluations 5000] [--mature 20000] [--repeats 3]
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
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


from evodisc.campaign import store  # noqa: E402
from evodisc.campaign.config import Campaign  # noqa: E402
from evodisc.campaign.controller import Controller  # noqa: E402
from evodisc.campaign.fake_pool import LRS, TASKS, FakePool  # noqa: E402
from evodisc.campaign.progress import Progress  # noqa: E402
from evodisc.campaign.run import stage_screens  # noqa: E402
from evodisc.campaign.store import LOG_SCHEMA  # noqa: E402
from search_spaces import mutations  # noqa: E402
from search_spaces.evolution import RegularizedEvolution  # noqa: E402


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
    """Seconds and calls per step, from wrapped callables (undone by :meth:`restore`)."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._undo: list = []

    def wrap(self, owner, attribute: str, name: str, item: bool = False) -> None:
        inner = owner[attribute] if item else getattr(owner, attribute)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start
                self.calls[name] += 1

        if item:
            owner[attribute] = timed
            self._undo.append(lambda: owner.__setitem__(attribute, inner))
        else:
            setattr(owner, attribute, timed)

    def restore(self) -> None:
        for undo in self._undo:
            undo()
        self._undo = []


MUTATE = "  of which mutations (all draws)"
CHECK = "  of which check_candidate (hash + analyse)"


def _controller(campaign, directory, pool, evolution, log, history=None) -> Controller:
    logged = history if history is not None else LOG_SCHEMA.empty_table()
    screens = stage_screens(campaign, logged, pool.info[0]["device"])  # as a --resume does
    baselines = pool.baselines(campaign.suite_config())
    return Controller(
        campaign, directory, pool, evolution, screens, baselines, log, history=history
    )  # fmt: skip


def make_snapshot(
    mature: int, batch_size: int, in_flight: int, root: Path, keep: Path | None = None
) -> Path:
    """A campaign directory after ``mature`` candidates (log and checkpoint), to resume from;
    kept in (and reused from) ``keep`` when given."""
    if keep is not None:
        directory = keep / f"mature-{mature}-{batch_size}x{in_flight}"
        if (directory / store.CHECKPOINT_FILE).is_file():
            return directory
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    else:
        directory = Path(tempfile.mkdtemp(prefix="bench-controller-mature-", dir=root))
    campaign = campaign_for(mature, batch_size, in_flight)
    store.write_campaign(directory, campaign.to_dict(), campaign.digest())
    pool = FakePool(max(1, in_flight // batch_size))
    evolution = RegularizedEvolution(campaign.evolution_config())
    log = store.CandidateLog(directory, writer=True)
    _controller(campaign, directory, pool, evolution, log).run(Progress(quiet=True))
    log.compact()
    return directory


def run_once(
    evaluations: int,
    batch_size: int,
    in_flight: int,
    root: Path,
    snapshot: Path | None = None,
    timed: bool = True,
    latency: float = 0.0,
    pool_size: int | None = None,
) -> dict:
    """``evaluations`` candidates, fresh or resumed from ``snapshot``; rate, seconds per step."""
    directory = Path(tempfile.mkdtemp(prefix="bench-controller-", dir=root))
    timers = Timers()
    try:
        history, before = None, 0
        if snapshot is not None:
            shutil.copytree(snapshot, directory, dirs_exist_ok=True)
            before = store.read_checkpoint(directory)["evolution"]["next_id"]
        campaign = campaign_for(before + evaluations, batch_size, in_flight)
        config = campaign.evolution_config()
        if snapshot is None:
            store.write_campaign(directory, campaign.to_dict(), campaign.digest())
            evolution = RegularizedEvolution(config)
        else:
            state = store.read_checkpoint(directory)["evolution"]
            evolution = RegularizedEvolution.from_state(config, state)
        log = store.CandidateLog(directory, writer=True)
        if snapshot is not None:
            history = log.read()
        pool = FakePool(pool_size or max(1, in_flight // batch_size), latency)
        controller = _controller(campaign, directory, pool, evolution, log, history)
        if timed:
            timers.wrap(evolution, "ask", "ask (select, mutate, hash, validity)")
            for name in list(mutations.MUTATIONS):
                timers.wrap(mutations.MUTATIONS, name, MUTATE, item=True)
            timers.wrap(evolution, "_check", CHECK)
            timers.wrap(controller, "checkpoint", "checkpoint (all)")
            timers.wrap(evolution, "state_dict", "  of which state_dict (program JSON)")
            timers.wrap(controller.screen, "screen", "screen (cache, in-flight look-up)")
            timers.wrap(controller, "_send", "dispatch (requests)")
            timers.wrap(controller, "_finish", "ingest: log rows (analyse, format, JSON)")
            timers.wrap(log, "append", "log append (Arrow table)")
            timers.wrap(log, "flush", "log flush (Parquet + fsync)")
            timers.wrap(evolution, "tell", "tell")
        start = time.perf_counter()
        controller.run(Progress(quiet=True))
        seconds = time.perf_counter() - start
        table = log.read()
        assert table.num_rows == before + evaluations, (table.num_rows, before, evaluations)
        assert table.column("id").to_pylist() == list(range(before + evaluations))
        new = table.slice(before)
        return {
            "phase": "fresh" if snapshot is None else "mature",
            "batch_size": batch_size,
            "in_flight": in_flight,
            "candidates": new.num_rows,
            "seconds": seconds,
            "rate": new.num_rows / seconds,
            "cache_hits": sum(new.column("cache_hit").to_pylist()),
            "invalid": new.column("status").to_pylist().count("invalid"),
            "statements": statistics.mean(new.column("statements").to_pylist()),
            "mutations": timers.calls.get(MUTATE, 0),
            "checks": timers.calls.get(CHECK, 0),
            "parts": len(list((directory / store.LOG_DIR).glob("*.parquet"))),
            "checkpoints": timers.calls.get("checkpoint (all)", 0),
            "fake_pool_seconds": pool.seconds,
            "waited_seconds": pool.waited,
            "latency": latency,
            "pool_size": pool.size,
            "steps": dict(timers.seconds),
            "digest": hashlib.blake2b(
                "\n".join(new.column("program").to_pylist()).encode(), digest_size=8
            ).hexdigest(),
        }
    finally:
        timers.restore()
        shutil.rmtree(directory, ignore_errors=True)


def parse_config(text: str) -> tuple[int, int]:
    batch, in_flight = text.lower().split("x")
    return int(batch), int(in_flight)


def print_tables(results: dict[tuple, list[dict]]) -> None:
    print(
        "\n| phase | batch | in flight | cand/s (median) | spread (min-max) | mutations/cand |"
        " hashes/cand | statements | checkpoints | log parts | cache hits | invalid |"
    )
    print("| --- |" + " ---: |" * 11)
    for (phase, batch, in_flight), runs in results.items():
        rates = [r["rate"] for r in runs]
        first = runs[0]
        n = first["candidates"]
        if len({r["digest"] for r in runs}) != 1:
            print("warning: repeated runs logged different programs", file=sys.stderr)
        print(
            f"| {phase} | {batch} | {in_flight} | {statistics.median(rates):,.0f} | "
            f"{min(rates):,.0f}-{max(rates):,.0f} | {first['mutations'] / n:.2f} | "
            f"{first['checks'] / n:.2f} | {first['statements']:.1f} | {first['checkpoints']} | "
            f"{first['parts']} | {first['cache_hits'] / n:.1%} | {first['invalid'] / n:.1%} |"
        )

    print("\nTime split, µs per candidate (median over runs; indented rows are part of the row")
    print("above; 'other' = the loop, polling, progress and bookkeeping):")
    keys = list(results)
    names = list(next(iter(results.values()))[0]["steps"])
    header = " | ".join(f"{p} {b}x{f}" for p, b, f in keys)
    print(f"| step | {header} |")
    print("| --- |" + " ---: |" * len(keys))
    waits = any(r["waited_seconds"] for runs in results.values() for r in runs)
    extra = ["fake evaluators", *(["waiting for evaluators"] if waits else []), "other"]
    for name in [*names, *extra, "loop total"]:
        cells = []
        for runs in results.values():
            if name == "fake evaluators":
                values = [r["fake_pool_seconds"] for r in runs]
            elif name == "waiting for evaluators":
                values = [r["waited_seconds"] for r in runs]
            elif name == "loop total":
                values = [r["seconds"] for r in runs]
            elif name == "other":
                values = [
                    r["seconds"] - r["fake_pool_seconds"] - r["waited_seconds"]
                    - sum(v for k, v in r["steps"].items() if not k.startswith(" "))
                    for r in runs
                ]  # fmt: skip
            else:
                values = [r["steps"].get(name, 0.0) for r in runs]
            cells.append(f"{1e6 * statistics.median(values) / runs[0]['candidates']:,.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evaluations", type=int, default=5000, help="timed candidates per run")
    parser.add_argument(
        "--mature", type=int, default=20000, help="candidates before the mature phase (0: none)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration")
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["8x64", "16x128", "32x256", "64x512"],
        help="BATCHxIN_FLIGHT configurations, run interleaved",
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds a batch takes (0: instant)"
    )
    parser.add_argument(
        "--pool-size", type=int, default=None, help="evaluators (default: in flight / batch)"
    )
    parser.add_argument(
        "--flush-starving",
        type=float,
        default=None,
        help="override controller.FLUSH_STARVING (inf: flush only every FLUSH_EVERY when busy)",
    )
    parser.add_argument("--dir", default=None, help="where campaign directories go (a disk)")
    parser.add_argument(
        "--snapshots", type=Path, default=None, help="keep and reuse the mature snapshots here"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one run first")
    parser.add_argument("--json", default=None, help="also write the raw results here")
    args = parser.parse_args()
    root = Path(args.dir or tempfile.gettempdir())
    configs = [parse_config(c) for c in args.configs]
    if args.flush_starving is not None:
        import evodisc.campaign.controller as controller_module

        controller_module.FLUSH_STARVING = args.flush_starving
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, dir {root}; "
        f"{args.evaluations} timed candidates per run, population 64, tournament 8, "
        f"warm start adamw; mature phase after {args.mature}"
    )
    if args.latency:
        for batch, in_flight in configs:
            size = args.pool_size or max(1, in_flight // batch)
            print(f"{batch}x{in_flight}: {size} evaluators, {args.latency} s per batch: the "
                  f"pool can take {size * batch / args.latency:,.0f} cand/s, in flight / latency "
                  f"{in_flight / args.latency:,.0f}/s")  # fmt: skip
    pool = {"latency": args.latency, "pool_size": args.pool_size}
    snapshots: dict[tuple[int, int], Path] = {}
    try:
        if args.mature:
            for config in configs:
                start = time.perf_counter()
                snapshots[config] = make_snapshot(args.mature, *config, root, args.snapshots)
                seconds = time.perf_counter() - start
                print(f"snapshot {config[0]}x{config[1]}: {args.mature} candidates in "
                      f"{seconds:.1f} s ({args.mature / seconds:,.0f}/s)")  # fmt: skip

        if args.profile:
            batch, in_flight = configs[0]
            profiler = cProfile.Profile()
            profiler.enable()
            snapshot = snapshots.get(configs[0])
            result = run_once(
                args.evaluations, batch, in_flight, root, snapshot, timed=False, **pool
            )
            profiler.disable()
            print(f"\ncProfile, {result['phase']}, batch {batch}, in flight {in_flight}: "
                  f"{result['rate']:,.0f} cand/s under the profiler")  # fmt: skip
            for order, count in (("cumulative", 45), ("tottime", 25)):
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(count)
                print(out.getvalue())

        run_once(min(args.evaluations, 500), *configs[0], root)  # warm-up: imports, zoo, caches
        results: dict[tuple, list[dict]] = defaultdict(list)
        for _ in range(args.repeats):
            for config in configs:
                for snapshot in [None, *([snapshots[config]] if config in snapshots else [])]:
                    result = run_once(args.evaluations, *config, root, snapshot, **pool)
                    results[(result["phase"], *config)].append(result)
    finally:
        if args.snapshots is None:
            for snapshot in snapshots.values():
                shutil.rmtree(snapshot, ignore_errors=True)
    ordered = dict(sorted(results.items(), key=lambda item: item[0][0] == "mature"))
    print_tables(ordered)
    if args.json:
        serialisable = {f"{p} {b}x{f}": runs for (p, b, f), runs in ordered.items()}
        Path(args.json).write_text(json.dumps(serialisable, indent=1))


if __name__ == "__main__":
    main()
