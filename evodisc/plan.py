"""The multi-tensor form of a program, a :class:`Plan`: what exported optimizers run.

A program says how to update one tensor. An optimizer applies it to every parameter, and doing
that one tensor and one torch call per primitive at a time costs far more than the arithmetic.
A plan (made by :func:`evodisc.lowering.lower`) is straight-line steps over *lists* of tensors
(the parameters of one device, dtype and step count), written the way torch.optim's ``foreach``
implementations are (``torch/optim/adamw.py: _multi_tensor_adamw``): one ``torch._foreach_*``
call per operation for all the tensors, numbers as Python floats (:mod:`evodisc.plan_numbers`).

A plan runs in two ways, making the same torch calls with the same arguments, so that they agree
bit for bit: :meth:`Plan.run` (the class of :func:`evodisc.to_torch_optimizer`) and
:meth:`Plan.source` (the ``_update`` function of :func:`evodisc.torch_source`).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

from evodisc.analysis import live_statements
from evodisc.plan_numbers import Interval, number_assumptions, number_function, number_source
from evodisc.primitives import PRIMITIVES
from evodisc.program import Expr, Program, format_expr


def reserved_names() -> frozenset[str]:
    """Names the generated module (or ``_update``) uses itself: program names that clash get a
    ``_``. Besides its own, the primitives' helper functions (``_clip``, ``_norm``, …) and the
    builtins its numbers call (``abs``)."""
    entries = PRIMITIVES.values()
    return frozenset(
        {"torch", "float", "zip", "_update", "_a", "_b"}
        | {p.helper_name for p in entries if p.helper}
        | {p.python for p in entries if p.python}
    )


class Step(NamedTuple):
    """``out = fn(*args)`` (``out`` is None for a call that works in place)."""

    out: str | None
    fn: Callable
    args: tuple[str | Expr, ...]  # register names, or number expressions
    text: str  # source, a format string over the argument texts
    statement: int  # the program statement it belongs to (len(body): the return)


@dataclass(frozen=True)
class Plan:
    """A program lowered to multi-tensor steps (see the module docstring)."""

    program: Program
    idents: dict[str, str]  # program name -> identifier in the generated source
    steps: tuple[Step, ...]
    outputs: tuple[str, ...]  # the registers holding the new state slots
    names: dict[str, str]  # register -> its name in the source (a program variable it holds)
    constants: dict[str, float]  # the named constants (numbers ``_update`` takes) and defaults
    reads_horizon: bool = False  # the plan reads ``T``, the run's total number of steps

    def __post_init__(self):
        getters = []
        for step in self.steps:
            args = [
                operator.itemgetter(a) if isinstance(a, str) else number_function(a, self.constants)
                for a in step.args
            ]
            getters.append((step.out, step.fn, args))
        object.__setattr__(self, "_compiled", tuple(getters))

    @cached_property
    def parameters(self) -> tuple[str, ...]:
        """``_update``'s parameters: ``w, g, lr, t``, ``T`` where the plan reads it, the named
        constants, the state slots."""
        horizon = ("T",) if self.reads_horizon else ()
        return ("w", "g", "lr", "t", *horizon, *self.constants, *self.slots)

    @property
    def slots(self) -> tuple[str, ...]:
        """The state slots' identifiers, in program order (``_update``'s trailing parameters)."""
        return tuple(self.idents[s] for s in self.program.state)

    def assumptions(self) -> dict[str, Interval]:
        """The interval each named constant must stay in for the plan to compute the rule (its
        Python arithmetic must not raise); the defaults are in them."""
        numbers = [arg for step in self.steps for arg in step.args if not isinstance(arg, str)]
        found = number_assumptions(numbers, self.constants)
        return {name: found[name] for name in self.constants if name in found}

    def run(self, *args) -> tuple[list, ...]:
        """``_update(w, g, lr, t, [T], <constants>, <slots>)``: one step for the parameters ``w``
        (a list: one device, dtype and step ``t``; ``T`` the run's total number of steps, where
        the plan reads it) with gradients ``g``; updates ``w`` and the state tensors in place and
        returns the new state lists."""
        env = dict(zip(self.parameters, args, strict=True))
        for out, fn, getters in self._compiled:
            value = fn(*[get(env) for get in getters])
            if out is not None:
                env[out] = value
        return tuple(env[r] for r in self.outputs)

    def source(self) -> list[str]:
        """The body of ``_update(w, g, lr, t, [T], <constants>, <slots>)``: the plan as lines of
        Python, each block under a comment with the program statement it comes from."""
        program = self.program
        body = live_statements(program.body, program.returns)
        comments = [f"# {s.target} = {format_expr(s.expr)}" for s in body]
        comments.append(f"# return {', '.join(format_expr(e) for e in program.returns)}")
        names = self.names
        taken = {*self.parameters, *self.idents.values(), *names.values()}
        taken |= {s.out for s in self.steps if s.out}
        numbers = (f"num{i}" for i in range(1, 1000) if f"num{i}" not in taken)
        lines: list[str] = []
        shown = 0
        for step in self.steps:
            while shown <= step.statement:
                lines.append(comments[shown])
                shown += 1
            texts = []
            for arg in step.args:
                if isinstance(arg, str):
                    texts.append(names.get(arg, arg))
                    continue
                text = number_source(arg, self.constants)
                if len(text) > 40 and step.text != "{0}":  # a long number: a line of its own
                    name = next(numbers)
                    lines.append(f"{name} = {text}")
                    text = name
                texts.append(text)
            call = step.text.format(*texts)
            lines.append(f"{names.get(step.out, step.out)} = {call}" if step.out else call)
        lines.extend(comments[shown:])
        outputs = [names.get(r, r) for r in self.outputs]
        listed = "".join(f"{r}, " for r in outputs)
        lines.append(f"return ({listed.rstrip(' ') if len(outputs) == 1 else listed[:-2]})")
        return lines

    def helpers(self) -> dict[str, str]:
        """The source of each export helper (``_clip``, ``_norm``, …) that the plan's source
        calls, in its steps or in the numbers they take (``_clip(lr, t)``), by name."""
        texts = [step.text for step in self.steps]
        texts += [
            number_source(arg, self.constants)
            for step in self.steps
            for arg in step.args
            if not isinstance(arg, str)
        ]
        called = {name for text in texts for name in re.findall(r"\b(_\w+)\(", text)}
        return {p.helper_name: p.helper for p in PRIMITIVES.values() if p.helper_name in called}
