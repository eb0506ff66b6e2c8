"""Mutations of programs, as in the Lion paper's search: insert, delete or change a statement's
operator, argument or constant. :func:`mutate` picks one at random.

Each mutation is a pure function ``(program, rng, space) -> program`` over the IR toolkit
(:mod:`evodisc.edit`); the result is well-formed (see :mod:`search_spaces.space`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from evodisc.edit import node_at, repair, replace_at, site_position, sites, visible_names
from evodisc.primitives import PRIMITIVES
from evodisc.program import Assign, Call, Const, Program
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


def insert_statement(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Insert ``target = op(args…)`` with random operator and arguments at a random place."""
    rng = as_random(rng)
    position = rng.randint(0, len(program.body))
    names = visible_names(program, position)
    target = random_target(rng, space, program, names)
    statement = Assign(target, random_call(rng, space, names))
    body = program.body[:position] + (statement,) + program.body[position:]
    return Program(program.params, body, program.returns)


def delete_statement(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Delete a random statement; later uses of a name it alone defined get another name."""
    rng = as_random(rng)
    if not program.body:
        return insert_statement(program, rng, space)
    position = rng.randrange(len(program.body))
    body = program.body[:position] + program.body[position + 1 :]
    return repair(Program(program.params, body, program.returns), rng)


def change_argument(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Replace an argument (or a bare returned variable) by a random variable or constant."""
    rng = as_random(rng)
    candidates = sites(program, lambda path, node: bool(path) or not isinstance(node, Call))
    if not candidates:
        return insert_statement(program, rng, space)
    site = rng.choice(candidates)
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
    candidates = sites(program, lambda path, node: isinstance(node, Call))
    others_exist = len(set(space.ops)) > 1
    if not candidates or not others_exist:
        return change_argument(program, rng, space)
    site = rng.choice(candidates)
    old = node_at(program, site)
    op = rng.choice([o for o in space.ops if o != old.op])
    names = visible_names(program, site_position(program, site))
    arity = PRIMITIVES[op].arity
    args = list(old.args[:arity])
    args += [random_leaf(rng, space, names) for _ in range(arity - len(args))]
    return replace_at(program, site, make_call(op, tuple(args)))


def perturb_constant(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Scale a random constant by a factor in [0.5, 2] (3 significant digits kept)."""
    rng = as_random(rng)
    candidates = sites(program, lambda path, node: isinstance(node, Const))
    if not candidates:
        return change_argument(program, rng, space)
    site = rng.choice(candidates)
    old = node_at(program, site).value
    new = old
    for _ in range(10):
        if old == 0:
            new = random_constant(rng, space).value
        else:
            new = round_significant(old * 2.0 ** rng.uniform(-1.0, 1.0), 3)
        if new != old and math.isfinite(new):
            break
    return replace_at(program, site, Const(new + 0.0))


MUTATIONS: dict[str, Mutation] = {
    "insert_statement": insert_statement,
    "delete_statement": delete_statement,
    "change_argument": change_argument,
    "change_operator": change_operator,
    "perturb_constant": perturb_constant,
}


def mutate(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Apply one mutation chosen uniformly from :data:`MUTATIONS`."""
    rng = as_random(rng)
    return rng.choice(list(MUTATIONS.values()))(program, rng, space)
