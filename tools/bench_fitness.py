"""Fitness throughput: the batched trainer vs one-model-at-a-time loops, measured side by side.

A *candidate evaluation* is one program trained on every task of the default suite with the full
learning-rate sweep. Three ways are timed in this process, on the same device, budgets and data:

* **batched** — the trainer: P candidates × L learning rates per task in one run;
* **naive** — ``fitness.naive``: one model at one learning rate at a time, ``loss.backward()``
  and a per-parameter loop running the same program (what a plain PyTorch script would do);
* **fused AdamW** — the fastest loop a user would write: the same one-model loop with
  ``torch.optim.AdamW(fused=True)`` (a candidate = AdamW at every learning rate).

They are interleaved — round r times them in a rotated order, ABC, BCA, … — so that a burst of
load on a shared machine cannot hit one side only; the table gives the median rate over rounds,
the median of the per-round ratios and their spread (min–max).

``--checkpoint-cost`` only times what the fitness's anytime metric costs: per task, the batched
trainer validating once (the final metric) against ``DEFAULT_CHECKPOINTS`` times, interleaved,
with the protocol's seeds.

``--sweep 1,4,16,64`` then times the batched trainer per task at each P (interleaved the same
way) and prints the cost per candidate, so the knee — the P beyond which batching stops paying —
is visible. On CUDA it also reports achieved model FLOP/s (forward + backward of the models,
``torch.utils.flop_counter``; the optimizer's elementwise work is not counted) against a given
peak, and peak GPU memory per candidate. ``--memory TASK`` only measures the peak memory of P
candidates on one task: training, validation in chunks and all at once, and the estimate the
evaluators plan their batch size with (``fitness.batch_size``).

    python tools/bench_fitness.py --device cpu --threads 1            # stable on a shared CPU
    python tools/bench_fitness.py --device cpu --threads 1 --quick --sweep 1,2,4,8,16,32
    python tools/bench_fitness.py --device cuda --sweep 1,16,64,256   # the GPU run
    python tools/bench_fitness.py --device cpu --threads 1 --memory markov_lm --programs 64
    python tools/bench_fitness.py --device cpu --threads 1 --checkpoint-cost --rounds 5
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from fitness.batch_size import batch_bytes, candidates_per_batch, model_cost
from fitness.config import DEFAULT_CHECKPOINTS, DEFAULT_LRS, DEFAULT_SEEDS
from fitness.device import resolve_device
from fitness.naive import train_loop, train_naive
from fitness.runs import seeded_model
from fitness.tasks import load_task, task_names
from fitness.trainer import DEFAULT_STREAMS, BatchedRun, train_batch
from search_spaces.zoo import load_known, zoo


def candidates(count: int) -> list:
    """``count`` programs cycled from the zoo (distinct rules, so no result can be shared)."""
    names = list(zoo())
    return [load_known(names[i % len(names)]) for i in range(count)]


def suite(quick: bool) -> list:
    tasks = [load_task(n) for n in task_names()]
    if quick:  # same models and data, a quarter of the steps
        tasks = [dataclasses.replace(t, steps=max(8, t.steps // 4)) for t in tasks]
    return tasks


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], object]) -> tuple[float, object]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def run_batched(tasks, programs, lrs, device, graphs: bool, streams: int) -> dict:
    return {
        t.name: train_batch(t, programs, lrs, (0,), device, cuda_graphs=graphs, streams=streams)
        for t in tasks
    }


def run_naive(tasks, programs, lrs, device) -> dict:
    return {
        t.name: np.array([[train_naive(t, p, lr, 0, device) for lr in lrs] for p in programs])
        for t in tasks
    }


def train_fused_adamw(task, lr: float, seed: int, device: torch.device) -> float:
    """``fitness.naive``'s loop (same seeded model, batches and divergence rule) with
    ``torch.optim.AdamW(fused=True)``: validation metric, or NaN if it diverged."""

    def make_update(params):
        optimizer = torch.optim.AdamW(params, lr=lr, fused=True)
        return lambda k: optimizer.step()

    return train_loop(task, make_update, seed, device)


def run_fused(tasks, count: int, lrs, device) -> None:
    for task in tasks:
        for _ in range(count):
            for lr in lrs:
                train_fused_adamw(task, lr, 0, device)


def model_flops(tasks, programs: int, lrs: int) -> float:
    """Forward+backward FLOPs of all training steps plus the validation forward passes."""
    total = 0.0
    for task in tasks:
        data = task.data()
        model = seeded_model(task, 0)
        x, y = data.x_train[: task.batch_size], data.y_train[: task.batch_size]
        with FlopCounterMode(display=False) as counter:
            task.loss(model(x), y).backward()
        train = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(data.x_val)
        total += (train * task.steps + counter.get_total_flops()) * programs * lrs
    return total


def spread(values: list[float]) -> str:
    return f"{min(values):.3g}–{max(values):.3g}"


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def interleaved(device, variants: list, run: Callable[[object], object], rounds: int) -> dict:
    """Seconds of ``run(v)`` for each of ``variants``, ``rounds`` times, in a rotated order per
    round (ABC, BCA, …) so that a burst of load cannot hit one variant only."""
    seconds: dict = {v: [] for v in variants}
    for r in range(rounds):
        for v in variants[r % len(variants) :] + variants[: r % len(variants)]:
            seconds[v].append(timed(device, lambda v=v: run(v))[0])
    return seconds


def sweep(tasks, sizes: list[int], lrs, device, graphs, streams, rounds: int) -> None:
    """Seconds per candidate of the batched trainer at each P, per task (interleaved)."""
    print(
        f"\ncost per candidate vs P (batched, {len(lrs)} learning rates each): seconds, median "
        f"of {rounds} interleaved rounds; relative to P={sizes[0]}; [min–max]"
    )
    for task in tasks:
        per = interleaved(
            device,
            sizes,
            lambda p, t=task: run_batched([t], candidates(p), lrs, device, graphs, streams),
            rounds,
        )
        per = {p: [x / p for x in s] for p, s in per.items()}
        base = statistics.median(per[sizes[0]])
        cells = "  ".join(
            f"P={p}: {statistics.median(s):.3f} s {statistics.median(s) / base:.2f}x [{spread(s)}]"
            for p, s in per.items()
        )
        print(f"  {task.name:16} {cells}")


def checkpoint_cost(tasks, programs: list, lrs, device, rounds: int) -> None:
    """Seconds of a batched run validating once against :data:`DEFAULT_CHECKPOINTS` times, per
    task (interleaved: AB, BA, …), with the protocol's seeds."""
    counts = (1, DEFAULT_CHECKPOINTS)
    print(
        f"\ncost of the anytime metric: P={len(programs)} x {len(lrs)} learning rates x "
        f"{len(DEFAULT_SEEDS)} seeds per task; median of {rounds} interleaved rounds [min–max]"
    )
    for task in tasks:
        seconds = interleaved(
            device,
            list(counts),
            lambda c, t=task: train_batch(t, programs, lrs, DEFAULT_SEEDS, device, checkpoints=c),
            rounds,
        )
        ratios = [b / a for a, b in zip(seconds[1], seconds[DEFAULT_CHECKPOINTS], strict=True)]
        once, many = (statistics.median(seconds[c]) for c in counts)
        print(
            f"  {task.name:16} final only {once:.2f} s, {counts[1]} checkpoints {many:.2f} s: "
            f"{statistics.median(ratios):.2f}x [{spread(ratios)}]"
        )


