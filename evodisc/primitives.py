"""The primitives registry: the single source of truth for every operation a program may use.

Each :class:`Primitive` names its arity and gives every view of the same function that evodisc
uses, so that adding a primitive is one entry in :data:`PRIMITIVES`:

* ``numpy`` — the function on NumPy arrays (float64): parsing, constant folding and functional
  hashing need nothing else;
* ``torch`` — the implementation the interpreter, the trainer and :func:`to_torch_optimizer` run;
* ``sympy`` — its symbolic form, for simplification and LaTeX; SymPy's spelling of it is read
  back as the primitive where that form is one SymPy function (``asin`` → ``arcsin``) or one power
  (``x**2`` → ``square``);
* ``source`` (and ``helper``, the source of a function it calls) — standalone torch code, for the
  exporter;
* ``foreach``, ``expansion``, ``python`` — how the multi-tensor plan of an exported optimizer
  computes it (:mod:`evodisc.lowering`): one ``torch._foreach_*`` call for a list of tensors,
  other primitives, or a Python builtin on numbers; else tensor by tensor with ``source``.

The torch and SymPy forms are *bound on first use*: an entry names them (an attribute of the
module, or a function of the module that builds the form), and ``primitive.torch`` /
``primitive.sympy`` import torch / SymPy only when first read. So parsing, analysing and hashing
a program import neither (``tests/test_layers.py`` checks it).

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
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol

import numpy as np

#: How a form is named in an entry: an attribute of the module (``"asin"`` → ``torch.asin``), or
#: a function that receives the module and returns the form.
FormSpec = str | Callable[[ModuleType], Callable]

_BOUND: dict[tuple[str, object], Callable] = {}  # (module, spec) -> bound form


class Lowering(Protocol):
    """What a ``foreach`` function of an entry may ask of the multi-tensor lowering (values are
    numbers or lists of tensors, as :mod:`evodisc.lowering` holds them)."""

    def is_number(self, value: object) -> bool:
        """Whether ``value`` is a number (one float for every tensor), not a list of tensors."""

    def apply(self, op: str, args: Sequence[object]) -> object:
        """Primitive ``op`` of ``args``, lowered."""

    def foreach_values(self, name: str, args: Sequence[object]) -> object:
        """``torch._foreach_<name>(*args)``."""


#: How an entry lowers to ``torch._foreach_*`` calls: the name of one (``"asin"``), or a function
#: ``(lowering, *args)`` that makes them and returns the value, or None where it cannot.
ForeachSpec = str | Callable[..., object]


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
    #: The ``torch._foreach_*`` form on lists of tensors (numbers where torch takes them).
    foreach: ForeachSpec = ""
    #: The same function written with other primitives, a format string over the arguments
    #: (``"{0} * {0}"``), exact in IEEE arithmetic; for a reduction, its value on a number
    #: (nothing to reduce). Plans compute numbers this way, and lists without a ``foreach`` form.
    expansion: str = ""
    #: A Python builtin that computes it on floats and never raises (``abs``): plans' numbers.
    python: str = ""

    @property
    def torch(self) -> Callable:
        """The torch implementation (imports torch on first use)."""
        return self._bound("torch", self.torch_spec)

    @property
    def sympy(self) -> Callable:
        """The SymPy form (imports SymPy on first use)."""
        return self._bound("sympy", self.sympy_spec)

    @property
    def helper_name(self) -> str:
        """The name of the function ``helper`` defines ("" when there is none)."""
        return re.match(r"def (\w+)", self.helper).group(1) if self.helper else ""

    @property
    def helper_function(self) -> Callable:
        """The function ``helper`` defines, compiled from that source with torch (imported on
        first use): what the exported source calls, for the optimizer class to call too."""
        key = ("helper", self.helper)
        if key not in _BOUND:
            namespace = {"torch": importlib.import_module("torch")}
            exec(self.helper, namespace)  # the entry's own source, never a program
            _BOUND[key] = namespace[self.helper_name]
        return _BOUND[key]

    def _bound(self, module: str, spec: FormSpec) -> Callable:
        key = (module, spec)
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


def _clip_foreach(lowering: Lowering, x: object, c: object) -> object:
    """By a number: clamp to [-|c|, |c|] with ``clamp_min`` and ``clamp_max``; by a tensor: no
    foreach form."""
    if not lowering.is_number(c):
        return None
    bound = lowering.apply("abs", [c])
    low = lowering.foreach_values("clamp_min", [x, lowering.apply("neg", [bound])])
    return lowering.foreach_values("clamp_max", [low, bound])


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


for _p_ in [
    Primitive(
        "abs",
        1,
        "absolute value",
        np.abs,
        "abs",
        "Abs",
        "torch.abs({0})",
        foreach="abs",
        python="abs",
    ),
    Primitive(
        "sign",
        1,
        "sign, with sign(0) = 0",
        np.sign,
        "sign",
        "sign",
        "torch.sign({0})",
        foreach="sign",
    ),
    Primitive(
        "sqrt",
        1,
        "square root (NaN below 0)",
        np.sqrt,
        "sqrt",
        "sqrt",
        "torch.sqrt({0})",
        foreach="sqrt",
    ),
    Primitive(
        "square",
        1,
        "x²",
        np.square,
        "square",
        _same(_square),
        "torch.square({0})",
        expansion="{0} * {0}",
    ),
    Primitive(
        "cube",
        1,
        "x³",
        _cube,
        _same(_cube),
        _same(_cube),
        "({0}) ** 3",
        expansion="{0} * {0} * {0}",
    ),
    Primitive(
        "reciprocal",
        1,
        "1 / x (±inf at 0)",
        np.reciprocal,
        "reciprocal",
        _same(_reciprocal),
        "torch.reciprocal({0})",
        foreach="reciprocal",
        expansion="1 / {0}",
    ),
    Primitive("exp", 1, "eˣ", np.exp, "exp", "exp", "torch.exp({0})", foreach="exp"),
    Primitive(
        "log",
        1,
        "natural logarithm (NaN below 0, -inf at 0)",
        np.log,
        "log",
        "log",
        "torch.log({0})",
        foreach="log",
    ),
    Primitive("sin", 1, "sine", np.sin, "sin", "sin", "torch.sin({0})", foreach="sin"),
    Primitive("cos", 1, "cosine", np.cos, "cos", "cos", "torch.cos({0})", foreach="cos"),
    Primitive("tan", 1, "tangent", np.tan, "tan", "tan", "torch.tan({0})", foreach="tan"),
    Primitive(
        "arcsin",
        1,
        "inverse sine (NaN outside [-1, 1])",
        np.arcsin,
        "asin",
        "asin",
        "torch.asin({0})",
        foreach="asin",
    ),
    Primitive(
        "arccos",
        1,
        "inverse cosine (NaN outside [-1, 1])",
        np.arccos,
        "acos",
        "acos",
        "torch.acos({0})",
        foreach="acos",
    ),
    Primitive(
        "arctan", 1, "inverse tangent", np.arctan, "atan", "atan", "torch.atan({0})", foreach="atan"
    ),
    Primitive(
        "sinh", 1, "hyperbolic sine", np.sinh, "sinh", "sinh", "torch.sinh({0})", foreach="sinh"
    ),
    Primitive(
        "cosh", 1, "hyperbolic cosine", np.cosh, "cosh", "cosh", "torch.cosh({0})", foreach="cosh"
    ),
    Primitive(
        "tanh", 1, "hyperbolic tangent", np.tanh, "tanh", "tanh", "torch.tanh({0})", foreach="tanh"
    ),
    Primitive(
        "arcsinh", 1, "inverse hyperbolic sine", np.arcsinh, "asinh", "asinh", "torch.asinh({0})"
    ),
    Primitive(
        "sigmoid",
        1,
        "logistic sigmoid 1 / (1 + e⁻ˣ)",
        _sigmoid_np,
        "sigmoid",
        lambda sympy: lambda x: 1 / (1 + sympy.exp(-x)),
        "torch.sigmoid({0})",
        foreach="sigmoid",
    ),
    Primitive(
        "relu",
        1,
        "max(x, 0)",
        lambda x: np.maximum(x, 0.0),
        "relu",
        lambda sympy: lambda x: sympy.Max(x, 0),
        "torch.relu({0})",
    ),
]:
    _register(_p_)

# The operators of the text format: one Python function serves torch, NumPy and SymPy alike.
_OPERATORS = [
    # name, doc, function, symbol, commutative, foreach
    ("add", "a + b", operator.add, "+", True, ""),
    ("sub", "a - b", operator.sub, "-", False, ""),
    ("mul", "a * b", operator.mul, "*", True, ""),
    ("div", "a / b (±inf when b = 0)", operator.truediv, "/", False, ""),
    (
        "pow",
        "a ** b (NaN for a negative base and a fractional exponent)",
        operator.pow,
        "**",
        False,
        "pow",
    ),
]
for _name, _doc, _fn, _symbol, _commutative, _foreach in _OPERATORS:
    _source = f"({{0}} {_symbol} {{1}})"
    _register(
        Primitive(
            _name,
            2,
            _doc,
            _fn,
            _same(_fn),
            _same(_fn),
            _source,
            _symbol,
            commutative=_commutative,
            foreach=_foreach,
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
        foreach="minimum",
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
        foreach="maximum",
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
        foreach=_clip_foreach,
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
        expansion="(1 - {2}) * {0} + {2} * {1}",
    ),
]:
    _register(_p_)

_REDUCTIONS = [
    # name, doc, value on a number
    ("norm", "L2 norm of the whole tensor, broadcast back", "abs({0})"),
    ("rms", "root mean square of the whole tensor, broadcast back", "abs({0})"),
    ("mean", "mean of the whole tensor, broadcast back", "{0}"),
]
for _name, _doc, _expansion in _REDUCTIONS:
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
            expansion=_expansion,
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
