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
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

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
_DATA_FIELDS = ("x_train", "y_train", "x_val", "y_val")

#: Bounds on a task's budget, checked before anything is allocated: optimizer steps per run,
#: examples per step, and examples drawn per run (steps × batch size; the trainer holds their
#: indices for every seed).
MAX_STEPS = 100_000
MAX_BATCH_SIZE = 65_536
MAX_EXAMPLES_PER_RUN = 10_000_000


def check_task(task: object, origin: str) -> Task:
    """``task`` if it satisfies the protocol; :class:`TaskError` naming what is missing."""
    missing = [a for a in _REQUIRED if not hasattr(task, a)]
    missing += [m for m in _METHODS if not callable(getattr(task, m, None))]
    if missing:
        raise TaskError(f"{origin}: not a Task (missing {', '.join(missing)}; see docs/fitness.md)")
    attrs = {a: getattr(task, a) for a in _REQUIRED}
    if not isinstance(attrs["name"], str) or not attrs["name"].strip():
        raise TaskError(f"{origin}: name must be a non-empty string, not {attrs['name']!r}")
    for attr, limit in (("steps", MAX_STEPS), ("batch_size", MAX_BATCH_SIZE)):
        value = attrs[attr]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise TaskError(f"{origin}: {attr} must be a positive integer, not {value!r}")
        if value > limit:
            raise TaskError(f"{origin}: {attr} is {value:,}; the limit is {limit:,}")
    examples = attrs["steps"] * attrs["batch_size"]
    if examples > MAX_EXAMPLES_PER_RUN:
        raise TaskError(
            f"{origin}: steps × batch_size is {examples:,} examples per run; "
            f"the limit is {MAX_EXAMPLES_PER_RUN:,}"
        )
    if not isinstance(attrs["higher_is_better"], bool):
        raise TaskError(f"{origin}: higher_is_better must be True or False")
    return task  # type: ignore[return-value]


def _what(value: object) -> str:
    """A short description of a value's type, for error messages (``a tuple``, ``a str``)."""
    kind = type(value).__name__
    if type(value).__module__ == "numpy":
        kind = f"NumPy {kind}"
    return f"{'an' if kind[0].lower() in 'aeiou' else 'a'} {kind}"


def load_data(task: Task) -> TaskData:
    """``task.data()`` checked and as torch tensors: NumPy arrays are converted; anything that
    is not a :class:`TaskData` (a tuple, a string, …), a field that is not an array, an empty
    set or mismatched lengths is a :class:`TaskError` naming the task and the mistake."""
    import numpy as np
    import torch

    name = getattr(task, "name", repr(task))
    data = _called(name, "data", task.data)
    if isinstance(data, tuple | list | str | bytes | dict) or not all(
        hasattr(data, f) for f in _DATA_FIELDS
    ):
        raise TaskError(
            f"{name}: data() returned {_what(data)}, not a TaskData; return "
            "fitness.tasks.TaskData(x_train, y_train, x_val, y_val): four tensors (or NumPy "
            "arrays) whose first dimension is the examples"
        )
    tensors = []
    for field_name in _DATA_FIELDS:
        value = getattr(data, field_name)
        if isinstance(value, np.ndarray):
            try:
                value = torch.as_tensor(np.array(value))
            except TypeError:
                raise TaskError(
                    f"{name}: TaskData.{field_name} is a NumPy array of {value.dtype}, which "
                    "torch cannot hold; use numbers"
                ) from None
        if not isinstance(value, torch.Tensor):
            raise TaskError(
                f"{name}: TaskData.{field_name} is {_what(value)}, not a tensor (a torch.Tensor "
                "or a NumPy array whose first dimension is the examples)"
            )
        if value.ndim == 0:
            raise TaskError(f"{name}: TaskData.{field_name} has no first dimension (examples)")
        tensors.append(value)
    x_train, y_train, x_val, y_val = tensors
    for split, x, y in (("training", x_train, y_train), ("validation", x_val, y_val)):
        if len(x) == 0:
            raise TaskError(f"{name}: the {split} set is empty (x has 0 examples)")
        if len(x) != len(y):
            raise TaskError(
                f"{name}: the {split} set has {len(x)} inputs but {len(y)} targets "
                "(the first dimension is the examples)"
            )
    return TaskData(x_train, y_train, x_val, y_val)