def peak_memory(device: torch.device, fn: Callable[[], object]) -> int:
    """The peak memory while ``fn()`` runs, above the level before: CUDA's allocator, or on a
    Linux CPU the process's peak resident set (VmHWM, restarted through /proc/self/clear_refs)."""
    if device.type == "cuda":
        sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - before
    status = Path("/proc/self/status")

    def read(key: str) -> int:
        line = next(x for x in status.read_text().splitlines() if x.startswith(key))
        return int(line.split()[1]) * 1024

    Path("/proc/self/clear_refs").write_text("5")
    before = read("VmRSS:")
    fn()
    return read("VmHWM:") - before


def memory(name: str, count: int, lrs, device: torch.device) -> None:
    """Peak memory of a batched run of ``count`` candidates on one task (3 training steps):
    training, then validation in chunks (the default) and all at once, and the estimate
    ``fitness.batch_size`` plans with."""
    task = dataclasses.replace(load_task(name), steps=3)
    programs = candidates(count)
    model_cost(task, torch.float32, device)  # measured once per process: not in the figures
    run = BatchedRun(task, programs, lrs, (0,), device)
    mib = 2**20
    training = peak_memory(device, run.train)
    chunked = peak_memory(device, run.evaluate)
    at_once = peak_memory(device, lambda: run.evaluate(max_models=10**9))
    estimate = batch_bytes(task, count, len(lrs), torch.float32, device, programs)
    print(
        f"\nmemory, {name}, P={count} ({run.B} models), above the level before each part: "
        f"training {training / mib:.0f} MiB; validation in chunks {chunked / mib:.0f} MiB "
        f"(all at once: {at_once / mib:.0f} MiB); fitness.batch_size estimate for training + "
        f"validation {estimate / mib:.0f} MiB; candidates_per_batch here: "
        f"{candidates_per_batch([task], len(lrs), device=device)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: auto)")
    parser.add_argument("--quick", action="store_true", help="a quarter of each task's steps")
    parser.add_argument("--programs", type=int, default=None, help="P batched candidates")
    parser.add_argument("--naive", type=int, default=1, help="candidates run by the naive loop")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--sweep", default=None, help="P values for the knee, e.g. 1,4,16,64")
    parser.add_argument("--no-fused", action="store_true", help="skip the fused-AdamW loop")
    parser.add_argument(
        "--memory", default=None, metavar="TASK", help="only: peak memory of P candidates on TASK"
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=67.0,
        help="device peak for the FLOP/s share; default 67 = H100/H200 FP32 dense (this "
        "benchmark trains in FP32 without TF32)",
    )
    parser.add_argument(
        "--checkpoint-cost", action="store_true", help="only: what the anytime metric costs"
    )
    parser.add_argument("--no-cuda-graphs", action="store_true", help="eager steps on CUDA")
    parser.add_argument(
        "--streams",
        type=int,
        default=DEFAULT_STREAMS,
        help="CUDA streams for the programs' updates; on CUDA, one stream is also timed",
    )
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    P = args.programs or (128 if cuda else 8)
    lrs = DEFAULT_LRS
    tasks = suite(args.quick)
    batched_programs, naive_programs = candidates(P), candidates(args.naive)
    name = torch.cuda.get_device_name(device) if cuda else cpu_name()
    print(
        f"device: {device} ({name}); torch {torch.__version__}; threads {torch.get_num_threads()}"
    )
    if args.memory:
        memory(args.memory, P, lrs, device)
        return
    if args.checkpoint_cost:
        checkpoint_cost(tasks, batched_programs, lrs, device, args.rounds)
        return
    print(f"suite: {', '.join(f'{t.name}({t.steps} steps)' for t in tasks)}")
    print(
        f"learning rates per candidate: {len(lrs)}; batched P={P}; naive and fused-AdamW "
        f"candidates={args.naive}; {args.rounds} interleaved rounds"
    )

    # Warm-up (library initialisation, cuBLAS/cuDNN handles, allocator) outside the timings.
    short = [dataclasses.replace(t, steps=8) for t in tasks]
    graphs = not args.no_cuda_graphs
    run_batched(short, batched_programs[:2], lrs[:2], device, graphs, args.streams)
    run_naive(short, naive_programs[:1], lrs[:1], device)
    if not args.no_fused:
        run_fused(short, 1, lrs[:1], device)

    ways: dict[str, tuple[int, Callable[[], object]]] = {
        "batched": (
            P,
            lambda: run_batched(tasks, batched_programs, lrs, device, graphs, args.streams),
        ),
        "naive": (args.naive, lambda: run_naive(tasks, naive_programs, lrs, device)),
    }
    if not args.no_fused:
        ways["fused AdamW"] = (args.naive, lambda: run_fused(tasks, args.naive, lrs, device))
    rates: dict[str, list[float]] = {w: [] for w in ways}
    outputs: dict[str, object] = {}
    peak_memory = 0
    names = list(ways)
    for r in range(args.rounds):
        for way in names[r % len(names) :] + names[: r % len(names)]:
            count, fn = ways[way]
            if cuda and way == "batched":
                torch.cuda.reset_peak_memory_stats(device)
            seconds, outputs[way] = timed(device, fn)
            if cuda and way == "batched":
                peak_memory = max(peak_memory, torch.cuda.max_memory_allocated(device))
            rates[way].append(count / seconds)

    print(f"\n  {'loop':12} {'cand evals/s':>12} {'spread':>14} {'batched is':>11} {'spread':>12}")
    for way, values in rates.items():
        ratios = [b / v for b, v in zip(rates["batched"], values, strict=True)]
        print(
            f"  {way:12} {statistics.median(values):12.4g} {spread(values):>14} "
            f"{statistics.median(ratios):10.2f}x {spread(ratios):>12}"
        )
    if cuda and args.streams > 1:
        seconds, _ = timed(
            device, lambda: run_batched(tasks, batched_programs, lrs, device, graphs, streams=1)
        )
        batched = statistics.median(rates["batched"])
        print(
            f"batched with 1 stream: {P / seconds:.3f} candidate evals/s; "
            f"{args.streams} streams are {batched * seconds / P:.2f}x faster"
        )

    # The naive candidates are the first ones of the batch: the same runs, so the same metrics up
    # to float rounding (which chaotic runs at large learning rates amplify over the budget).
    results, naive = outputs["batched"], outputs["naive"]
    diffs, best_diffs = [], []
    for task in tasks:
        a, b = results[task.name].metric[: args.naive, :, 0], naive[task.name]
        both = np.isfinite(a) & np.isfinite(b)
        agree = np.array_equal(np.isfinite(a), np.isfinite(b))
        diffs += list(np.abs(a[both] - b[both]) / np.abs(b[both])) if agree else [math.inf]
        for p in range(args.naive):  # what fitness uses: the best metric over the grid
            pick = np.nanmax if task.higher_is_better else np.nanmin
            if np.isfinite(a[p]).any() and np.isfinite(b[p]).any():
                best_a, best_b = pick(a[p]), pick(b[p])
                best_diffs.append(abs(best_a - best_b) / abs(best_b))
    print(
        "batched vs naive metrics, relative difference: "
        f"median {np.median(diffs):.1e}, max {np.max(diffs):.1e}; "
        f"best over the lr grid (what fitness uses): max {max(best_diffs, default=0.0):.1e}"
    )

    if cuda:
        flops = model_flops(tasks, P, len(lrs))
        achieved = flops * statistics.median(rates["batched"]) / P
        share = achieved / (args.peak_tflops * 1e12)
        print(
            f"model FLOP/s achieved: {achieved / 1e12:.2f} TFLOP/s = {100 * share:.1f}% of "
            f"{args.peak_tflops:g} TFLOP/s peak"
        )
        per_candidate = peak_memory / P / 2**20
        print(f"peak GPU memory: {peak_memory / 2**20:.1f} MiB total, {per_candidate:.2f} MiB")
        print(f"  per candidate ({len(lrs)} models each)")

    if args.sweep:
        sizes = [int(x) for x in args.sweep.split(",")]
        sweep(tasks, sizes, lrs, device, graphs, args.streams, args.rounds)


if __name__ == "__main__":
    main()
