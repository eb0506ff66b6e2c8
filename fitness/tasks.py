"""The proxy-task protocol, the registry of built-in tasks, and loading a user's own task.

A task is a small real training problem: data with a train/validation split, a model written as a
plain ``torch.nn.Module``, a training loss, a validation metric, a step budget and a batch size.
The batched trainer stacks many copies of the model (one per program × learning rate × seed) and
runs them together with :func:`torch.func.vmap`, so ``loss`` and ``score`` must be written for
*one* model's output (they are vmapped).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # torch is needed to run tasks, not to name or fingerprint them
    import torch


class TaskError(ValueError):
    """A task that cannot be found, loaded or used; the message is one line."""


@dataclass(frozen=True)
class TaskData:
    """Training and validation tensors (inputs ``x``, targets ``y``), first dimension = examples."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


@runtime_checkable
class Task(Protocol):
    """What a proxy task provides (built-in or a user's own; see ``docs/fitness.md``)."""

    name: str
    description: str
    steps: int  # optimizer steps per run
    batch_size: int  # training examples per step
    metric: str  # what :meth:`score` measures, e.g. "val cross-entropy"
    higher_is_better: bool  # direction of :meth:`score`

    def data(self) -> TaskData:
        """The dataset (deterministic: the same tensors on every call)."""
        ...

    def model(self) -> torch.nn.Module:
        """A freshly initialised model, drawn from torch's global RNG (the trainer seeds it)."""
        ...

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar training loss of one model's output on one batch."""
        ...

    def score(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar validation metric of one model's output on the validation set."""
        ...


_REQUIRED = ("name", "steps", "batch_size", "metric", "higher_is_better")
_METHODS = ("data", "model", "loss", "score")


def check_task(task: object, origin: str) -> Task:
    """``task`` if it satisfies the protocol; :class:`TaskError` naming what is missing."""
    missing = [a for a in _REQUIRED if not hasattr(task, a)]
    missing += [m for m in _METHODS if not callable(getattr(task, m, None))]
    if missing:
        raise TaskError(f"{origin}: not a Task (missing {', '.join(missing)}; see docs/fitness.md)")
    for attr in ("steps", "batch_size"):
        value = getattr(task, attr)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise TaskError(f"{origin}: {attr} must be a positive integer, not {value!r}")
    return task  # type: ignore[return-value]


# ------------------------------------------------------------------------------------ registry

#: Task factories by name; :mod:`fitness.builtin` registers the default suite.
REGISTRY: dict[str, Callable[[], Task]] = {}


def register(name: str) -> Callable[[Callable[[], Task]], Callable[[], Task]]:
    """Decorator: add a task factory to :data:`REGISTRY` under ``name``."""

    def add(factory: Callable[[], Task]) -> Callable[[], Task]:
        REGISTRY[name] = factory
        return factory

    return add


def task_names() -> list[str]:
    """The registered task names, in registration order (the default suite)."""
    import fitness.builtin  # noqa: F401  (registers the built-in tasks)

    return list(REGISTRY)


def load_task(spec: str | Task) -> Task:
    """A task from a registry name, a ``path/to/file.py:factory`` spec, or a Task object."""
    if not isinstance(spec, str):
        return check_task(spec, repr(spec))
    names = task_names()
    if spec in REGISTRY:
        return REGISTRY[spec]()
    if ":" in spec:
        return _load_user_task(spec)
    raise TaskError(f"unknown task {spec!r}; known: {', '.join(names)} (or FILE.py:FACTORY)")


def _load_user_task(spec: str) -> Task:
    path_text, _, factory_name = spec.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise TaskError(f"{spec}: no such file {path_text!r}")
    if not factory_name.isidentifier():
        raise TaskError(f"{spec}: {factory_name!r} is not a Python name")
    digest = hashlib.blake2b(str(path.resolve()).encode(), digest_size=8).hexdigest()
    module_name = f"evodisc_user_task_{digest}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise TaskError(f"{spec}: cannot import {path_text!r} (is it a .py file?)")
    module = importlib.util.module_from_spec(module_spec)
    # Registered like any imported module: dataclasses and pickling look classes up there.
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # a user's file may fail in any way; report it on one line
        del sys.modules[module_name]
        raise TaskError(f"{spec}: importing the file failed: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise TaskError(f"{spec}: the file has no callable {factory_name!r}")
    try:
        task = factory()
    except Exception as exc:
        raise TaskError(f"{spec}: {factory_name}() failed: {type(exc).__name__}: {exc}") from None
    return check_task(task, spec)


def task_fingerprint(spec: str) -> str:
    """What identifies a task's results in a cache key: a built-in's name (its definition is
    covered by :data:`fitness.config.PROTOCOL_VERSION`), or for ``FILE.py:factory`` the factory
    and a digest of the file's content (an edited task file is a different task)."""
    if ":" not in spec:
        return spec
    path_text, _, factory_name = spec.rpartition(":")
    try:
        content = Path(path_text).read_bytes()
    except OSError as exc:
        raise TaskError(f"{spec}: cannot read {path_text!r} ({exc.strerror})") from None
    return f"{Path(path_text).name}:{factory_name}:{hashlib.blake2b(content).hexdigest()[:32]}"


@dataclass(frozen=True)
class TaskInfo:
    """Sizes and budget of a task, for listings."""

    name: str
    parameters: int
    train_examples: int
    val_examples: int
    steps: int
    batch_size: int
    metric: str
    better: str  # "lower" or "higher"
    description: str


def describe(task: Task) -> TaskInfo:
    """Size (parameters of one model, examples) and budget of ``task``."""
    data = task.data()
    params = sum(p.numel() for p in task.model().parameters())
    return TaskInfo(
        name=task.name,
        parameters=params,
        train_examples=len(data.x_train),
        val_examples=len(data.x_val),
        steps=task.steps,
        batch_size=task.batch_size,
        metric=task.metric,
        better="higher" if task.higher_is_better else "lower",
        description=getattr(task, "description", ""),
    )
