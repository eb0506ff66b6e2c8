"""The numbers of a multi-tensor plan (:mod:`evodisc.plan`): Python floats, computed once per step.

A number is an expression (program IR) over constants, ``lr``, ``t``, ``T``, named constants and
named numbers. It is evaluated with Python arithmetic where that cannot raise (``lr / t``,
``0.9 ** t``) and otherwise on a float64 tensor, as the interpreter does (``1 / (t - t)`` is
inf, not an error). A *named constant* (``beta1``: a number of the rule that the optimizer takes
as an argument) is judged by its default; a decision that relies on it records the interval the
constant must stay in (``beta1`` in [0, 1) for ``lr / (1 - beta1 ** t)``), which the optimizer
checks.
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from typing import NamedTuple, TypeVar

import torch

from evodisc.primitives import PRIMITIVES, Primitive, fold_constant
from evodisc.program import Call, Const, Expr, Var, format_expr, parse_program, walk

T = TypeVar("T")

#: ``(low, high, brackets)``: ``(0.0, 1.0, "[)")`` is ``0 <= x < 1``.
Interval = tuple[float, float, str]
#: The intervals that a decision relies on, by named constant (None: no decision).
Assumptions = tuple[tuple[str, Interval], ...] | None

_INF = float("inf")


def _contains(interval: Interval, value: float) -> bool:
    low, high, brackets = interval
    above = value >= low if brackets[0] == "[" else value > low
    return above and (value <= high if brackets[1] == "]" else value < high)


def _intersect(a: Interval, b: Interval) -> Interval:
    (low_a, high_a, br_a), (low_b, high_b, br_b) = a, b
    low, left = max((low_a, br_a[0] == "("), (low_b, br_b[0] == "("))
    high, right = min((high_a, br_a[1] == "]"), (high_b, br_b[1] == "]"))
    return low, high, ("(" if left else "[") + ("]" if right else ")")


def _all(*parts: Assumptions) -> Assumptions:
    if any(part is None for part in parts):
        return None
    return tuple(a for part in parts for a in part)


def _within(expr: Expr, interval: Interval, constants: dict[str, float]) -> Assumptions:
    """``expr`` is a constant in ``interval``, or a named constant whose default is (and which is
    then assumed to stay there)."""
    if isinstance(expr, Const):
        return () if _contains(interval, expr.value) else None
    if isinstance(expr, Var) and expr.name in constants:
        return ((expr.name, interval),) if _contains(interval, constants[expr.name]) else None
    return None


def _either(expr: Expr, a: Interval, b: Interval, constants: dict[str, float]) -> Assumptions:
    found = _within(expr, a, constants)
    return found if found is not None else _within(expr, b, constants)


def _is_step(expr: Expr) -> bool:
    """``t`` or ``T``: a step number or the run's number of steps, a whole number ≥ 1."""
    return isinstance(expr, Var) and expr.name in ("t", "T")


def _nonzero(expr: Expr, constants: dict[str, float]) -> Assumptions:
    """``expr`` cannot be 0: a non-zero constant, ``t``, ``T``, ``c - b ** t`` or ``c - b`` (c ≥ 1,
    0 ≤ b < 1: a bias correction), and products of such factors that cannot underflow."""
    if _is_step(expr):
        return ()
    if not isinstance(expr, Call):
        return _either(expr, (0.0, _INF, "()"), (-_INF, 0.0, "()"), constants)
    if expr.op == "mul":
        factors = []
        for a in expr.args:
            if isinstance(a, Const) or (isinstance(a, Var) and a.name in constants):
                factors.append(_either(a, (1e-150, _INF, "[)"), (-_INF, -1e-150, "(]"), constants))
            else:
                factors.append(_nonzero(a, constants))
        return _all(*factors)
    if expr.op != "sub":
        return None
    c, power = expr.args
    base = power
    if isinstance(power, Call) and power.op == "pow":
        base, exponent = power.args
        if not (_is_step(exponent) or exponent == Const(1.0)):
            return None
    return _all(
        _within(c, (1.0, _INF, "[)"), constants), _within(base, (0.0, 1.0, "[)"), constants)
    )


