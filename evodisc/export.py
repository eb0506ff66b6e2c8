"""Export a program as a ``torch.optim.Optimizer``: a class for this process
(:func:`to_torch_optimizer`), or standalone source that needs only torch (:func:`torch_source`).

Both keep the layout of ``torch/optim/adamw.py``: ``__init__(params, lr=1e-3)``, param groups,
lazy per-parameter state ``self.state[p]`` holding ``step`` and one tensor per state slot (named
after the slot), and ``@torch.no_grad() step(closure=None)``. Both run the program's
multi-tensor plan (:mod:`evodisc.multitensor`): one ``torch._foreach_*`` call per operation for
all parameters of a device, dtype and step count, as torch.optim's ``foreach`` implementations
do; the class executes the plan, the source is the plan written out. They make the same torch
calls, so they agree bit for bit and their state dicts are interchangeable.
"""

from __future__ import annotations

import keyword
import re
import string
from collections import defaultdict
from pathlib import Path
from typing import ClassVar

import torch

from evodisc.multitensor import RESERVED_NAMES, Plan, lower
from evodisc.primitives import PRIMITIVES
from evodisc.program import Program, format_program

DEFAULT_CLASS_NAME = "EvolvedOptimizer"


def state_keys(program: Program) -> tuple[str, ...]:
    """The keys of the state slots in ``optimizer.state[p]`` (``step`` is the step counter)."""
    return tuple(f"{slot}_" if slot == "step" else slot for slot in program.state)


def class_name_from_path(path: str | Path) -> str:
    """A class name from a program file or zoo name: ``lion.py`` → ``Lion``,
    ``cautious_adamw`` → ``CautiousAdamw``."""
    words = re.split(r"[^0-9A-Za-z]+", Path(path).stem)
    name = "".join(word[:1].upper() + word[1:] for word in words)
    if not name:
        return DEFAULT_CLASS_NAME
    if not name[0].isalpha():
        return f"Optimizer{name}"
    if keyword.iskeyword(name) or name in _MODULE_NAMES:  # none.py → None, true.py → True
        return f"{name}Optimizer"
    return name


def _check_class_name(name: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name) or name in _MODULE_NAMES:
        raise ValueError(f"{name!r} cannot be a class name; use a Python identifier")
    return name


def _class_doc(program: Program, name: str) -> str:
    listing = "".join(f"        {line}\n" for line in format_program(program).splitlines())
    slots = ", ".join(program.state) or "none"
    return (
        f"{name}: an optimizer exported by evodisc from this update rule::\n\n{listing}\n"
        f"    Each parameter moves by ``w ← w - update``; the state slots ({slots}) start at\n"
        "    zero.\n"
        "    "
    )


# ---------------------------------------------------------------------------- the class here


class ProgramOptimizer(torch.optim.Optimizer):
    """Base of the classes :func:`to_torch_optimizer` makes: runs the program's ``plan``."""

    program: ClassVar[Program]
    plan: ClassVar[Plan]
    slot_keys: ClassVar[tuple[str, ...]]
    chunk_bytes: ClassVar[int]  # on CPU, parameters are updated in chunks of about this size

    def __init__(self, params, lr: float = 1e-3):
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimization step; ``closure`` re-evaluates the model, returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            buckets = defaultdict(list)  # the parameters by device, dtype and step count
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    for key in self.slot_keys:
                        state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                buckets[p.device, p.dtype, state["step"]].append(p)
            for (device, _, t), params in buckets.items():
                for chunk in chunks(params, device, self.chunk_bytes):
                    states = [self.state[p] for p in chunk]
                    slots = self.plan.run(
                        chunk,
                        [p.grad for p in chunk],
                        float(group["lr"]),
                        t,
                        [[s[key] for s in states] for key in self.slot_keys],
                    )
                    for key, values in zip(self.slot_keys, slots, strict=True):
                        for s, value in zip(states, values, strict=True):
                            s[key] = value
        return loss


#: On CPU, parameters are updated in chunks of about this many bytes, so that a chunk's
#: tensors (weights, gradients, state, temporaries) stay in cache across the calls of a step:
#: one foreach call over a whole large model streams it from memory once per operation and
#: measured 1.2-1.4x slower than chunks of 1 MiB (see docs/export.md).
CPU_CHUNK_BYTES = 1 << 20


