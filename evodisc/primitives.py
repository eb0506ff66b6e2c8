"""The primitives registry: the single source of truth for every operation a program may use.

Each :class:`Primitive` names its arity and gives four views of the same function:

* ``numpy`` — the function on NumPy arrays (float64): parsing, constant folding and functional
  hashing need nothing else;
* ``torch`` — the implementation the interpreter, the trainer and :func:`to_torch_optimizer` run;
* ``sympy`` — its symbolic form, for simplification and LaTeX;
* ``source`` — a format string of standalone torch code, used by the exporter.

The torch and SymPy forms are *bound on first use*: an entry names them (an attribute of the
module, or a function of the module that builds the form), and ``primitive.torch`` /
``primitive.sympy`` import torch / SymPy only when first read. So parsing, analysing and hashing
a program import neither (``tests/test_layers.py`` checks it).

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

import importlib
import operator
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np

#: How a form is named in an entry: an attribute of the module (``"asin"`` → ``torch.asin``), or
#: a function that receives the module and returns the form.
FormSpec = str | Callable[[ModuleType], Callable]

_BOUND: dict[tuple[str, str], Callable] = {}  # (module, primitive) -> bound form


@dataclass(frozen=True)
class Primitive:
    """One operation of the program language."""

    name: str
    arity: int
    doc: str
    numpy: Callable
    torch_spec: FormSpec
    sympy_spec: FormSpec
    source: str
    infix: str | None = None  # operator symbol when written infix (``+``, ``**``, unary ``-``)
    helper: str = ""  # source of the helper function ``source`` calls, if any (export)
    reduction: bool = False  # reduces over the non-batch dimensions, keeps them for broadcasting
    commutative: bool = False

    @property
    def torch(self) -> Callable:
        """The torch implementation (imports torch on first use)."""
        return self._bound("torch", self.torch_spec)

    @property
    def sympy(self) -> Callable:
        """The SymPy form (imports SymPy on first use)."""
        return self._bound("sympy", self.sympy_spec)

    def _bound(self, module: str, spec: FormSpec) -> Callable:
        key = (module, self.name)
        if key not in _BOUND:
            lib = importlib.import_module(module)
            _BOUND[key] = getattr(lib, spec) if isinstance(spec, str) else spec(lib)
        return _BOUND[key]


def _same(fn: Callable) -> Callable[[ModuleType], Callable]:
    """A spec for a form that is the same Python function in every library (``x * x * x``)."""
    return lambda _lib: fn


def _torch_binary(name: str) -> Callable[[ModuleType], Callable]:
    """A spec for a binary torch function that wants two tensors on one device, lifted so that
    either argument may be a number or a scalar tensor on another device."""

    def bind(torch: ModuleType) -> Callable:
        fn, as_tensor = getattr(torch, name), _torch_as_tensor(torch)

        def call(a, b):
            return fn(as_tensor(a, b), as_tensor(b, a))

        return call

    return bind


def _torch_as_tensor(torch: ModuleType) -> Callable:
    def as_tensor(x, like=None):
        """``x`` as a tensor on ``like``'s device: a number becomes a float64 scalar filled on
        that device (so a CUDA graph can capture it), a scalar tensor elsewhere is moved."""
        device = like.device if isinstance(like, torch.Tensor) else None
        if not isinstance(x, torch.Tensor):
            return torch.full((), x, dtype=torch.float64, device=device)
        if device is not None and x.device != device and x.dim() == 0:
            return x.to(device)
        return x

    return as_tensor


def _clip_torch(torch: ModuleType) -> Callable:
    as_tensor = _torch_as_tensor(torch)

    def clip(x, c):
        c = abs(as_tensor(c, x))
        return torch.clamp(as_tensor(x, c), min=-c, max=c)

    return clip


def _clip_np(x, c):
    c = np.abs(c)
    return np.clip(x, -c, c)


def _clip_sympy(sympy: ModuleType) -> Callable:
    return lambda x, c: sympy.Max(-sympy.Abs(c), sympy.Min(x, sympy.Abs(c)))


def _interp(a, b, beta):
    return (1 - beta) * a + beta * b


def _reduction(kind: str) -> Callable[[ModuleType], Callable]:
    """``norm``/``rms``/``mean`` over ``dims`` for a library (torch or numpy: both take the
    ``axis``/``keepdims`` spelling); with no dimension left to reduce, the elementwise limit."""

    def bind(lib: ModuleType) -> Callable:
        def call(x, dims: tuple[int, ...]):
            if not dims:
                return x if kind == "mean" else lib.abs(x)
            if kind == "norm":
                return lib.sqrt(lib.sum(x * x, axis=dims, keepdims=True))
            if kind == "rms":
                return lib.sqrt(lib.mean(x * x, axis=dims, keepdims=True))
            return lib.mean(x, axis=dims, keepdims=True)

        return call

    return bind


def _sigmoid_np(x):
    return 1.0 / (1.0 + np.exp(-x))


def _square(x):
    return x**2


def _cube(x):
    return x * x * x


def _reciprocal(x):
    return 1 / x


_ELEMENTWISE_UNARY = [
    # name, doc, numpy, torch, sympy, source
    ("abs", "absolute value", np.abs, "abs", "Abs", "torch.abs({0})"),
    ("sign", "sign, with sign(0) = 0", np.sign, "sign", "sign", "torch.sign({0})"),
    ("sqrt", "square root (NaN below 0)", np.sqrt, "sqrt", "sqrt", "torch.sqrt({0})"),
    ("square", "x²", np.square, "square", _same(_square), "torch.square({0})"),
    ("cube", "x³", _cube, _same(_cube), _same(_cube), "({0}) ** 3"),
    (
        "reciprocal",
        "1 / x (±inf at 0)",
        np.reciprocal,
        "reciprocal",
        _same(_reciprocal),
        "torch.reciprocal({0})",
    ),
    ("exp", "eˣ", np.exp, "exp", "exp", "torch.exp({0})"),
    ("log", "natural logarithm (NaN below 0, -inf at 0)", np.log, "log", "log", "torch.log({0})"),
    ("sin", "sine", np.sin, "sin", "sin", "torch.sin({0})"),
    ("cos", "cosine", np.cos, "cos", "cos", "torch.cos({0})"),
    ("tan", "tangent", np.tan, "tan", "tan", "torch.tan({0})"),
    ("arcsin", "inverse sine (NaN outside [-1, 1])", np.arcsin, "asin", "asin", "torch.asin({0})"),
    (
        "arccos",
        "inverse cosine (NaN outside [-1, 1])",
        np.arccos,
        "acos",
        "acos",
        "torch.acos({0})",
    ),
    ("arctan", "inverse tangent", np.arctan, "atan", "atan", "torch.atan({0})"),
    ("sinh", "hyperbolic sine", np.sinh, "sinh", "sinh", "torch.sinh({0})"),
    ("cosh", "hyperbolic cosine", np.cosh, "cosh", "cosh", "torch.cosh({0})"),
    ("tanh", "hyperbolic tangent", np.tanh, "tanh", "tanh", "torch.tanh({0})"),
    ("arcsinh", "inverse hyperbolic sine", np.arcsinh, "asinh", "asinh", "torch.asinh({0})"),
    (
        "sigmoid",
        "logistic sigmoid 1 / (1 + e⁻ˣ)",
        _sigmoid_np,
        "sigmoid",
        lambda sympy: lambda x: 1 / (1 + sympy.exp(-x)),
        "torch.sigmoid({0})",
    ),
    (
        "relu",
        "max(x, 0)",
        lambda x: np.maximum(x, 0.0),
        "relu",
        lambda sympy: lambda x: sympy.Max(x, 0),
        "torch.relu({0})",
    ),
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


for _name, _doc, _n, _t, _s, _src in _ELEMENTWISE_UNARY:
    _register(Primitive(_name, 1, _doc, _n, _t, _s, _src))

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
    _register(
        Primitive(
            _name, 2, _doc, _fn, _same(_fn), _same(_fn), _source, _symbol, commutative=_commutative
        )
    )
_register(
    Primitive("neg", 1, "-a", operator.neg, _same(operator.neg), _same(operator.neg), "(-{0})", "-")
)

for _p_ in [
    Primitive(
        "minimum",
        2,
        "elementwise minimum",
        np.minimum,
        _torch_binary("minimum"),
        "Min",
        "torch.minimum({0}, {1})",
        commutative=True,
    ),
    Primitive(
        "maximum",
        2,
        "elementwise maximum",
        np.maximum,
        _torch_binary("maximum"),
        "Max",
        "torch.maximum({0}, {1})",
        commutative=True,
    ),
    Primitive(
        "clip",
        2,
        "clip(x, c): clamp x to [-|c|, |c|]",
        _clip_np,
        _clip_torch,
        _clip_sympy,
        "_clip({0}, {1})",
        helper=_EXPORT_HELPERS["clip"],
    ),
    Primitive(
        "interp",
        3,
        "interp(a, b, β) = (1 - β)·a + β·b, as in the Lion paper",
        _interp,
        _same(_interp),
        _same(_interp),
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
            _reduction(_name)(np),
            _reduction(_name),
            lambda sympy, name=_name: sympy.Function(name),  # undefined in SymPy: kept as it is
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