def make_model(task: Task) -> torch.nn.Module:
    """``task.model()``, checked: a failure or something that is not a ``torch.nn.Module``
    with parameters is a :class:`TaskError` naming the task."""
    import torch

    model = _called(task.name, "model", task.model)
    if not isinstance(model, torch.nn.Module):
        raise TaskError(f"{task.name}: model() returned {_what(model)}, not a torch.nn.Module")
    if not any(True for _ in model.parameters()):
        raise TaskError(f"{task.name}: model() has no parameters to optimize")
    return model


def _called(name: str, method: str, call: Callable[[], object]) -> Any:
    """``call()``, the task ``name``'s ``method``: any exception but a :class:`TaskError` is one
    line naming the task and the method."""
    try:
        return call()
    except TaskError:
        raise
    except Exception as exc:
        raise TaskError(f"{name}: {method}() failed ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# ------------------------------------------------------------------------------------ registry

#: The built-in tasks: name → ``module:factory``, imported when a task is loaded (so naming and
#: listing tasks needs no torch). The default search suite, in order:
SUITE: dict[str, str] = {
    "digits_mlp": "fitness.builtin:digits_mlp",
    "markov_lm": "fitness.builtin:markov_lm",
    "teacher_student": "fitness.builtin:teacher_student",
    "ill_conditioned": "fitness.builtin:ill_conditioned",
}

#: Held-out tasks: never in the default suite, trained only when named (to replay and validate
#: what a search found on tasks it never saw).
HELDOUT: dict[str, str] = {
    "digits_cnn": "fitness.builtin:digits_cnn",
    "breast_cancer_logreg": "fitness.builtin:breast_cancer_logreg",
    "diabetes_mlp": "fitness.builtin:diabetes_mlp",
    "patch_autoencoder": "fitness.builtin:patch_autoencoder",
    "digits_mlp_layernorm": "fitness.builtin:digits_mlp_layernorm",
    "digits_mlp_large_batch": "fitness.builtin:digits_mlp_large_batch",
    "markov_lm_long": "fitness.builtin:markov_lm_long",
}


def task_names() -> list[str]:
    """The default search suite (what a campaign trains on when its file names no tasks)."""
    return list(SUITE)


def heldout_task_names() -> list[str]:
    """The held-out tasks: never in the default suite, used to replay and validate what a search
    found (``evodisc tasks`` marks them)."""
    return list(HELDOUT)


def is_heldout(name: str) -> bool:
    """True for the name of a built-in held-out task."""
    return name in HELDOUT


def _builtin(name: str) -> Task:
    module_name, _, factory = {**SUITE, **HELDOUT}[name].partition(":")
    return getattr(importlib.import_module(module_name), factory)()


#: Tasks loaded by this process: a name, or a user's file, its factory and its content.
_LOADED: dict[tuple, Task] = {}


def load_task(spec: str | Task) -> Task:
    """A task from a registry name (suite or held-out), a ``path/to/file.py:factory`` spec, or
    a Task object. Each is loaded once per process: a user's file is imported again only when
    its content changed (an edited task is a new task)."""
    if not isinstance(spec, str):
        return check_task(spec, repr(spec))
    if spec in SUITE or spec in HELDOUT:
        if (spec,) not in _LOADED:
            _LOADED[(spec,)] = _builtin(spec)
        return _LOADED[(spec,)]
    if ":" in spec:
        return _load_user_task(spec)
    known = ", ".join([*SUITE, *HELDOUT])
    raise TaskError(f"unknown task {spec!r}; known: {known} (or FILE.py:FACTORY)")


def _load_user_task(spec: str) -> Task:
    path_text, _, factory_name = spec.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise TaskError(f"{spec}: no such file {path_text!r}")
    if not factory_name.isidentifier():
        raise TaskError(f"{spec}: {factory_name!r} is not a Python name")
    try:
        content = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    except OSError as exc:
        raise TaskError(f"{spec}: cannot read {path_text!r} ({exc.strerror})") from None
    key = (str(path.resolve()), factory_name, content)
    if key not in _LOADED:
        _LOADED[key] = _import_user_task(spec, path, factory_name)
    return _LOADED[key]


def _import_user_task(spec: str, path: Path, factory_name: str) -> Task:
    path_text = str(path)
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


#: The module of the built-in tasks, whose definitions PROTOCOL_VERSION covers.
_BUILTIN_MODULE = "fitness.builtin"


def is_builtin(task: Task) -> bool:
    """True for a task defined in :mod:`fitness.builtin` (covered by the protocol version)."""
    return type(task).__module__ == _BUILTIN_MODULE


def fingerprint(task: Task) -> str:
    """A digest of everything that determines a task's results: its name, budget and metric
    and its simple attributes; for a task that is not built in (whose definition
    :data:`fitness.config.PROTOCOL_VERSION` does not cover) also the content of the file that
    defines its class, its data (values, dtypes, shapes) and its model (parameter names,
    shapes, dtypes and initial values at seed 0). An edited task is a different task."""
    digest = hashlib.blake2b(digest_size=16)
    attributes = {
        k: v
        for k, v in sorted(getattr(task, "__dict__", {}).items())
        if isinstance(v, str | int | float | bool | None) and not k.startswith("_")
    }
    head = [task.name, task.steps, task.batch_size, task.metric, bool(task.higher_is_better)]
    digest.update(json.dumps([head, attributes], default=repr).encode())
    if is_builtin(task):
        return f"builtin:{digest.hexdigest()}"
    import torch

    digest.update(_class_source(task))
    data = load_data(task)
    for tensor in (data.x_train, data.y_train, data.x_val, data.y_val):
        _update_tensor(digest, tensor)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = make_model(task)
    for name, parameter in model.named_parameters():
        digest.update(name.encode())
        _update_tensor(digest, parameter)
    return f"user:{digest.hexdigest()}"


def _class_source(task: Task) -> bytes:
    """The content of the file that defines ``task``'s class (empty if there is none)."""
    module = sys.modules.get(type(task).__module__)
    path = getattr(module, "__file__", None)
    try:
        return Path(path).read_bytes() if path and Path(path).is_file() else b""
    except OSError:
        return b""


def _update_tensor(digest, tensor: torch.Tensor) -> None:
    import torch

    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    digest.update(f"{flat.dtype}{tuple(tensor.shape)}".encode())
    try:
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    except (RuntimeError, TypeError):  # a dtype without a byte view
        digest.update(repr(flat.tolist()).encode())


def task_fingerprint(spec: str) -> str:
    """What identifies a task's results in a cache key: a built-in's name (its definition is
    covered by :data:`fitness.config.PROTOCOL_VERSION`), or for ``FILE.py:factory`` the factory,
    a digest of the file's content and the task's :func:`fingerprint` (its data and model:
    the task is loaded, so this runs the file)."""
    if ":" not in spec:
        return spec
    path_text, _, factory_name = spec.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise TaskError(f"{spec}: no such file {path_text!r}")
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise TaskError(f"{spec}: cannot read {path_text!r} ({exc.strerror})") from None
    source = hashlib.blake2b(content).hexdigest()[:32]
    return f"{path.name}:{factory_name}:{source}:{fingerprint(load_task(spec))}"


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
    data = load_data(task)
    params = sum(p.numel() for p in make_model(task).parameters())
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
