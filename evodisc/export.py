"""Export a program as a ``torch.optim.Optimizer``: a class for this process
(:func:`to_torch_optimizer`), or standalone source that needs only torch (:func:`torch_source`).

Both are subclasses of :class:`ProgramOptimizer`, which is written once, here, and copied into
the standalone source as it stands (:func:`inspect.getsource`). It keeps the layout of
``torch/optim/adamw.py``: ``__init__(params, lr=1e-3, <constants>)``, param groups, lazy
per-parameter state ``self.state[p]`` holding ``step`` and one tensor per state slot (named after
the slot), and ``@torch.no_grad() step(closure=None)``. A subclass gives the rule: its
multi-tensor plan (:mod:`evodisc.plan`) as ``_update`` — executed by the class here,
written out as a function in the source; they make the same torch calls, so the two agree bit for
bit and their state dicts are interchangeable — and its *named constants*
(:func:`evodisc.constant_names.named_constants`: ``beta1``, ``eps``, …), which are ``defaults``
that a param group may override.
"""

from __future__ import annotations

import builtins
import inspect
import keyword
import math
import re
import string
from pathlib import Path

import torch

from evodisc.constant_names import NAMING, ROLES, Constant, named_constants
from evodisc.lowering import lower
from evodisc.plan import Plan, reserved_names
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
    if keyword.iskeyword(name) or name in _module_names():  # none.py → None, true.py → True
        return f"{name}Optimizer"
    return name


def _check_class_name(name: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name) or name in _module_names():
        raise ValueError(f"{name!r} cannot be a class name; use a Python identifier")
    return name


# --------------------------------------------------------------------------- the optimizer


