"""The program space: what random programs and mutations may contain, and random programs.

Everything here takes its randomness from a :class:`random.Random` (or a NumPy ``Generator``,
which seeds one) and builds well-formed programs: every name is defined before use, every call
has its primitive's arity, and there is one return value per state slot. A program *may* still
be a poor optimizer (ignore ``g``, overflow); the search screens those
(:func:`evodisc.validity.check_candidate`).
"""

from __future__ import annotations

import keyword
import math
import random
from dataclasses import dataclass

import numpy as np

from evodisc.edit import fresh_name, make_call, visible_names
from evodisc.primitives import PRIMITIVES
from evodisc.program import RESERVED_INPUTS, Assign, Call, Const, Expr, Program, Var
from evodisc.settings import (
    COUNT,
    NUMBER,
    TEXT,
    SettingError,
    check_known,
    check_settings,
    int_between,
    list_of,
    setting,
)

Rng = random.Random | np.random.Generator

#: The inputs random programs take: every reserved input but the horizon ``T``, which a space
#: that wants schedules lists (without it, seeded random programs are those from before ``T``).
DEFAULT_INPUTS = tuple(name for name in RESERVED_INPUTS if name != "T")
#: Constants a random argument is drawn from (besides log-uniform random ones).
DEFAULT_CONSTANTS = (0.5, 0.9, 0.99, 0.999, 1.0, 2.0, 1e-8, 1e-3, 0.01, 0.1)


@dataclass(frozen=True)
class ProgramSpace:
    """What random programs and mutations may contain (a campaign file's ``[space]``: the
    fields declared with :func:`~evodisc.settings.setting`)."""

    inputs: tuple[str, ...] = DEFAULT_INPUTS
    state: tuple[str, ...] = setting(
        list_of(TEXT, "names"), ("m", "v"), "state slots of random programs"
    )
    ops: tuple[str, ...] = setting(
        list_of(TEXT, "primitive names"),
        lambda: tuple(PRIMITIVES),
        "primitives random programs and mutations may use",
        shown="all primitives",
    )
    min_statements: int = setting(COUNT, 5, "fewest statements of a random program")
    max_statements: int = setting(int_between(1, 1000), 15, "most statements of any program")
    max_state_slots: int = setting(
        COUNT, 3, "most state slots a program may have (its memory); mutations add up to this"
    )
    constant_probability: float = 0.2  # chance that a random argument is a constant
    constants: tuple[float, ...] = setting(
        list_of(NUMBER, "numbers"), DEFAULT_CONSTANTS, "constants random arguments use"
    )
    update_name: str = "update"

    def __post_init__(self) -> None:
        check_settings(self)
        check_known("ops", self.ops, PRIMITIVES, "primitive")
        not_reserved = [name for name in self.inputs if name not in RESERVED_INPUTS]
        if not_reserved:
            raise ValueError(f"inputs must be among {RESERVED_INPUTS}, not {not_reserved}")
        taken = {*RESERVED_INPUTS, self.update_name}
        for name in self.state:
            if not _variable(name) or name in taken or self.state.count(name) > 1:
                expected = (
                    f"distinct names, none an input ({', '.join(RESERVED_INPUTS)}), "
                    f"{self.update_name!r}, a keyword or a primitive"
                )
                raise SettingError("state", expected, self.state)
        names = [*self.inputs, self.update_name]
        if not all(map(_variable, names)) or len(set(names)) != len(names):
            raise ValueError("inputs and the update name must be distinct variable names")
        if self.min_statements > self.max_statements:
            expected = f"at least min_statements ({self.min_statements})"
            raise SettingError("max_statements", expected, self.max_statements)
        if self.max_state_slots < len(self.state):
            expected = f"at most max_state_slots ({self.max_state_slots}) names"
            raise SettingError("state", expected, self.state)


def _variable(name: str) -> bool:
    """Whether ``name`` can name a program variable."""
    return name.isidentifier() and not keyword.iskeyword(name) and name not in PRIMITIVES


DEFAULT_SPACE = ProgramSpace()


def as_random(rng: Rng) -> random.Random:
    """``rng`` itself, or a :class:`random.Random` seeded from a NumPy ``Generator``."""
    if isinstance(rng, random.Random):
        return rng
    return random.Random(int(rng.integers(2**63)))


def random_constant(rng: random.Random, space: ProgramSpace) -> Const:
    """A constant from the space's list, or (one time in four) log-uniform in [1e-4, 10]."""
    if rng.random() < 0.75:
        return Const(rng.choice(space.constants))
    return Const(round_significant(10.0 ** rng.uniform(-4.0, 1.0), 3))


def random_leaf(rng: random.Random, space: ProgramSpace, names: list[str]) -> Expr:
    """A variable from ``names`` or a constant."""
    if rng.random() < space.constant_probability:
        return random_constant(rng, space)
    return Var(rng.choice(names))


def random_call(rng: random.Random, space: ProgramSpace, names: list[str]) -> Call:
    """A random primitive over random leaves, at least one of them a variable."""
    op = rng.choice(space.ops)
    args = [random_leaf(rng, space, names) for _ in range(PRIMITIVES[op].arity)]
    if all(isinstance(a, Const) for a in args):
        args[rng.randrange(len(args))] = Var(rng.choice(names))
    return make_call(op, tuple(args))


def round_significant(value: float, digits: int) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def random_target(
    rng: random.Random, space: ProgramSpace, program: Program, names: list[str]
) -> str:
    """A state slot, an already defined non-input name, or a fresh temporary."""
    choice = rng.random()
    state = [s for s in program.state]
    assigned = [n for n in names if n not in program.params]
    if choice < 1 / 3 and state:
        return rng.choice(state)
    if choice < 2 / 3 and assigned:
        return rng.choice(assigned)
    return fresh_name(program)


def random_program(rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """A random program of ``min_statements``…``max_statements`` statements; the last one assigns
    the update, and the state slots are returned as they stand at the end."""
    rng = as_random(rng)
    params = tuple(space.inputs) + tuple(space.state)
    returns = (Var(space.update_name), *(Var(s) for s in space.state))
    program = Program(params, (), returns)
    count = max(1, rng.randint(space.min_statements, space.max_statements))
    body: list[Assign] = []
    for i in range(count):
        program = Program(params, tuple(body), returns)
        names = visible_names(program, len(body))
        is_last = i == count - 1
        target = space.update_name if is_last else random_target(rng, space, program, names)
        body.append(Assign(target, random_call(rng, space, names)))
    return Program(params, tuple(body), returns)
