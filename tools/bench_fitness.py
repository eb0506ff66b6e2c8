"""Fitness throughput: batched trainer vs a naive one-model-at-a-time loop, side by side.

A *candidate evaluation* is one program trained on every task of the default suite with the full
learning-rate sweep. The batched trainer trains P candidates × L learning rates per task in one
run; the naive loop (``fitness.naive``: ``loss.backward()`` + a per-parameter optimizer loop with
the same program, as a plain PyTorch script would) trains one model at one learning rate at a
time. Both run here, in this process, on the same device, budgets and data.

On CUDA it also reports achieved model FLOP/s (forward + backward of the models, counted with
``torch.utils.flop_counter``; the optimizer's elementwise work is not counted) against a given
peak, and peak GPU memory per candidate.

    python tools/bench_fitness.py --device cuda          # the GPU run
    python tools/bench_fitness.py --device cpu --quick   # a CPU run in about a minute
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from fitness.config import DEFAULT_LRS
from fitness.device import resolve_device
from fitness.naive import train_naive
from fitness.runs import seeded_model
from fitness.tasks import load_task, task_names
from fitness.trainer import DEFAULT_STREAMS, train_batch
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


def run_batched(tasks, programs, lrs, device, graphs: bool, streams: int) -> tuple[float, dict]:
    sync(device)
    start = time.perf_counter()
    results = {
        t.name: train_batch(t, programs, lrs, (0,), device, cuda_graphs=graphs, streams=streams)
        for t in tasks
    }
    sync(device)
    return time.perf_counter() - start, results


def run_naive(tasks, programs, lrs, device) -> tuple[float, dict]:
    sync(device)
    start = time.perf_counter()
    metrics = {
        t.name: np.array([[train_naive(t, p, lr, 0, device) for lr in lrs] for p in programs])
        for t in tasks
    }
    sync(device)
    return time.perf_counter() - start, metrics


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: auto)")
    parser.add_argument("--quick", action="store_true", help="a quarter of each task's steps")
    parser.add_argument("--programs", type=int, default=None, help="P batched candidates")
    parser.add_argument("--naive", type=int, default=1, help="candidates run by the naive loop")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=67.0,
        help="device peak for the FLOP/s share; default 67 = H100/H200 FP32 dense (this "
        "benchmark trains in FP32 without TF32)",
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
    name = torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu"
    print(
        f"device: {device} ({name}); torch {torch.__version__}; threads {torch.get_num_threads()}"
    )
    print(f"suite: {', '.join(f'{t.name}({t.steps} steps)' for t in tasks)}")
    print(f"learning rates per candidate: {len(lrs)}; batched P={P}; naive candidates={args.naive}")

    # Warm-up (library initialisation, cuBLAS/cuDNN handles, allocator) outside the timings.
    short = [dataclasses.replace(t, steps=8) for t in tasks]
    graphs = not args.no_cuda_graphs
    run_batched(short, batched_programs[:2], lrs[:2], device, graphs, args.streams)
    run_naive(short, naive_programs[:1], lrs[:1], device)

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    t_batched, results = run_batched(tasks, batched_programs, lrs, device, graphs, args.streams)
    peak_memory = torch.cuda.max_memory_allocated(device) if cuda else 0
    t_naive, naive = run_naive(tasks, naive_programs, lrs, device)

    batched_rate, naive_rate = P / t_batched, args.naive / t_naive
    print(f"batched: {P} candidates in {t_batched:.2f} s = {batched_rate:.3f} candidate evals/s")
    print(
        f"naive:   {args.naive} candidates in {t_naive:.2f} s = {naive_rate:.4f} candidate evals/s"
    )
    print(f"speed-up (batched / naive, same run): {batched_rate / naive_rate:.1f}x")
    if cuda and args.streams > 1:
        t_one, _ = run_batched(tasks, batched_programs, lrs, device, graphs, streams=1)
        print(
            f"batched with 1 stream: {P / t_one:.3f} candidate evals/s; "
            f"{args.streams} streams are {t_one / t_batched:.2f}x faster"
        )

    # The naive candidates are the first ones of the batch: the same runs, so the same metrics up
    # to float rounding (which chaotic runs at large learning rates amplify over the budget).
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
        achieved = flops / t_batched
        share = achieved / (args.peak_tflops * 1e12)
        print(
            f"model FLOP/s achieved: {achieved / 1e12:.2f} TFLOP/s = {100 * share:.1f}% of "
            f"{args.peak_tflops:g} TFLOP/s peak"
        )
        per_candidate = peak_memory / P / 2**20
        print(f"peak GPU memory: {peak_memory / 2**20:.1f} MiB total, {per_candidate:.2f} MiB")
        print(f"  per candidate ({len(lrs)} models each)")


if __name__ == "__main__":
    main()