class ProgramOptimizer(torch.optim.Optimizer):
    """An update rule, run the way torch.optim's ``foreach`` optimizers run theirs.

    A subclass gives the rule: ``_update(w, g, lr, t, *constants, *slots)`` updates parameters
    ``w`` (a list: one device, dtype and step count ``t``) with gradients ``g``, and the lists of
    state tensors, in place and returns the new state lists; ``constants``: its numbers and their
    defaults (``__init__`` arguments besides ``lr``); ``ranges``: the interval each constant
    must stay in, where the rule's code needs one; ``slots``: the keys of a parameter's state
    tensors; ``reads_horizon``: the rule reads ``T``, the run's total number of steps, which
    ``__init__`` then requires as ``total_steps`` and ``_update`` takes after ``t``. A step calls
    ``_update`` once per param group, device, dtype and step count (on CPU, per chunk of about
    ``chunk_bytes``), with the group's ``lr`` and constants as floats.
    """

    constants: dict[str, float] = {}
    ranges: dict[str, tuple[float, float, str]] = {}  # (0.0, 1.0, "[)"): 0 <= x < 1
    slots: tuple[str, ...] = ()
    reads_horizon: bool = False
    #: On CPU, a chunk's tensors (weights, gradients, state, temporaries) stay in cache across
    #: the calls of a step; one call over a large model streams it from memory once per
    #: operation, 1.2-1.4x slower than chunks of 1 MiB.
    chunk_bytes: int = 1 << 20

    def __init__(self, params, lr: float = 1e-3, *, total_steps=None, **constants: float):
        name = type(self).__name__
        for key in constants:
            if key not in self.constants:
                raise TypeError(f"{name}() got an unexpected keyword argument {key!r}")
        if total_steps is None and self.reads_horizon:
            raise TypeError(
                f"{name}() needs total_steps, the number of optimizer steps of the run: "
                "its update rule reads T, the run's horizon"
            )
        if total_steps is not None:
            try:
                valid = int(total_steps) == total_steps >= 1 and not isinstance(total_steps, bool)
            except (TypeError, ValueError, OverflowError):
                valid = False
            if not valid:
                raise ValueError(f"Invalid total_steps value: {total_steps!r} (a whole number ≥ 1)")
            total_steps = int(total_steps)
        self.total_steps = total_steps  # T; a rule that does not read it ignores it
        super().__init__(params, {"lr": lr, **self.constants, **constants})

    def add_param_group(self, param_group: dict) -> None:
        """Add a param group, checking its ``lr`` and constants (its own or the defaults)."""
        values = {**self.defaults, **param_group}
        if not values["lr"] >= 0.0:
            raise ValueError(f"Invalid learning rate: {values['lr']}")
        for key, (low, high, brackets) in self.ranges.items():
            value = values[key]
            above = value >= low if brackets[0] == "[" else value > low
            below = value <= high if brackets[1] == "]" else value < high
            if not (above and below):
                interval = self._interval_text(low, high, brackets)
                raise ValueError(f"Invalid {key} value: {value} (must be in {interval})")
        super().add_param_group(param_group)

    @staticmethod
    def _interval_text(low: float, high: float, brackets: str) -> str:
        return f"{brackets[0]}{low:g}, {high:g}{brackets[1]}"

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:  # a checkpoint without a constant: its default
            for key, value in self.defaults.items():
                group.setdefault(key, value)

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimization step; ``closure`` re-evaluates the model, returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        horizon = (self.total_steps,) if self.reads_horizon else ()
        for group in self.param_groups:
            lr = float(group["lr"])
            constants = [float(group[key]) for key in self.constants]
            buckets = {}  # the parameters by device, dtype and step count
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    for key in self.slots:
                        state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if horizon and state["step"] >= self.total_steps:
                    raise ValueError(
                        f"{type(self).__name__}: step {state['step'] + 1} is past total_steps="
                        f"{self.total_steps} (its update rule reads T: 1 <= t <= T)"
                    )
                state["step"] += 1
                buckets.setdefault((p.device, p.dtype, state["step"]), []).append(p)
            for (device, _, t), params in buckets.items():
                for chunk in self._chunks(params, device):
                    states = [self.state[p] for p in chunk]
                    slots = self._update(
                        chunk,
                        [p.grad for p in chunk],
                        lr,
                        t,
                        *horizon,
                        *constants,
                        *[[s[key] for s in states] for key in self.slots],
                    )
                    for key, values in zip(self.slots, slots, strict=True):
                        for s, value in zip(states, values, strict=True):
                            s[key] = value
        return loss

    def _chunks(self, params: list, device: torch.device) -> list[list]:
        """The lists of parameters updated together: all of them on a GPU (one kernel launch per
        operation); on CPU, consecutive runs of at most ``chunk_bytes`` (a larger tensor alone)."""
        if device.type != "cpu":
            return [params]
        out, size = [[]], 0
        for p in params:
            nbytes = p.numel() * p.element_size()
            if out[-1] and size + nbytes > self.chunk_bytes:
                out.append([])
                size = 0
            out[-1].append(p)
            size += nbytes
        return out


def _class_doc(program: Program, name: str, plan: Plan, named: dict[str, Constant]) -> str:
    listing = [f"    {line}" for line in format_program(program).splitlines()]
    ranges = plan.assumptions()
    arguments = ["- ``lr=0.001``: the learning rate, at least 0."]
    if plan.reads_horizon:
        arguments += [
            "- ``total_steps`` (required): the number of optimizer steps of the run, ``T`` in",
            "  the rule; a step past it is an error.",
        ]
    for key, constant in named.items():
        within = f", in {ProgramOptimizer._interval_text(*ranges[key])}" if key in ranges else ""
        arguments.append(f"- ``{key}={constant.value!r}``{within}: {ROLES[constant.role]}.")
    lines = [
        "",
        *listing,
        "",
        "Each parameter moves by ``w ← w - update``; the state slots "
        f"({', '.join(program.state) or 'none'}) start at zero.",
        "",
        "Arguments, the defaults of the param groups (a group may set its own, as in",
        '``{"params": ..., "lr": 0.01}``):',
        "",
        *arguments,
        "",
        *NAMING.splitlines(),
    ]
    body = "".join(f"    {line}\n" if line else "\n" for line in lines)
    return f"{name}: an optimizer exported by evodisc from this update rule::\n{body}    "


