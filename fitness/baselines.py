"""The baseline of each task: AdamW (:data:`~fitness.config.BASELINE`) tuned on the suite's
learning-rate grid, trained once and cached as JSON under ``$EVODISC_CACHE`` (default
``~/.cache/evodisc``), keyed by a digest of everything that determines it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from evodisc.fitness_cache import fitness_config_key
from evodisc.program import Program, program_to_json
from fitness.config import BASELINE, PROTOCOL_VERSION, SuiteConfig
from fitness.device import resolve_device
from fitness.tasks import Task
from fitness.trainer import train_batch
from search_spaces.zoo import load_known


def cache_dir() -> Path:
    """Where baselines are cached (``$EVODISC_CACHE`` or ``~/.cache/evodisc``)."""
    return Path(os.environ.get("EVODISC_CACHE", Path.home() / ".cache" / "evodisc"))


def _digest(task: Task, program: Program, config: SuiteConfig, device: torch.device) -> str:
    key = {
        "version": PROTOCOL_VERSION,
        "device": device.type,  # CPU and CUDA kernels round differently: AdamW's exact 1.0
        "task": [task.name, task.steps, task.batch_size, task.metric, task.higher_is_better],
        "program": program_to_json(program),
        "lrs": list(config.lrs),
        "seeds": list(config.seeds),
        "dtype": config.dtype,
    }
    return fitness_config_key(key)


def baseline_metric(
    task: Task, config: SuiteConfig, device=None, name: str = BASELINE
) -> tuple[float, float | None]:
    """``(metric, best_lr)`` of the known optimizer ``name`` tuned on ``config``'s grid; read
    from the cache, or trained once and cached."""
    program = load_known(name)
    digest = _digest(task, program, config, resolve_device(device))
    path = cache_dir() / "baselines" / f"{task.name}-{name}-{digest}.json"
    if path.is_file():
        doc = json.loads(path.read_text())
        return float(doc["metric"]), doc["best_lr"]
    result = train_batch(task, [program], config.lrs, config.seeds, device, config.torch_dtype)
    best_lr, metric = result.best(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(
        json.dumps({"task": task.name, "baseline": name, "metric": metric, "best_lr": best_lr})
    )
    tmp.replace(path)  # atomic: concurrent evaluators never read a half-written file
    return metric, best_lr
