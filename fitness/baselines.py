"""The baseline of each task: AdamW (:data:`~fitness.config.BASELINE`) tuned on the suite's
learning-rate grid over the suite's *baseline seeds* (more than a candidate's, so that its noise
is small), trained once and cached as JSON under ``$EVODISC_CACHE`` (default
``~/.cache/evodisc``), keyed by a digest of everything that determines it (for a user's task
its file, data and model: :func:`fitness.tasks.fingerprint`). A :class:`Baseline` records its
metric, best learning rate and seed-to-seed noise (the task's noise, which the uncertainty of a
fitness is estimated from: :mod:`fitness.uncertainty`).

A cache file that cannot be read back (truncated, corrupt, not JSON) is recomputed with a
warning; files are written whole or not at all, and only inside the cache directory whatever
the task's name."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import torch

from evodisc.files import FileReadError, atomic_write, read_text
from evodisc.fitness_cache import CacheWarning, fitness_config_key
from evodisc.program import Program, program_to_json
from fitness.config import BASELINE, PROTOCOL_VERSION, SuiteConfig
from fitness.device import resolve_device
from fitness.messages import Baseline
from fitness.tasks import Task, TaskError, fingerprint
from fitness.trainer import BatchResult, train_batch
from fitness.uncertainty import cv
from search_spaces.zoo import load_known

#: A baseline file is a few hundred bytes; anything much larger is not one.
_MAX_FILE_BYTES = 1 << 16


def cache_dir() -> Path:
    """Where baselines are cached (``$EVODISC_CACHE`` or ``~/.cache/evodisc``)."""
    return Path(os.environ.get("EVODISC_CACHE", Path.home() / ".cache" / "evodisc"))


def _digest(task: Task, program: Program, config: SuiteConfig, device: torch.device) -> str:
    key = {
        "version": PROTOCOL_VERSION,
        "device": device.type,  # CPU and CUDA kernels round differently: AdamW's exact 1.0
        "task": fingerprint(task),
        "program": program_to_json(program),
        "lrs": list(config.lrs),
        "seeds": list(config.baseline_seeds),
        "checkpoints": config.checkpoints,
        "dtype": config.dtype,
    }
    return fitness_config_key(key)


def _file_word(text: str) -> str:
    """``text`` made safe as part of a file name (no separators, no dots): ``../../x`` → ``x``."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")[:48] or "task"


def baseline_path(task: Task, config: SuiteConfig, device=None, name: str = BASELINE) -> Path:
    """The cache file of ``name``'s baseline on ``task`` (always inside :func:`cache_dir`)."""
    digest = _digest(task, load_known(name), config, resolve_device(device))
    return cache_dir() / "baselines" / f"{_file_word(task.name)}-{_file_word(name)}-{digest}.json"


def _read(path: Path) -> Baseline | None:
    """The cached baseline, or None when there is none or it is damaged (warned)."""
    if not path.exists():
        return None
    try:
        return Baseline.from_dict(json.loads(read_text(path, _MAX_FILE_BYTES)))
    except (FileReadError, ValueError, KeyError, TypeError) as exc:
        warnings.warn(
            f"{path}: damaged baseline cache file ({type(exc).__name__}: {exc}); recomputing",
            CacheWarning,
            stacklevel=3,
        )
        return None


def baseline_of(result: BatchResult, program: int = 0) -> Baseline:
    """The :class:`Baseline` of one program of a batched result: its best learning rate, its
    metric there (mean over the result's seeds) and that metric's seed-to-seed CV."""
    best_lr, metric = result.best(program)
    return Baseline(metric, best_lr, cv(result.best_seeds(program)), len(result.seeds))


def tuned_baseline(task: Task, config: SuiteConfig, device=None, name: str = BASELINE) -> Baseline:
    """The known optimizer ``name`` tuned on ``config``'s grid over its baseline seeds; read
    from the cache, or trained once and cached. A :class:`TaskError` when the baseline diverges
    at every learning rate (the task, or the grid, is broken: nothing can be normalised)."""
    path = baseline_path(task, config, device, name)
    cached = _read(path)
    if cached is not None:
        return cached
    program = load_known(name)
    try:
        result = train_batch(
            task,
            [program],
            config.lrs,
            config.baseline_seeds,
            device,
            config.torch_dtype,
            checkpoints=config.checkpoints,
        )
    except TaskError:
        raise
    except Exception as exc:  # the baseline is a known-good program: the task's code failed
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise TaskError(
            f"{task.name}: training the baseline {name} failed ({type(exc).__name__}: {reason}); "
            "see the Task protocol in docs/fitness.md"
        ) from None
    baseline = baseline_of(result)
    if baseline.best_lr is None:
        raise TaskError(
            f"{task.name}: the baseline {name} diverged (or scored NaN) at every learning rate "
            f"of the grid ({', '.join(f'{lr:g}' for lr in config.lrs)}); the task's loss or "
            "score is broken, or the grid is too high"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"task": task.name, "baseline": name, **baseline.to_dict()}
    atomic_write(path, json.dumps(doc))  # concurrent evaluators never read a half-written file
    return baseline