def _plan(program: Program, named: dict[str, Constant]) -> Plan:
    return lower(program, {key: constant.value for key, constant in named.items()})


def to_torch_optimizer(program: Program, name: str | None = None) -> type[ProgramOptimizer]:
    """A :class:`ProgramOptimizer` subclass that applies ``program`` (its multi-tensor plan),
    with its named constants as arguments."""
    if not isinstance(program, Program):
        raise TypeError(f"expected a Program, got {type(program).__name__}")
    name = _check_class_name(DEFAULT_CLASS_NAME if name is None else name)
    rule, named = program, named_constants(program)
    plan = _plan(program, named)

    class Exported(ProgramOptimizer):
        __doc__ = _class_doc(rule, name, plan, named)
        program = rule
        constants = dict(plan.constants)
        ranges = plan.assumptions()
        slots = state_keys(rule)
        reads_horizon = plan.reads_horizon
        _update = staticmethod(plan.run)

    Exported.__name__ = Exported.__qualname__ = name
    return Exported


# --------------------------------------------------------------------------- standalone source


def _module_names() -> frozenset[str]:
    """Names a class of the generated module must not take (the base class calls builtins)."""
    return reserved_names() | {ProgramOptimizer.__name__} | set(dir(builtins))


_MODULE = string.Template('''"""$name: a torch.optim.Optimizer exported by evodisc.

It needs only PyTorch. The update rule it applies is in the class docstring; ``_update`` applies
it to many parameters at once, one ``torch._foreach_*`` call per operation, as torch.optim's
``foreach`` implementations do, and ``ProgramOptimizer`` runs it over the param groups.
"""

import torch
$helpers

def _update($signature):
    """One step for the parameters ``w`` (a list: one device, one dtype, step ``t``$horizon) with
    gradients ``g``: updates ``w`` and the state tensors in place; returns the state lists."""
$body


$base

class $name(ProgramOptimizer):
    """$doc"""

    constants = $constants
    ranges = $ranges
    slots = $slots$reads_horizon
    _update = staticmethod(_update)
''')


def _literal(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else f'float("{value}")'


def torch_source(program: Program, class_name: str | None = None) -> str:
    """Standalone source of an optimizer class equivalent to ``to_torch_optimizer(program)``.

    The module imports only torch; its ``_update`` function is the program's multi-tensor plan
    written out, with the program's own variable names, each block under the program statement
    it computes; its ``ProgramOptimizer`` is this module's, copied.
    """
    name = _check_class_name(DEFAULT_CLASS_NAME if class_name is None else class_name)
    named = named_constants(program)
    plan = _plan(program, named)
    constants = ", ".join(f'"{key}": {_literal(value)}' for key, value in plan.constants.items())
    ranges = ", ".join(
        f'"{key}": ({_literal(low)}, {_literal(high)}, "{brackets}")'
        for key, (low, high, brackets) in plan.assumptions().items()
    )
    keys = state_keys(program)
    return _MODULE.substitute(
        name=name,
        helpers="".join(f"\n\n{source}" for _, source in sorted(plan.helpers().items())),
        signature=", ".join(plan.parameters),
        body="\n".join(f"    {line}" for line in plan.source()),
        base=inspect.getsource(ProgramOptimizer),
        doc=_class_doc(program, name, plan, named),
        constants=f"{{{constants}}}",
        ranges=f"{{{ranges}}}",
        slots="(" + ", ".join(f'"{k}"' for k in keys) + ("," if len(keys) == 1 else "") + ")",
        horizon=" of ``T``" if plan.reads_horizon else "",
        reads_horizon="\n    reads_horizon = True" if plan.reads_horizon else "",
    )