def _nonnegative(expr: Expr, constants: dict[str, float]) -> Assumptions:
    """``expr`` is ≥ 0 for sure: built from ``t``, ``T``, (named) constants ≥ 0, ``+`` and ``*``."""
    if _is_step(expr):
        return ()
    if not isinstance(expr, Call):
        return _within(expr, (0.0, _INF, "[)"), constants)
    if expr.op in ("add", "mul"):
        return _all(*[_nonnegative(a, constants) for a in expr.args])
    return None


def _python_safe(expr: Call, constants: dict[str, float]) -> Assumptions:
    """Python arithmetic computes ``expr`` with IEEE results and never raises (given these
    assumptions on the named constants)."""
    prim = PRIMITIVES[expr.op]
    if prim.infix == "/":
        return _nonzero(expr.args[1], constants)
    if prim.infix == "**":
        base, exponent = expr.args
        return _all(_within(base, (0.0, 1.0, "[]"), constants), _nonnegative(exponent, constants))
    return () if _python_function(prim) is not None else None


def number_assumptions(exprs: Iterable[Expr], constants: dict[str, float]) -> dict[str, Interval]:
    """The interval each named constant must stay in for :func:`number_function` (and
    :func:`number_source`) to compute ``exprs`` with Python arithmetic where they do."""
    out: dict[str, Interval] = {}
    for node in (node for expr in exprs for node in walk(expr)):
        for name, interval in (isinstance(node, Call) and _python_safe(node, constants)) or ():
            out[name] = _intersect(out[name], interval) if name in out else interval
    return out


#: Python's binary operators, by symbol (a primitive's ``infix``).
_OPERATORS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "**": operator.pow,
}
_PREC_ADD, _PREC_MUL, _PREC_UNARY, _PREC_POW, _PREC_ATOM = 1, 2, 3, 4, 5
_BINARY_PREC = {"+": _PREC_ADD, "-": _PREC_ADD, "*": _PREC_MUL, "/": _PREC_MUL}


def _python_function(prim: Primitive) -> Callable | None:
    """Python's own form of ``prim`` on floats: its operator, or its builtin (None: neither)."""
    if prim.infix:
        return operator.neg if prim.arity == 1 else _OPERATORS[prim.infix]
    return getattr(builtins, prim.python) if prim.python else None


def source_function(prim: Primitive) -> Callable:
    """What ``prim.source`` computes, as a function: the helper it calls (compiled from the
    entry's ``helper``), else the torch form."""
    return prim.helper_function if prim.helper else prim.torch


def _float64(x):
    return torch.tensor(x, dtype=torch.float64)


def number_function(expr: Expr, constants: dict[str, float]) -> Callable[[dict], float]:
    """``expr`` as a function of the number registers (``{"lr": …, "t": …, "T": …}``); it computes
    exactly what :func:`number_source` writes. ``constants``: the named constants' defaults."""
    if isinstance(expr, Const):
        value = expr.value
        return lambda env: value
    if isinstance(expr, Var):
        return operator.itemgetter(expr.name)
    args = [number_function(a, constants) for a in expr.args]
    prim = PRIMITIVES[expr.op]
    if _python_safe(expr, constants) is not None:
        fn = _python_function(prim)
        if len(args) == 1:
            (a,) = args
            return lambda env: fn(a(env))
        a, b = args
        return lambda env: fn(a(env), b(env))
    if prim.infix in ("/", "**"):  # a float64 tensor on the left: IEEE results
        fn = _OPERATORS[prim.infix]
        a, b = args
        return lambda env: float(fn(_float64(a(env)), b(env)))
    fn = source_function(prim)
    return lambda env: float(fn(*[_float64(a(env)) for a in args]))


def number_source(expr: Expr, constants: dict[str, float]) -> str:
    """Python source of ``expr`` (minimal parentheses), computing what
    :func:`number_function` computes."""
    return _number_source(expr, constants)[0]


