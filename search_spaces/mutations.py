"""Mutations of programs, as in the Lion paper's search: insert, delete or change a statement's
operator, argument or constant, and add or remove a state slot. :func:`pick_mutation` chooses one
by weight among those that can apply; :func:`mutate` applies one chosen uniformly.

Each mutation is a pure function ``(program, rng, space) -> program`` over the IR toolkit
(:mod:`evodisc.edit`); the result is well-formed (see :mod:`search_spaces.space`) and keeps to the
space's bounds (``min_statements``/``max_statements``, ``max_state_slots``) when its argument
does. A mutation that cannot apply to a program (see :func:`can_apply`) falls back to
:func:`change_argument`, which always can.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping

from evodisc.edit import (
    fresh_name,
    node_at,
    repair,
    replace_at,
    site_position,
    sites,
    visible_names,
)
from evodisc.primitives import PRIMITIVES
from evodisc.program import Assign, Call, Const, Expr, Program, Var
from search_spaces.space import (
    DEFAULT_SPACE,
    ProgramSpace,
    Rng,
    as_random,
    make_call,
    random_call,
    random_constant,
    random_leaf,
    random_target,
    round_significant,
)

Mutation = Callable[[Program, random.Random, ProgramSpace], Program]


def _is_call(path: tuple[int, ...], node: Expr) -> bool:
    return isinstance(node, Call)


def _is_const(path: tuple[int, ...], node: Expr) -> bool:
    return isinstance(node, Const)


def _is_leaf(path: tuple[int, ...], node: Expr) -> bool:
    return not isinstance(node, Call)


def _is_argument(path: tuple[int, ...], node: Expr) -> bool:
    """An argument of a call, or a bare (non-call) root."""
    return bool(path) or not isinstance(node, Call)


# ------------------------------------------------------------------ when a mutation can apply


def _room_for_statement(program: Program, space: ProgramSpace) -> bool:
    return len(program.body) < space.max_statements


def _above_minimum(program: Program, space: ProgramSpace) -> bool:
    return len(program.body) > space.min_statements


def _has_other_operator(program: Program, space: ProgramSpace) -> bool:
    return len(set(space.ops)) > 1 and bool(sites(program, _is_call))


def _has_constant(program: Program, space: ProgramSpace) -> bool:
    return bool(sites(program, _is_const))


def _room_for_slot(program: Program, space: ProgramSpace) -> bool:
    return len(program.state) < space.max_state_slots and _room_for_statement(program, space)


def _has_removable_slot(program: Program, space: ProgramSpace) -> bool:
    return bool(program.state) and len(program.params) > 1


def _always(program: Program, space: ProgramSpace) -> bool:
    return True


# ------------------------------------------------------------------------------- the mutations


def insert_statement(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Insert ``target = op(args…)`` with random operator and arguments at a random place
    (at ``max_statements``: :func:`change_argument` instead)."""
    rng = as_random(rng)
    if not _room_for_statement(program, space):
        return change_argument(program, rng, space)
    position = rng.randint(0, len(program.body))
    names = visible_names(program, position)
    target = random_target(rng, space, program, names)
    statement = Assign(target, random_call(rng, space, names))
    body = program.body[:position] + (statement,) + program.body[position:]
    return Program(program.params, body, program.returns)


