"""The SymPy form of every primitive means what its NumPy form computes.

Simplification and LaTeX export work on the SymPy forms; the interpreter and the hash on the
NumPy / torch ones (``tests/test_interpreter.py`` checks those two agree). Here each SymPy form is
evaluated by substitution at 50 digits (mpmath, independent of NumPy) on random points of the
primitive's domain and compared with the NumPy form on the same float64 inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from sympy.core.function import AppliedUndef

from evodisc.primitives import PRIMITIVES

SYMBOLS = sympy.symbols("x y z", real=True)
POINTS = 25

#: Where each argument is drawn from when the whole real line is not the domain (NaN outside:
#: IEEE and SymPy differ there on purpose, complex vs NaN). Default: uniform in [-3, 3].
DOMAINS: dict[str, tuple[tuple[float, float], ...]] = {
    "sqrt": ((0.01, 5.0),),
    "log": ((0.01, 5.0),),
    "arcsin": ((-0.99, 0.99),),
    "arccos": ((-0.99, 0.99),),
    "pow": ((0.01, 5.0), (-3.0, 3.0)),
}

ELEMENTWISE = sorted(name for name, prim in PRIMITIVES.items() if not prim.reduction)
REDUCTIONS = sorted(name for name, prim in PRIMITIVES.items() if prim.reduction)


def _points(name: str, rng: np.random.Generator) -> np.ndarray:
    """``POINTS`` random argument tuples, shape ``(POINTS, arity)``."""
    arity = PRIMITIVES[name].arity
    domain = DOMAINS.get(name, ((-3.0, 3.0),) * arity)
    return np.stack([rng.uniform(lo, hi, POINTS) for lo, hi in domain], axis=1)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_sympy_form_equals_numpy_form_on_its_domain(name):
    prim = PRIMITIVES[name]
    args = SYMBOLS[: prim.arity]
    expr = prim.sympy(*args)
    assert expr.free_symbols == set(args)  # every argument is used
    rng = np.random.default_rng(sorted(PRIMITIVES).index(name))
    for point in _points(name, rng):
        exact = expr.evalf(50, subs=dict(zip(args, map(float, point), strict=True)))
        assert exact.is_real and exact.is_number, (name, point, exact)
        want = float(prim.numpy(*(np.float64(v) for v in point)))
        assert float(exact) == pytest.approx(want, rel=1e-12, abs=1e-300), (name, point)


def test_sign_relu_and_clip_agree_at_their_kinks():
    """Points random draws never hit: sign(0) = 0, relu(0) = 0, clip by a negative bound."""
    cases = [("sign", (0.0,)), ("relu", (0.0,)), ("abs", (0.0,)), ("clip", (2.5, -1.0))]
    cases += [("clip", (-2.5, -1.0)), ("clip", (0.5, -1.0)), ("interp", (2.0, 4.0, 0.25))]
    for name, point in cases:
        prim = PRIMITIVES[name]
        args = SYMBOLS[: prim.arity]
        exact = prim.sympy(*args).evalf(50, subs=dict(zip(args, point, strict=True)))
        assert float(exact) == float(prim.numpy(*map(np.float64, point))), (name, point)


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions_stay_unevaluated_sympy_functions(name):
    """``norm``/``rms``/``mean`` reduce a whole tensor: SymPy has no such function, so their
    form is an undefined function application that no substitution evaluates."""
    x = SYMBOLS[0]
    expr = PRIMITIVES[name].sympy(x)
    assert isinstance(expr, AppliedUndef)
    assert expr.func.__name__ == name and expr.args == (x,)
    at_two = expr.subs(x, 2.0).evalf(50)
    assert isinstance(at_two, AppliedUndef) and not at_two.is_Number
    assert at_two.args == (sympy.Float(2.0),)
