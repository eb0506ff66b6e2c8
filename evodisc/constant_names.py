"""A program's named constants: the numbers of a rule that its exported optimizer takes as
arguments (``beta1``, ``eps``, ``weight_decay``, ``c1``, …), named by their role (:data:`NAMING`).
:mod:`evodisc.export` makes them ``__init__`` arguments, :func:`fitness.tune` and the search's
constant-tuning step (:mod:`evodisc.constant_steps`) move them. No torch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

from evodisc.analysis import live_statements
from evodisc.program import Assign, Call, Const, Expr, Program, Var, walk


class Constant(NamedTuple):
    """A number of a rule that its optimizer takes as an argument."""

    value: float
    role: str  # a key of ROLES


#: What each kind of named constant does, in the order they come in ``__init__``.
ROLES = {
    "beta": "a decay (the β of an ``interp``, or the factor of a slot)",
    "eps": "added to a divisor",
    "weight_decay": "the factor of ``w``",
    "c": "a constant of the rule",
}

NAMING = """\
Names: ``beta`` for a number in (0, 1) that is the β of an ``interp`` or multiplies a state
slot in its new value; ``eps`` for a number in (0, 1e-3] added to something in a divisor;
``weight_decay`` for the one number of a product with ``w``; ``c`` for the other numbers that
are not whole (whole numbers stay in the code). Several of a kind are numbered in order of
appearance (``beta1``, ``beta2``). A name stands for its number wherever it appears (the β of
``1 - β ** t`` too)."""


def named_constants(program: Program) -> dict[str, Constant]:
    """The numbers of ``program`` that its optimizer takes as arguments, named by the rule of
    ``NAMING`` (docs/export.md), in ``__init__`` order: betas, eps, weight decay, the others."""
    body = live_statements(program.body, program.returns)
    exprs = [s.expr for s in body] + list(program.returns)
    numbers = dict.fromkeys(
        node.value
        for expr in exprs
        for node in walk(expr)
        if isinstance(node, Const) and not node.value.is_integer()
    )
    resolved = _resolved(body, program.returns)
    roles: dict[float, str] = {}
    for role, values in [
        ("beta", _betas(program, body)),
        ("eps", _epsilons(resolved)),
        ("weight_decay", _weight_decays(resolved)),
    ]:
        for value in values:
            roles.setdefault(value, role)
    named = {}
    for role in ROLES:
        values = [value for value in numbers if roles.get(value, "c") == role]
        for i, value in enumerate(values, start=1):
            name = role if len(values) == 1 and role != "c" else f"{role}{i}"
            named[name] = Constant(value, role)
    return named


def _betas(program: Program, body: Sequence[Assign]) -> Iterator[float]:
    """Numbers in (0, 1) that are the β of an ``interp`` or multiply a state slot in its new
    value (``buf = 0.9 * buf + g``)."""
    targets = [s.target for s in body] + [None, *program.state]
    exprs = [s.expr for s in body] + list(program.returns)
    for target, expr in zip(targets, exprs, strict=True):
        for node in walk(expr):
            if not isinstance(node, Call):
                continue
            if node.op == "interp":
                candidates = node.args[2:]
            elif node.op == "mul" and target in program.state and Var(target) in node.args:
                candidates = node.args
            else:
                continue
            yield from (a.value for a in candidates if isinstance(a, Const) and 0 < a.value < 1)


def _resolved(body: Sequence[Assign], returns: Sequence[Expr]) -> list[Expr]:
    """The statements' and returns' expressions with each variable replaced by its definition
    (parameters stay variables); definitions are shared, not copied."""
    env: dict[str, Expr] = {}

    def resolve(expr: Expr) -> Expr:
        if isinstance(expr, Var):
            return env.get(expr.name, expr)
        if isinstance(expr, Call):
            return Call(expr.op, tuple(resolve(a) for a in expr.args))
        return expr

    out = []
    for statement in body:
        env[statement.target] = resolve(statement.expr)
        out.append(env[statement.target])
    return out + [resolve(e) for e in returns]


def _nodes(roots: Sequence[Expr]) -> Iterator[Expr]:
    """Every node of ``roots`` (expressions that share sub-expressions) once."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        expr = stack.pop()
        if id(expr) not in seen:
            seen.add(id(expr))
            yield expr
            if isinstance(expr, Call):
                stack.extend(expr.args)


def _epsilons(resolved: Sequence[Expr]) -> Iterator[float]:
    """Numbers in (0, 1e-3] added to something in a divisor (``m / (sqrt(v) + 1e-8)``, also
    through functions and variables)."""
    divisors = [
        node.args[-1]
        for node in _nodes(resolved)
        if isinstance(node, Call) and node.op in ("div", "reciprocal")
    ]
    for node in _nodes(divisors):
        if isinstance(node, Call) and node.op == "add":
            yield from (a.value for a in node.args if isinstance(a, Const) and 0 < a.value <= 1e-3)


def _weight_decays(resolved: Sequence[Expr]) -> Iterator[float]:
    """The number of a product with ``w`` that has one number not whole (``lr * 0.01 * w``)."""
    products: dict[int, tuple[bool, tuple[float, ...]]] = {}  # has w, its first two numbers

    def factors(expr: Expr) -> tuple[bool, tuple[float, ...]]:
        if not (isinstance(expr, Call) and expr.op == "mul"):
            fraction = isinstance(expr, Const) and not expr.value.is_integer()
            return expr == Var("w"), (expr.value,) if fraction else ()
        if id(expr) not in products:
            (w_a, numbers_a), (w_b, numbers_b) = (factors(a) for a in expr.args)
            products[id(expr)] = (w_a or w_b, (numbers_a + numbers_b)[:2])
        return products[id(expr)]

    for node in _nodes(resolved):
        if isinstance(node, Call) and node.op == "mul":
            has_w, numbers = factors(node)
            if has_w and len(numbers) == 1:
                yield numbers[0]