def chunks(params: list, device: torch.device, limit: int = CPU_CHUNK_BYTES) -> list[list]:
    """The lists of parameters updated together: all of them on a GPU (one kernel launch per
    operation); on CPU, consecutive runs of at most ``limit`` bytes (a larger tensor alone)."""
    if device.type != "cpu":
        return [params]
    out, size = [[]], 0
    for p in params:
        nbytes = p.numel() * p.element_size()
        if out[-1] and size + nbytes > limit:
            out.append([])
            size = 0
        out[-1].append(p)
        size += nbytes
    return out


def to_torch_optimizer(program: Program, name: str | None = None) -> type[torch.optim.Optimizer]:
    """A ``torch.optim.Optimizer`` subclass that applies ``program`` (its multi-tensor plan)."""
    if not isinstance(program, Program):
        raise TypeError(f"expected a Program, got {type(program).__name__}")
    name = _check_class_name(DEFAULT_CLASS_NAME if name is None else name)
    namespace = {
        "__doc__": _class_doc(program, name),
        "__module__": __name__,
        "__qualname__": name,
        "program": program,
        "plan": lower(program),
        "slot_keys": state_keys(program),
        "chunk_bytes": CPU_CHUNK_BYTES,
    }
    return type(name, (ProgramOptimizer,), namespace)


# --------------------------------------------------------------------------- standalone source

#: Helper functions the generated code may call (their source, from the primitives registry).
_HELPERS = {
    re.match(r"def (\w+)", p.helper).group(1): p.helper for p in PRIMITIVES.values() if p.helper
}
_MODULE_NAMES = RESERVED_NAMES | {"_chunks", "_CPU_CHUNK_BYTES"}

_MODULE = string.Template('''"""$name: a torch.optim.Optimizer exported by evodisc.

It needs only PyTorch. The update rule it applies is in the class docstring; ``_update`` applies
it to many parameters at once, one ``torch._foreach_*`` call per operation, as torch.optim's
``foreach`` implementations do.
"""

import torch

#: On CPU, parameters are updated in chunks of about this many bytes (they stay in cache).
_CPU_CHUNK_BYTES = $chunk_bytes
$helpers

def _update($signature):
    """One step for the parameters ``w`` (a list: one device, one dtype, step ``t``) with
    gradients ``g``: updates ``w`` and the state tensors in place; returns the state lists."""
$body


def _chunks(params, device):
    """The lists of parameters updated together: all on a GPU, runs of ~1 MiB on CPU."""
    if device.type != "cpu":
        return [params]
    out, size = [[]], 0
    for p in params:
        nbytes = p.numel() * p.element_size()
        if out[-1] and size + nbytes > _CPU_CHUNK_BYTES:
            out.append([])
            size = 0
        out[-1].append(p)
        size += nbytes
    return out


class $name(torch.optim.Optimizer):
    """$doc"""

    _slots = $slots  # the state tensors of a parameter, besides its step count

    def __init__(self, params, lr=1e-3):
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimization step; ``closure`` re-evaluates the model, returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            buckets = {}  # the parameters by device, dtype and step count
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("$name does not support sparse gradients")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    for key in self._slots:
                        state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                buckets.setdefault((p.device, p.dtype, state["step"]), []).append(p)
            for (device, _, t), params in buckets.items():
                for chunk in _chunks(params, device):
                    states = [self.state[p] for p in chunk]
                    slots = _update(
                        chunk,
                        [p.grad for p in chunk],
                        float(group["lr"]),
                        t,
                        *[[s[key] for s in states] for key in self._slots],
                    )
                    for key, values in zip(self._slots, slots):
                        for s, value in zip(states, values):
                            s[key] = value
        return loss
''')


def torch_source(program: Program, class_name: str | None = None) -> str:
    """Standalone source of an optimizer class equivalent to ``to_torch_optimizer(program)``.

    The module imports only torch; its ``_update`` function is the program's multi-tensor plan
    written out, with the program's own variable names, each block under the program statement
    it computes.
    """
    name = _check_class_name(DEFAULT_CLASS_NAME if class_name is None else class_name)
    plan = lower(program)
    keys = state_keys(program)
    helpers = "".join(f"\n\n{_HELPERS[h]}" for h in sorted(plan.helpers()))
    return _MODULE.substitute(
        name=name,
        helpers=helpers,
        signature=", ".join(["w", "g", "lr", "t", *plan.slots]),
        body="\n".join(f"    {line}" for line in plan.source()),
        doc=_class_doc(program, name),
        chunk_bytes=f"1 << {CPU_CHUNK_BYTES.bit_length() - 1}",
        slots="(" + ", ".join(f'"{k}"' for k in keys) + ("," if len(keys) == 1 else "") + ")",
    )
