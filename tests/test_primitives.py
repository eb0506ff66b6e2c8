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
import torch
from sympy.core.function import AppliedUndef

from evodisc.primitives import PRIMITIVES
from fitness.device import available_devices

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


@pytest.mark.parametrize("device", available_devices(), ids=str)
@pytest.mark.parametrize("name", [n for n, p in PRIMITIVES.items() if p.arity > 1])
def test_torch_forms_take_numbers_and_scalars_beside_tensors_on_any_device(name, device):
    """A constant (a Python number) or a CPU scalar such as ``lr`` may meet a tensor on a GPU in
    any argument; the result is on the tensor's device and equals the NumPy form (a CUDA run
    found ``clip(0.5, x)`` and ``minimum`` failing there)."""
    prim = PRIMITIVES[name]
    values = np.array([-1.5, -0.25, 0.0, 0.3, 2.0])
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    for position in range(prim.arity):
        for scalar in (0.5, torch.tensor(0.5, dtype=torch.float64)):
            args = [scalar] * prim.arity
            args[position] = tensor
            got = prim.torch(*args)
            with np.errstate(all="ignore"):  # IEEE results (inf, NaN) are part of the check
                expected = prim.numpy(*[values if a is tensor else 0.5 for a in args])
            np.testing.assert_allclose(got.cpu().numpy(), expected, rtol=1e-12, atol=0)
            assert got.device == tensor.device