def delete_statement(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Delete a random statement; later uses of a name it alone defined get another name
    (at ``min_statements``: :func:`change_argument` instead)."""
    rng = as_random(rng)
    if not _above_minimum(program, space):
        return change_argument(program, rng, space)
    position = rng.randrange(len(program.body))
    body = program.body[:position] + program.body[position + 1 :]
    return repair(Program(program.params, body, program.returns), rng)


def change_argument(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Replace an argument (or a bare returned variable) by a random variable or constant."""
    rng = as_random(rng)
    site = rng.choice(sites(program, _is_argument))  # never empty: every call has arguments
    names = visible_names(program, site_position(program, site))
    old = node_at(program, site)
    for _ in range(10):
        new = random_leaf(rng, space, names)
        if new != old:
            break
    return replace_at(program, site, new)


def change_operator(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Replace a random call's primitive by another; arguments are kept, cut or added."""
    rng = as_random(rng)
    if not _has_other_operator(program, space):
        return change_argument(program, rng, space)
    site = rng.choice(sites(program, _is_call))
    old = node_at(program, site)
    op = rng.choice([o for o in space.ops if o != old.op])
    names = visible_names(program, site_position(program, site))
    arity = PRIMITIVES[op].arity
    args = list(old.args[:arity])
    args += [random_leaf(rng, space, names) for _ in range(arity - len(args))]
    return replace_at(program, site, make_call(op, tuple(args)))


def _perturbed(value: float, rng: random.Random, space: ProgramSpace) -> float:
    """``value`` moved by up to a factor of 2 (its odds, for values in (0, 1))."""
    if value == 0:
        return random_constant(rng, space).value
    factor = 2.0 ** rng.uniform(-1.0, 1.0)
    if not 0 < value < 1:
        return round_significant(value * factor, 3)
    # The odds p / (1 - p) scale by ``factor``: near 0 that scales p, near 1 it scales 1 - p.
    denominator = 1.0 - value + value * factor
    if value <= 0.5:
        return round_significant(value * factor / denominator, 3)
    return 1.0 - round_significant((1.0 - value) / denominator, 3)


def perturb_constant(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Move a random constant by up to a factor of 2, keeping 3 significant digits.

    Constants in (0, 1), like β, move in log-odds space, so they stay in (0, 1): near 1 the
    distance to 1 scales (0.9 → 0.82…0.95, 0.999 → 0.998…0.9995), near 0 the value itself
    (0.01 → 0.005…0.02). Other constants are scaled by a factor in [0.5, 2]; zero is redrawn.
    """
    rng = as_random(rng)
    if not _has_constant(program, space):
        return change_argument(program, rng, space)
    site = rng.choice(sites(program, _is_const))
    old = node_at(program, site).value
    new = old
    for _ in range(10):
        new = _perturbed(old, rng, space)
        stays_in_unit = not 0 < old < 1 or 0 < new < 1
        if new != old and math.isfinite(new) and stays_in_unit:
            break
        new = old
    return replace_at(program, site, Const(new + 0.0))


def _new_slot_name(program: Program, space: ProgramSpace) -> str:
    """The first of the space's state names the program does not use, else a fresh name."""
    used = set(program.params) | {s.target for s in program.body}
    unused = [name for name in space.state if name not in used]
    return unused[0] if unused else fresh_name(program, prefix="s")


def add_state_slot(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Add a state slot ``s``: a parameter, its return value, a statement ``s = interp(x, s, β)``
    (an EMA of a visible value ``x``; a random call when the space lacks ``interp``) at a random
    place, and a read of ``s`` that replaces a random leaf of a later statement or of the update.
    So a one-slot Lion can grow a second slot. At ``max_state_slots`` or ``max_statements``:
    :func:`change_argument` instead."""
    rng = as_random(rng)
    if not _room_for_slot(program, space):
        return change_argument(program, rng, space)
    slot = _new_slot_name(program, space)
    params = (*program.params, slot)
    returns = (*program.returns, Var(slot))
    position = rng.randint(0, len(program.body))
    names = visible_names(Program(params, program.body, returns), position)
    if "interp" in space.ops:
        sources = [name for name in names if name != slot] or [slot]
        betas = [c for c in space.constants if 0 < c < 1] or [0.9]
        expr: Expr = Call("interp", (Var(rng.choice(sources)), Var(slot), Const(rng.choice(betas))))
    else:
        expr = random_call(rng, space, names)
    body = program.body[:position] + (Assign(slot, expr),) + program.body[position:]
    grown = Program(params, body, returns)
    readers = [
        site
        for site in sites(grown, _is_leaf)
        if (site[0] == "body" and site[1] > position) or site[:2] == ("return", 0)
    ]
    return replace_at(grown, rng.choice(readers), Var(slot))


def remove_state_slot(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Remove a random state slot: its parameter and its return value go; reads of it before
    it is assigned get another visible name (as in :func:`delete_statement`), and assignments
    to it make a temporary. Without a slot: :func:`change_argument` instead."""
    rng = as_random(rng)
    if not _has_removable_slot(program, space):
        return change_argument(program, rng, space)
    index = rng.randrange(len(program.state))
    slot = program.state[index]
    params = tuple(p for p in program.params if p != slot)
    returns = program.returns[: 1 + index] + program.returns[2 + index :]
    return repair(Program(params, program.body, returns), rng)


MUTATIONS: dict[str, Mutation] = {
    "insert_statement": insert_statement,
    "delete_statement": delete_statement,
    "change_argument": change_argument,
    "change_operator": change_operator,
    "perturb_constant": perturb_constant,
    "add_state_slot": add_state_slot,
    "remove_state_slot": remove_state_slot,
}

#: When each mutation can apply; otherwise it falls back to :func:`change_argument`.
APPLIES: dict[str, Callable[[Program, ProgramSpace], bool]] = {
    "insert_statement": _room_for_statement,
    "delete_statement": _above_minimum,
    "change_argument": _always,
    "change_operator": _has_other_operator,
    "perturb_constant": _has_constant,
    "add_state_slot": _room_for_slot,
    "remove_state_slot": _has_removable_slot,
}


def can_apply(name: str, program: Program, space: ProgramSpace = DEFAULT_SPACE) -> bool:
    """Whether mutation ``name`` changes ``program`` as it says (rather than falling back)."""
    return APPLIES.get(name, _always)(program, space)


def mutation_table(
    program: Program, space: ProgramSpace, weights: Mapping[str, float]
) -> tuple[list[str], list[float]]:
    """The mutations a draw for ``program`` chooses among, and their weights: those with a
    positive weight (a name left out weighs 0) that can apply to ``program``, or all with a
    positive weight when none of them can (they fall back)."""
    weighted = [name for name in MUTATIONS if weights.get(name, 0.0) > 0]
    if not weighted:
        raise ValueError("at least one mutation needs a positive weight")
    names = [name for name in weighted if can_apply(name, program, space)] or weighted
    return names, [weights[name] for name in names]


def pick_mutation(
    program: Program,
    rng: Rng,
    space: ProgramSpace = DEFAULT_SPACE,
    weights: Mapping[str, float] | None = None,
) -> str:
    """A mutation name drawn with probability proportional to its weight (all 1 by default)
    from :func:`mutation_table`."""
    rng = as_random(rng)
    weights = {name: 1.0 for name in MUTATIONS} if weights is None else weights
    return rng.choices(*mutation_table(program, space, weights))[0]


def mutate(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Apply one mutation chosen uniformly among those of :data:`MUTATIONS` that can apply."""
    rng = as_random(rng)
    return MUTATIONS[pick_mutation(program, rng, space)](program, rng, space)
