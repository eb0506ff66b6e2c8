"""The primitives registry: the single source of truth for every operation a program may use.

Each :class:`Primitive` names its arity and gives four views of the same function:

* ``torch`` — the implementation the interpreter, the trainer and :func:`to_torch_optimizer` run;
* ``numpy`` — the same function on NumPy arrays (float64), used where torch's per-call overhead
  would dominate (functional hashing of tiny inputs);
* ``sympy`` — its symbolic form, for simplification and LaTeX;
* ``source`` — a format string of standalone torch code, used by the exporter.

Adding a primitive is one entry in :data:`PRIMITIVES`.

Ill-defined values follow IEEE-754, exactly as torch computes them: ``sqrt``/``log``/``arcsin`` of
values outside their domain give NaN, division by zero gives ±inf. Operators are **not**
protected. A candidate whose update contains a non-finite value is *invalid* and gets the worst
fitness; the search goes on. (Protected operators would silently change the meaning of a program
and break its exact equivalence with the torch references and with its SymPy form.)

Reductions (``norm``, ``rms``, ``mean``) reduce one tensor to a scalar and broadcast it back. When
many models are stacked along leading batch dimensions, they reduce each model's slice separately.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy
import torch


@dataclass(frozen=True)
class Primitive:
    """One operation of the program language."""

    name: str
    arity: int
    doc: str
    torch: Callable
    numpy: Callable
    sympy: Callable
    source: str
    infix: str | None = None  # operator symbol when written infix (``+``, ``**``, unary ``-``)
    helper: str = ""  # source of the helper function ``source`` calls, if any (export)
    reduction: bool = False  # reduces over the non-batch dimensions, keeps them for broadcasting
    commutative: bool = False


def _as_tensor(x):
    """``x`` if it is a tensor, else the number as a float64 scalar tensor."""
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=torch.float64)


def _clip_torch(x, c):
    c = abs(c)
    return torch.clamp(_as_tensor(x), min=-c, max=c)


def _clip_np(x, c):
    c = np.abs(c)
    return np.clip(x, -c, c)


def _binary_torch(fn: Callable) -> Callable:
    """Lift a tensor-only binary torch function so one argument may be a Python number."""

    def call(a, b):
        return fn(_as_tensor(a), _as_tensor(b))

    return call


def _interp(a, b, beta):
    return (1 - beta) * a + beta * b


def _reduction(kind: str, lib) -> Callable:
    """``norm``/``rms``/``mean`` over ``dims`` for ``lib`` (torch or numpy: both take the
    ``axis``/``keepdims`` spelling); with no dimension left to reduce, the elementwise limit."""

    def call(x, dims: tuple[int, ...]):
        if not dims:
            return x if kind == "mean" else lib.abs(x)
        if kind == "norm":
            return lib.sqrt(lib.sum(x * x, axis=dims, keepdims=True))
        if kind == "rms":
            return lib.sqrt(lib.mean(x * x, axis=dims, keepdims=True))
        return lib.mean(x, axis=dims, keepdims=True)

    return call


def _relu_sym(x):
    return sympy.Max(x, 0)


def _sigmoid_np(x):
    return 1.0 / (1.0 + np.exp(-x))


_ELEMENTWISE_UNARY = [
    # name, doc, torch, numpy, sympy, source
    ("abs", "absolute value", torch.abs, np.abs, sympy.Abs, "torch.abs({0})"),
    ("sign", "sign, with sign(0) = 0", torch.sign, np.sign, sympy.sign, "torch.sign({0})"),
    ("sqrt", "square root (NaN below 0)", torch.sqrt, np.sqrt, sympy.sqrt, "torch.sqrt({0})"),
    ("square", "x²", torch.square, np.square, lambda x: x**2, "torch.square({0})"),
    ("cube", "x³", lambda x: x * x * x, lambda x: x * x * x, lambda x: x**3, "({0}) ** 3"),
    (
        "reciprocal",
        "1 / x (±inf at 0)",
        torch.reciprocal,
        np.reciprocal,
        lambda x: 1 / x,
        "torch.reciprocal({0})",
    ),
    ("exp", "eˣ", torch.exp, np.exp, sympy.exp, "torch.exp({0})"),
    (
        "log",
        "natural logarithm (NaN below 0, -inf at 0)",
        torch.log,
        np.log,
        sympy.log,
        "torch.log({0})",
    ),
    ("sin", "sine", torch.sin, np.sin, sympy.sin, "torch.sin({0})"),
    ("cos", "cosine", torch.cos, np.cos, sympy.cos, "torch.cos({0})"),
    ("tan", "tangent", torch.tan, np.tan, sympy.tan, "torch.tan({0})"),
    (
        "arcsin",
        "inverse sine (NaN outside [-1, 1])",
        torch.asin,
        np.arcsin,
        sympy.asin,
        "torch.asin({0})",
    ),
    (
        "arccos",
        "inverse cosine (NaN outside [-1, 1])",
        torch.acos,
        np.arccos,
        sympy.acos,
        "torch.acos({0})",
    ),
    ("arctan", "inverse tangent", torch.atan, np.arctan, sympy.atan, "torch.atan({0})"),
    ("sinh", "hyperbolic sine", torch.sinh, np.sinh, sympy.sinh, "torch.sinh({0})"),
    ("cosh", "hyperbolic cosine", torch.cosh, np.cosh, sympy.cosh, "torch.cosh({0})"),
    ("tanh", "hyperbolic tangent", torch.tanh, np.tanh, sympy.tanh, "torch.tanh({0})"),
    (
        "arcsinh",
        "inverse hyperbolic sine",
        torch.asinh,
        np.arcsinh,
        sympy.asinh,
        "torch.asinh({0})",
    ),
    (
        "sigmoid",
        "logistic sigmoid 1 / (1 + e⁻ˣ)",
        torch.sigmoid,
        _sigmoid_np,
        lambda x: 1 / (1 + sympy.exp(-x)),
        "torch.sigmoid({0})",
    ),
    ("relu", "max(x, 0)", torch.relu, lambda x: np.maximum(x, 0.0), _relu_sym, "torch.relu({0})"),
]

#: Standalone torch source of the helper functions that exported code calls.
_EXPORT_HELPERS = {
    "clip": '''\
def _clip(x, c):
    """x clamped to [-|c|, |c|]."""
    c = abs(c)
    return torch.clamp(x, -c, c)
''',
    "interp": '''\
def _interp(a, b, beta):
    """(1 - beta) * a + beta * b, the interpolation of the Lion paper."""
    return (1 - beta) * a + beta * b
''',
    "norm": '''\
def _norm(x):
    """The L2 norm of the whole tensor (a scalar, broadcast back)."""
    return torch.sqrt(torch.sum(x * x))
''',
    "rms": '''\
def _rms(x):
    """The root mean square of the whole tensor (a scalar, broadcast back)."""
    return torch.sqrt(torch.mean(x * x))
''',
    "mean": '''\
def _mean(x):
    """The mean of the whole tensor (a scalar, broadcast back)."""
    return torch.mean(x)
''',
}

PRIMITIVES: dict[str, Primitive] = {}


def _register(p: Primitive) -> None:
    PRIMITIVES[p.name] = p


for _name, _doc, _t, _n, _s, _src in _ELEMENTWISE_UNARY:
    _register(Primitive(_name, 1, _doc, _t, _n, _s, _src))

# The operators of the text format: one Python function serves torch, NumPy and SymPy alike.
_OPERATORS = [
    # name, doc, function, symbol, commutative
    ("add", "a + b", operator.add, "+", True),
    ("sub", "a - b", operator.sub, "-", False),
    ("mul", "a * b", operator.mul, "*", True),
    ("div", "a / b (±inf when b = 0)", operator.truediv, "/", False),
    (
        "pow",
        "a ** b (NaN for a negative base and a fractional exponent)",
        operator.pow,
        "**",
        False,
    ),
]
for _name, _doc, _fn, _symbol, _commutative in _OPERATORS:
    _source = f"({{0}} {_symbol} {{1}})"
    _register(Primitive(_name, 2, _doc, _fn, _fn, _fn, _source, _symbol, commutative=_commutative))
_register(Primitive("neg", 1, "-a", operator.neg, operator.neg, operator.neg, "(-{0})", "-"))

for _p_ in [
    Primitive(
        "minimum",
        2,
        "elementwise minimum",
        _binary_torch(torch.minimum),
        np.minimum,
        sympy.Min,
        "torch.minimum({0}, {1})",
        commutative=True,
    ),
    Primitive(
        "maximum",
        2,
        "elementwise maximum",
        _binary_torch(torch.maximum),
        np.maximum,
        sympy.Max,
        "torch.maximum({0}, {1})",
        commutative=True,
    ),
    Primitive(
        "clip",
        2,
        "clip(x, c): clamp x to [-|c|, |c|]",
        _clip_torch,
        _clip_np,
        lambda x, c: sympy.Max(-sympy.Abs(c), sympy.Min(x, sympy.Abs(c))),
        "_clip({0}, {1})",
        helper=_EXPORT_HELPERS["clip"],
    ),
    Primitive(
        "interp",
        3,
        "interp(a, b, β) = (1 - β)·a + β·b, as in the Lion paper",
        _interp,
        _interp,
        _interp,
        "_interp({0}, {1}, {2})",
        helper=_EXPORT_HELPERS["interp"],
    ),
]:
    _register(_p_)

_REDUCTIONS = [
    ("norm", "L2 norm of the whole tensor, broadcast back"),
    ("rms", "root mean square of the whole tensor, broadcast back"),
    ("mean", "mean of the whole tensor, broadcast back"),
]
for _name, _doc in _REDUCTIONS:
    _register(
        Primitive(
            _name,
            1,
            _doc,
            _reduction(_name, torch),
            _reduction(_name, np),
            sympy.Function(_name),  # an undefined SymPy function: kept as it is
            f"_{_name}({{0}})",
            helper=_EXPORT_HELPERS[_name],
            reduction=True,
        )
    )


def fold_constant(name: str, args: list[float]) -> float:
    """Evaluate ``name`` on constant arguments (IEEE semantics, as the tensors would get)."""
    prim = PRIMITIVES[name]
    with np.errstate(all="ignore"):
        if prim.reduction:
            value = prim.numpy(np.float64(args[0]), ())
        else:
            value = prim.numpy(*[np.float64(a) for a in args])
    return float(value)
