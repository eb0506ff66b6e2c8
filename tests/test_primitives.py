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
from test_export import exported_and_interpreted

from evodisc import functional_hash, simplify
from evodisc.inspect import symbolic
from evodisc.interpreter import compile_program, init_state, step
from evodisc.lowering import lower
from evodisc.primitives import PRIMITIVES, Primitive
from evodisc.program import Call, Var, format_expr, format_program, parse_program
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


# ------------------------------------------------------------------- adding a primitive

#: Primitives that are not in the registry, one entry each: ``floor`` has a foreach form and is
#: one SymPy function; ``softsign`` runs tensor by tensor through its export helper and SymPy
#: writes it with other primitives.
NEW_PRIMITIVES = [
    Primitive(
        "floor",
        1,
        "largest whole number ≤ x",
        np.floor,
        "floor",
        "floor",
        "torch.floor({0})",
        foreach="floor",
    ),
    Primitive(
        "softsign",
        1,
        "x / (1 + |x|)",
        lambda x: x / (1 + np.abs(x)),
        lambda torch: torch.nn.functional.softsign,
        lambda sympy: lambda x: x / (1 + sympy.Abs(x)),
        "_softsign({0})",
        helper='def _softsign(x):\n    """x / (1 + |x|)."""\n    return x / (1 + torch.abs(x))\n',
    ),
]


@pytest.mark.parametrize("prim", NEW_PRIMITIVES, ids=lambda prim: prim.name)
def test_adding_a_primitive_is_one_entry(prim, monkeypatch, tmp_path):
    """With one entry added to the registry and no other table touched, a primitive parses,
    runs alike on NumPy and torch, hashes, exports (the class and the standalone source agree bit
    for bit, and with the interpreter up to rounding; on tensors and on numbers) and goes to
    SymPy and back."""
    monkeypatch.setitem(PRIMITIVES, prim.name, prim)
    name = prim.name
    program = parse_program(
        "def train(w, g, lr, t, m):\n"
        f"    m = interp({name}(g * 3), m, 0.9)\n"
        f"    u = {name}(m) + {name}(t * 0.5) * 0.01 * w\n"
        "    return lr * u, m\n"
    )
    assert parse_program(format_program(program)) == program
    other = format_program(program).replace(name, "tanh")
    assert functional_hash(program) != functional_hash(other)

    rng = np.random.default_rng(0)
    w, g = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    on_numpy = step(compile_program(program, "numpy"), w, g, 0.01, 2, init_state(program, w))
    w_t, g_t = torch.from_numpy(w), torch.from_numpy(g)
    on_torch = step(compile_program(program), w_t, g_t, 0.01, 2, init_state(program, w_t))
    for a, b in zip([on_numpy[0], *on_numpy[1]], [on_torch[0], *on_torch[1]], strict=True):
        np.testing.assert_allclose(b.numpy(), a, rtol=1e-12, atol=1e-15)

    call = f"torch._foreach_{prim.foreach}(" if prim.foreach else prim.source.format("_a")
    assert call in "\n".join(lower(program).source())  # one call, or tensor by tensor
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 4, generator=gen, dtype=torch.float64) for _ in range(5)]
    finals, expected, _ = exported_and_interpreted(program, grads, tmp_path)
    assert torch.equal(finals[0], finals[1])
    torch.testing.assert_close(finals[0], expected, rtol=1e-12, atol=1e-14)

    env = symbolic.symbols(["g"])
    applied = Call(name, (Var("g"),))
    back, _ = symbolic.from_sympy(symbolic.to_sympy(applied, env), env)
    assert (back == applied) == isinstance(prim.sympy_spec, str)  # one SymPy function: itself
    returning = "def train(g):\n    return {}\n".format
    assert functional_hash(returning(format_expr(back))) == functional_hash(returning(name + "(g)"))
    simplified = simplify(program, recognise=False)
    assert simplified.exact and not any("failed" in s.detail for s in simplified.steps)
