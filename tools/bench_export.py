"""Exported optimizers vs their hand-written references: time per ``step()``, side by side.

For AdamW and Lion (the zoo programs), and any rule given with ``--rule`` (a file or a known
name: a discovered rule), both export paths — the class of
``evodisc.to_torch_optimizer`` and the standalone source of ``evodisc export`` (imported from a
file) — step the same model as the reference: ``torch.optim.AdamW`` with its default
implementation (on CPU the single-tensor loop, on CUDA ``foreach``) and ``lion_pytorch.Lion``;
a ``--rule`` against ``torch.optim.AdamW`` (what its user would otherwise run).
For scale, AdamW's ``foreach=True`` and ``fused=True`` are timed too, and the class with all
parameters in one foreach call (no CPU chunks: what it does on a GPU). Every optimizer is timed
once per round, in a rotated order (ABC…, BCA…), so that a burst of load on a shared machine
hits all of them; the table gives the median time per step, the median of the per-round ratios
to the reference and their spread (min–max over rounds).

It also checks the numbers: in float64, each exported optimizer after 30 steps against its
reference (max relative difference of the weights; torch.optim's own implementations differ from
one another by about as much); for a ``--rule``, its exported source against its class.

    python tools/bench_export.py --threads 1               # CPU, one thread (stable)
    python tools/bench_export.py --device cuda             # a GPU (absolute times are real)
    python tools/bench_export.py --threads 1 --rule discovered_NAME
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from evodisc import to_torch_optimizer, torch_source
from search_spaces.zoo import load_known, resolve_program

try:
    from lion_pytorch import Lion
except ImportError:  # the Lion rows need the reference
    Lion = None

Factory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]


def import_source(source: str, directory: Path, module: str) -> object:
    path = directory / f"{module}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(module, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def optimizers(directory: Path, rules: list[str]) -> dict[str, dict[str, Factory]]:
    """Rule -> {label: factory}; the first label is the reference (for a ``--rule``, the
    reference of the timing: its numbers are checked against its class)."""
    out = {}
    adamw, lion = load_known("adamw"), load_known("lion")
    adamw_source = import_source(torch_source(adamw, "Adamw"), directory, "adamw_export").Adamw
    one_chunk = to_torch_optimizer(adamw)
    one_chunk.chunk_bytes = 2**62  # every parameter in one foreach call, on CPU too
    out["AdamW"] = {
        "torch.optim.AdamW (default)": lambda ps: torch.optim.AdamW(ps, lr=1e-3),
        "to_torch_optimizer": lambda ps: to_torch_optimizer(adamw)(ps, lr=1e-3),
        "exported source": lambda ps: adamw_source(ps, lr=1e-3),
        "to_torch_optimizer, one chunk": lambda ps: one_chunk(ps, lr=1e-3),
        "torch.optim.AdamW foreach=True": lambda ps: torch.optim.AdamW(ps, 1e-3, foreach=True),
        "torch.optim.AdamW fused=True": lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True),
    }
    if Lion is not None:
        lion_source = import_source(torch_source(lion, "Lion"), directory, "lion_export").Lion
        out["Lion"] = {
            "lion_pytorch.Lion": lambda ps: Lion(ps, lr=1e-4),
            "to_torch_optimizer": lambda ps: to_torch_optimizer(lion)(ps, lr=1e-4),
            "exported source": lambda ps: lion_source(ps, lr=1e-4),
        }
    for spec in rules:
        rule = resolve_program(spec)
        source = import_source(torch_source(rule, "Rule"), directory, f"rule{len(out)}").Rule
        out[spec] = {
            "torch.optim.AdamW (default)": lambda ps: torch.optim.AdamW(ps, lr=1e-3),
            "to_torch_optimizer": lambda ps, rule=rule: to_torch_optimizer(rule)(ps, lr=1e-3),
            "exported source": lambda ps, source=source: source(ps, lr=1e-3),
            "torch.optim.AdamW fused=True": lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True),
        }
    return out


def model(layers: int, width: int, device, dtype, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)])
    return net.to(device, dtype)


def timings(factories: dict[str, Factory], args, device: torch.device) -> dict[str, list[float]]:
    """Seconds per step of each optimizer, one entry per round (rounds interleave them)."""
    steppers = {}
    for label, make in factories.items():
        params = list(model(args.layers, args.width, device, torch.float32).parameters())
        gen = torch.Generator(device=device).manual_seed(1)
        for p in params:
            p.grad = 1e-2 * torch.randn(p.shape, generator=gen, device=device)
        optimizer = make(params)
        for _ in range(3):  # lazy state, allocator, kernels
            optimizer.step()
        steppers[label] = optimizer
    labels = list(steppers)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(args.rounds):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
            optimizer = steppers[label]
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[label].append((time.perf_counter() - start) / args.steps)
    return times


def agreement(
    factories: dict[str, Factory], device: torch.device, reference: str
) -> dict[str, float]:
    """Max relative difference of the weights after 30 float64 steps (random gradients
    depending on the weights), each optimizer against ``reference``."""
    finals = {}
    for label, make in factories.items():
        params = list(model(2, 64, device, torch.float64).parameters())
        optimizer = make(params)
        gen = torch.Generator(device=device).manual_seed(2)
        for _ in range(30):
            for p in params:
                noise = torch.randn(p.shape, generator=gen, device=device, dtype=p.dtype)
                p.grad = noise + 0.1 * p.detach()
            optimizer.step()
        finals[label] = [p.detach() for p in params]
    reference = finals[reference]
    return {
        label: max(
            ((a - b).abs() / b.abs().clamp_min(1e-12)).max().item()
            for a, b in zip(ws, reference, strict=True)
        )
        for label, ws in finals.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--layers", type=int, default=8, help="Linear(width, width) layers")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=20, help="steps timed per round")
    parser.add_argument("--max-ratio", type=float, default=None, help="exit 1 above this")
    parser.add_argument(
        "--rule", action="append", default=[], help="also this rule (file or known name)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"device: {device} ({name or 'cpu'}); torch {torch.__version__}; threads "
        f"{torch.get_num_threads()}; model: {args.layers} x Linear({args.width}, {args.width}); "
        f"{args.rounds} rounds x {args.steps} steps, interleaved"
    )
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for rule, factories in optimizers(Path(tmp), args.rule).items():
            times = timings(factories, args, device)
            reference = next(iter(times))
            own = "to_torch_optimizer" if rule in args.rule else reference
            checked = {k: v for k, v in factories.items() if k in (own, "exported source")}
            close = agreement(checked if own != reference else factories, device, own)
            print(f"\n{rule} (reference: {reference})")
            print(f"  {'optimizer':32} {'ms/step':>8} {'ratio':>6} {'spread':>12} {'float64 Δ':>9}")
            for label, ts in times.items():
                ratios = [a / b for a, b in zip(ts, times[reference], strict=True)]
                ratio = statistics.median(ratios)
                spread = f"{min(ratios):.2f}–{max(ratios):.2f}"
                delta = f"{close[label]:.1e}" if label in close else "—"
                print(
                    f"  {label:32} {1e3 * statistics.median(ts):8.3f} {ratio:6.2f} "
                    f"{spread:>12} {delta:>9}"
                )
                if label in ("to_torch_optimizer", "exported source"):
                    worst = max(worst, ratio)
    print(f"\nworst exported/reference ratio: {worst:.2f}")
    if args.max_ratio is not None and worst > args.max_ratio:
        sys.exit(1)


if __name__ == "__main__":
    main()