def _number_source(expr: Expr, constants: dict[str, float]) -> tuple[str, int]:
    """Source text and its precedence."""
    if isinstance(expr, Const):
        v = expr.value
        if v != v or v in (float("inf"), float("-inf")):
            return f'float("{v}")', _PREC_ATOM  # float("nan"), float("-inf")
        text = format_expr(expr)
        return text, _PREC_UNARY if v < 0 or text.startswith("-") else _PREC_ATOM
    if isinstance(expr, Var):
        return expr.name, _PREC_ATOM

    def sub(e: Expr, minimum: int) -> str:
        text, prec = _number_source(e, constants)
        return f"({text})" if prec < minimum else text

    def tensor(e: Expr) -> str:
        return f"torch.tensor({number_source(e, constants)}, dtype=torch.float64)"

    prim, args = PRIMITIVES[expr.op], expr.args
    symbol = prim.infix
    if _python_safe(expr, constants) is not None:
        if symbol == "**":
            return f"{sub(args[0], _PREC_ATOM)} ** {sub(args[1], _PREC_UNARY)}", _PREC_POW
        if symbol and prim.arity == 1:
            return f"{symbol}{sub(args[0], _PREC_UNARY)}", _PREC_UNARY
        if symbol:
            prec = _BINARY_PREC[symbol]
            return f"{sub(args[0], prec)} {symbol} {sub(args[1], prec + 1)}", prec
        return f"{prim.python}({number_source(args[0], constants)})", _PREC_ATOM
    if symbol in ("/", "**"):
        right = sub(args[1], _PREC_ATOM if symbol == "/" else _PREC_UNARY)
        return f"float({tensor(args[0])} {symbol} {right})", _PREC_ATOM
    return f"float({prim.source.format(*map(tensor, args))})", _PREC_ATOM


class Expansion(NamedTuple):
    """A primitive's ``expansion``: an expression over its parameters."""

    params: tuple[str, ...]
    expr: Expr


def expansion(op: str) -> Expansion:
    """The ``expansion`` of primitive ``op``, over parameters ``x0``, ``x1``, …"""
    prim = PRIMITIVES[op]
    return _parse_expansion(prim.expansion, prim.arity)


@cache
def _parse_expansion(text: str, arity: int) -> Expansion:
    params = tuple(f"x{i}" for i in range(arity))
    listed = ", ".join(params)  # the parameters are state slots: returned as they are
    program = parse_program(f"def train({listed}):\n    return {text.format(*params)}, {listed}\n")
    return Expansion(params, program.update)


def substitute(
    expr: Expr,
    env: Mapping[str, T],
    const: Callable[[Const], T],
    call: Callable[[str, list[T]], T],
) -> T:
    """``expr`` computed over values of any kind: ``env`` holds its variables', ``const`` makes a
    constant's, ``call(op, args)`` applies a primitive."""
    if isinstance(expr, Var):
        return env[expr.name]
    if isinstance(expr, Const):
        return const(expr)
    return call(expr.op, [substitute(a, env, const, call) for a in expr.args])


def number(op: str, args: Sequence[Expr]) -> Expr:
    """``op(args)`` on numbers: through the primitive's ``expansion`` when it has one, folded
    when every argument is a constant (as the interpreter folds)."""
    if PRIMITIVES[op].expansion:
        params, expr = expansion(op)
        return substitute(expr, dict(zip(params, args, strict=True)), lambda c: c, number)
    if all(isinstance(a, Const) for a in args):
        return Const(fold_constant(op, [a.value for a in args]))
    # Exact identities only (IEEE results unchanged), for shorter source: 1·x, -1·x, x/1,
    # --x, (-a) + b = b - a, a + (-b) = a - b.
    if op == "mul" and Const(1.0) in args:
        return args[1] if args[0] == Const(1.0) else args[0]
    if op == "mul" and Const(-1.0) in args:
        return number("neg", [args[1] if args[0] == Const(-1.0) else args[0]])
    if op == "div" and args[1] == Const(1.0):
        return args[0]
    if op == "neg" and isinstance(args[0], Call) and args[0].op == "neg":
        return args[0].args[0]
    negated = [isinstance(a, Call) and a.op == "neg" for a in args]
    if op == "add" and negated[1]:
        return number("sub", [args[0], args[1].args[0]])
    if op == "add" and negated[0]:
        return number("sub", [args[1], args[0].args[0]])
    return Call(op, tuple(args))
