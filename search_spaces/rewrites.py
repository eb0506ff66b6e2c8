"""Equivalence rewrites: change how a program is spelled, not what it computes.

Used to test and measure functional hashing (``tests/test_hashing.py``,
``tools/hash_collisions.py``): a rewritten program must keep its functional hash.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from evodisc.edit import fresh_name, make_call, node_at, rename, replace_at, sites, visible_names
from evodisc.primitives import PRIMITIVES
from evodisc.program import Assign, Call, Const, Expr, Program, names_used
from search_spaces.space import DEFAULT_SPACE, Rng, as_random, random_call


def _rename(program: Program, rng: random.Random) -> Program:
    """Rename a state slot or an assigned name (never a reserved input) consistently."""
    candidates = [p for p in program.state] + [
        s.target for s in program.body if s.target not in program.params
    ]
    if not candidates:
        return program
    old = rng.choice(sorted(set(candidates)))
    return rename(program, {old: fresh_name(program, prefix="r")})


def _swap_independent(program: Program, rng: random.Random) -> Program:
    """Swap two adjacent statements that neither read nor write each other's target."""
    body = list(program.body)
    pairs = [
        i
        for i in range(len(body) - 1)
        if body[i].target != body[i + 1].target
        and body[i].target not in names_used(body[i + 1].expr)
        and body[i + 1].target not in names_used(body[i].expr)
    ]
    if not pairs:
        return program
    i = rng.choice(pairs)
    body[i], body[i + 1] = body[i + 1], body[i]
    return Program(program.params, tuple(body), program.returns)


def _add_dead_code(program: Program, rng: random.Random) -> Program:
    """Insert a statement whose value nobody reads."""
    position = rng.randint(0, len(program.body))
    names = visible_names(program, position)
    statement = Assign(fresh_name(program, prefix="dead"), random_call(rng, DEFAULT_SPACE, names))
    body = program.body[:position] + (statement,) + program.body[position:]
    return Program(program.params, body, program.returns)


def _rewrite_node(
    program: Program,
    rng: random.Random,
    accept: Callable[[Expr], bool],
    rewrite: Callable[[Expr], Expr],
) -> Program:
    candidates = sites(program, lambda path, node: accept(node))
    if not candidates:
        return program
    site = rng.choice(candidates)
    return replace_at(program, site, rewrite(node_at(program, site)))


def _is_call(*ops: str) -> Callable[[Expr], bool]:
    return lambda node: isinstance(node, Call) and node.op in ops


def _not_const(node: Expr) -> bool:
    return not isinstance(node, Const)


def _c(value: float) -> Const:
    return Const(value)


def _call(op: str, *args: Expr) -> Expr:
    return make_call(op, args)


# Node rewrites that leave every float64 result bit-for-bit unchanged.
_EXACT_NODE_REWRITES: list[tuple[Callable[[Expr], bool], Callable[[Expr], Expr]]] = [
    # a ∘ b → b ∘ a for commutative primitives
    (
        lambda n: isinstance(n, Call) and PRIMITIVES[n.op].commutative,
        lambda n: Call(n.op, n.args[::-1]),
    ),
    # e → 0.5 * (e + e)   (x + x is exactly 2x)
    (_not_const, lambda n: _call("mul", _c(0.5), _call("add", n, n))),
    # a - b → a + (-b)
    (_is_call("sub"), lambda n: _call("add", n.args[0], _call("neg", n.args[1]))),
    # e → -(-e)
    (_not_const, lambda n: _call("neg", _call("neg", n))),
    # square(e) → e * e
    (_is_call("square"), lambda n: _call("mul", n.args[0], n.args[0])),
    # e → e * 1
    (_not_const, lambda n: _call("mul", n, _c(1.0))),
]

# Rewrites that are equal in exact arithmetic but may differ in the last bits.
_INEXACT_NODE_REWRITES: list[tuple[Callable[[Expr], bool], Callable[[Expr], Expr]]] = [
    # a / b → a * (1 / b)
    (_is_call("div"), lambda n: _call("mul", n.args[0], _call("div", _c(1.0), n.args[1]))),
    # interp(a, b, β) → a + β * (b - a)
    (
        _is_call("interp"),
        lambda n: _call("add", n.args[0], _call("mul", n.args[2], _call("sub", *n.args[1::-1]))),
    ),
    # interp(a, b, β) → (1 - β) * a + β * b
    (
        _is_call("interp"),
        lambda n: _call(
            "add",
            _call("mul", _call("sub", _c(1.0), n.args[2]), n.args[0]),
            _call("mul", n.args[2], n.args[1]),
        ),
    ),
    # (a + b) + c → a + (b + c)
    (
        lambda n: _is_call("add")(n) and _is_call("add")(n.args[0]),
        lambda n: _call("add", n.args[0].args[0], _call("add", n.args[0].args[1], n.args[1])),
    ),
    # a * (b + c) → a * b + a * c
    (
        lambda n: _is_call("mul")(n) and _is_call("add")(n.args[1]),
        lambda n: _call(
            "add",
            _call("mul", n.args[0], n.args[1].args[0]),
            _call("mul", n.args[0], n.args[1].args[1]),
        ),
    ),
    # sqrt(e) → e ** 0.5
    (_is_call("sqrt"), lambda n: _call("pow", n.args[0], _c(0.5))),
]


def equivalent_rewrite(program: Program, rng: Rng, exact: bool = True) -> Program:
    """One random rewrite that keeps what the program computes.

    ``exact=True`` rewrites (renaming, reordering independent statements, dead code,
    commutativity, ``x + x`` = ``2x``, ``a - b`` = ``a + (-b)``, …) keep every float64 result
    bit-for-bit; ``exact=False`` also allows rewrites that are equal in exact arithmetic only
    (``a / b`` = ``a * (1 / b)``, expanded ``interp``, associativity, distributivity).
    """
    rng = as_random(rng)
    node_rewrites = _EXACT_NODE_REWRITES + ([] if exact else _INEXACT_NODE_REWRITES)
    kinds: list[Callable[[], Program]] = [
        lambda: _rename(program, rng),
        lambda: _swap_independent(program, rng),
        lambda: _add_dead_code(program, rng),
    ]
    kinds += [lambda a=a, r=r: _rewrite_node(program, rng, a, r) for a, r in node_rewrites]
    return rng.choice(kinds)()
