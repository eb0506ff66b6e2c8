"""The IR toolkit: address, replace, rename and inline the expressions of a program.

Mutations (``search_spaces.mutations``), equivalence rewrites (``search_spaces.rewrites``) and
simplification all edit programs through these pure functions; each returns a new
:class:`~evodisc.program.Program` and never changes its argument.

A *site* addresses one expression node: ``("body", i, path)`` is inside the right-hand side of
statement ``i``, ``("return", j, path)`` inside return value ``j``; ``path`` lists the argument
indices from that root down to the node.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Mapping

from evodisc.primitives import PRIMITIVES
from evodisc.program import RESERVED_INPUTS, Assign, Call, Const, Expr, Program, ProgramError, Var

Site = tuple[str, int, tuple[int, ...]]


def make_call(op: str, args: tuple[Expr, ...]) -> Expr:
    """``Call(op, args)``, except that ``-constant`` is the constant itself (as the parser reads
    it), so edited programs print and parse back to the same IR."""
    if op == "neg" and isinstance(args[0], Const):
        return Const(-args[0].value + 0.0)
    return Call(op, args)


def _roots(program: Program) -> Iterator[tuple[str, int, Expr]]:
    for i, statement in enumerate(program.body):
        yield "body", i, statement.expr
    for j, expr in enumerate(program.returns):
        yield "return", j, expr


def _nodes(expr: Expr, path: tuple[int, ...] = ()) -> Iterator[tuple[tuple[int, ...], Expr]]:
    yield path, expr
    if isinstance(expr, Call):
        for k, arg in enumerate(expr.args):
            yield from _nodes(arg, (*path, k))


def sites(program: Program, accept: Callable[[tuple[int, ...], Expr], bool]) -> list[Site]:
    """Every node position whose ``(path, node)`` ``accept`` returns true for."""
    return [
        (where, index, path)
        for where, index, root in _roots(program)
        for path, node in _nodes(root)
        if accept(path, node)
    ]


def node_at(program: Program, site: Site) -> Expr:
    """The expression at ``site``."""
    where, index, path = site
    node = program.body[index].expr if where == "body" else program.returns[index]
    for k in path:
        node = node.args[k]
    return node


def _replace_in(expr: Expr, path: tuple[int, ...], new: Expr) -> Expr:
    if not path:
        return new
    args = list(expr.args)
    args[path[0]] = _replace_in(args[path[0]], path[1:], new)
    return make_call(expr.op, tuple(args))


def replace_at(program: Program, site: Site, new: Expr) -> Program:
    """``program`` with the expression at ``site`` replaced by ``new``."""
    where, index, path = site
    if where == "body":
        body = list(program.body)
        body[index] = Assign(body[index].target, _replace_in(body[index].expr, path, new))
        return Program(program.params, tuple(body), program.returns)
    returns = list(program.returns)
    returns[index] = _replace_in(returns[index], path, new)
    return Program(program.params, program.body, tuple(returns))


def site_position(program: Program, site: Site) -> int:
    """The body index whose visible names apply at ``site`` (``len(body)`` for the return)."""
    return site[1] if site[0] == "body" else len(program.body)


def visible_names(program: Program, position: int) -> list[str]:
    """Names defined before body statement ``position`` (``len(body)``: at the return)."""
    names = list(program.params)
    for statement in program.body[:position]:
        if statement.target not in names:
            names.append(statement.target)
    return names


def fresh_name(program: Program, prefix: str = "h") -> str:
    """A name not used anywhere in ``program`` and not a primitive."""
    used = set(program.params) | {s.target for s in program.body}
    k = len(used)
    while f"{prefix}{k}" in used or f"{prefix}{k}" in PRIMITIVES:
        k += 1
    return f"{prefix}{k}"


def substitute(expr: Expr, replace: Callable[[str], Expr | str]) -> Expr:
    """``expr`` with every variable ``v`` replaced by ``replace(v)`` (a name or an expression)."""
    if isinstance(expr, Var):
        new = replace(expr.name)
        return Var(new) if isinstance(new, str) else new
    if isinstance(expr, Call):
        return make_call(expr.op, tuple(substitute(a, replace) for a in expr.args))
    return expr


def replace_constants(program: Program, values: Mapping[float, float]) -> Program:
    """``program`` with every constant whose value is a key of ``values`` replaced by the number
    it maps to, everywhere (the β of ``1 - β ** t`` moves with the β) and all at once (so
    ``{0.9: 0.99, 0.99: 0.9}`` swaps the two); a number that is not finite is a
    :class:`ProgramError`."""
    for new in values.values():
        if not math.isfinite(new):
            raise ProgramError(f"constant {new!r} is not finite", filename="replace_constants")

    def swap(expr: Expr) -> Expr:
        if isinstance(expr, Const):
            return Const(float(values[expr.value])) if expr.value in values else expr
        if isinstance(expr, Call):
            return make_call(expr.op, tuple(swap(a) for a in expr.args))
        return expr

    body = tuple(Assign(s.target, swap(s.expr)) for s in program.body)
    return Program(program.params, body, tuple(swap(e) for e in program.returns))


def rename(program: Program, mapping: dict[str, str]) -> Program:
    """``program`` with the names in ``mapping`` renamed everywhere (parameters included)."""

    def fix(name: str) -> str:
        return mapping.get(name, name)

    params = tuple(fix(p) for p in program.params)
    body = tuple(Assign(fix(s.target), substitute(s.expr, fix)) for s in program.body)
    returns = tuple(substitute(e, fix) for e in program.returns)
    return Program(params, body, returns)


def repair(program: Program, rng: random.Random) -> Program:
    """Replace every use of a name not yet defined by a random defined name."""
    defined = list(program.params)

    def fix(name: str) -> str:
        return name if name in defined else rng.choice(defined)

    body = []
    for statement in program.body:
        body.append(Assign(statement.target, substitute(statement.expr, fix)))
        if statement.target not in defined:
            defined.append(statement.target)
    returns = tuple(substitute(e, fix) for e in program.returns)
    return Program(program.params, tuple(body), returns)


def inline(program: Program) -> tuple[Expr, ...]:
    """The return values as expression trees over the parameters only (statements substituted).

    Shared sub-expressions are shared Python objects, so memory stays linear, but a tree walk
    may visit a node once per path to it (simplification works on these trees).
    """
    env: dict[str, Expr] = {p: Var(p) for p in program.params}
    for statement in program.body:
        env[statement.target] = substitute(statement.expr, env.__getitem__)
    return tuple(substitute(e, env.__getitem__) for e in program.returns)


def validate(program: Program) -> Program:
    """Check the structure of an IR built in code (parsed text is already checked): distinct
    parameters, names defined before use, known primitives with their arity, finite constants,
    one return value per state slot. Returns ``program``; raises :class:`ProgramError`."""

    def fail(reason: str, where: str) -> None:
        raise ProgramError(f"{where}: {reason}")

    if len(set(program.params)) != len(program.params):
        fail("duplicate parameter", "parameters")
    for name in program.params:
        if not name.isidentifier() or name in PRIMITIVES:
            fail(f"{name!r} cannot name a parameter", "parameters")
    defined = set(program.params)

    def check(expr: Expr, where: str) -> None:
        for _, node in _nodes(expr):
            if isinstance(node, Var) and node.name not in defined:
                fail(f"undefined name {node.name!r}", where)
            elif isinstance(node, Const) and not math.isfinite(node.value):
                fail(f"constant {node.value!r} is not finite", where)
            elif isinstance(node, Call):
                prim = PRIMITIVES.get(node.op)
                if prim is None:
                    fail(f"unknown primitive {node.op!r}", where)
                if len(node.args) != prim.arity:
                    fail(f"{node.op}() takes {prim.arity} argument(s), got {len(node.args)}", where)

    for i, statement in enumerate(program.body):
        check(statement.expr, f"statement {i + 1}")
        if not statement.target.isidentifier() or statement.target in PRIMITIVES:
            fail(f"{statement.target!r} cannot be assigned to", f"statement {i + 1}")
        defined.add(statement.target)
    state = [p for p in program.params if p not in RESERVED_INPUTS]
    if len(program.returns) != 1 + len(state):
        fail(f"{len(program.returns)} value(s), expected {1 + len(state)}", "return")
    for expr in program.returns:
        check(expr, "return")
    return program
