"""The linear-term algebra of the multi-tensor lowering (:mod:`evodisc.lowering`).

A list value is kept as a sum of scaled terms plus a number — ``c * a``, ``c * a * b``,
``c * a / b`` over list registers ``a``, ``b`` and numbers ``c`` — until something needs it in a
buffer; then it is accumulated with ``mul_``, ``add_(alpha=c)``, ``addcmul_(value=c)`` and
``addcdiv_(value=c)``. Adding, negating and scaling by numbers are exact rewrites of these sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from evodisc.plan_numbers import number
from evodisc.program import Const, Expr


class Term(NamedTuple):
    """``c * a`` (op ""), ``c * a * b`` ("mul") or ``c * a / b`` ("div"), where the number
    ``c = num / den`` (either None: 1)."""

    num: Expr | None
    den: Expr | None
    a: str
    op: str = ""
    b: str | None = None

    def registers(self) -> tuple[str, ...]:
        return (self.a,) if self.b is None else (self.a, self.b)

    def scaled(self, num: Expr | None = None, den: Expr | None = None) -> Term:
        return self._replace(num=times(self.num, num), den=times(self.den, den))

    def plain(self) -> bool:
        return self.op == "" and self.num is None and self.den is None


def times(a: Expr | None, b: Expr | None) -> Expr | None:
    if a is None or b is None:
        return a if b is None else b
    return number("mul", [a, b])


def plus(a: Expr | None, b: Expr | None) -> Expr | None:
    if a is None or b is None:
        return a if b is None else b
    return number("add", [a, b])


def coefficient(num: Expr | None, den: Expr | None) -> Expr | None:
    """The number ``num / den`` (None when it is 1)."""
    if den is None:
        return num
    return number("div", [Const(1.0) if num is None else num, den])


@dataclass(frozen=True)
class Number:
    """A number (:mod:`evodisc.plan_numbers`), the same for every tensor of the list."""

    expr: Expr


@dataclass(frozen=True)
class Linear:
    """A list value kept as a sum of scaled terms (plus a number) until something needs it
    in a buffer."""

    terms: tuple[Term, ...]
    const: Expr | None = None

    def registers(self) -> list[str]:
        return [r for t in self.terms for r in t.registers()]

    def scaled_register(self) -> bool:
        """One register times a number: any reader can fold the number into its own call."""
        return self.const is None and len(self.terms) == 1 and self.terms[0].op == ""

    def plain(self) -> bool:
        return self.scaled_register() and self.terms[0].plain()


Value = Number | Linear


def register(name: str) -> Linear:
    """The list value held in register ``name``."""
    return Linear((Term(None, None, name),))


def add(a: Value, b: Value) -> Linear:
    """``a + b``, one of them a list value."""
    if isinstance(a, Number):
        a, b = b, a
    if isinstance(b, Number):
        return Linear(a.terms, plus(a.const, b.expr))
    return Linear(a.terms + b.terms, plus(a.const, b.const))


def scale(a: Linear, num: Expr | None = None, den: Expr | None = None) -> Linear:
    """``a * num / den`` for numbers ``num`` and ``den`` (either None: 1)."""
    const = a.const
    if const is not None and num is not None:
        const = number("mul", [const, num])
    if const is not None and den is not None:
        const = number("div", [const, den])
    return Linear(tuple(t.scaled(num, den) for t in a.terms), const)
