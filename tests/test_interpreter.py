"""The interpreter: torch and NumPy backends agree, batches of models equal separate runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evodisc.interpreter import compile_program, init_state, step
from evodisc.primitives import PRIMITIVES
from evodisc.program import parse_program
from search_spaces.zoo import load_known

ADAMW = load_known("adamw")

# Uses a reduction, so batched models must each be normalised by their own slice.
NORMALISED = parse_program(
    """\
def train(w, g, lr, m):
    m = interp(g, m, 0.8)
    u = m / (norm(m) + rms(g) + abs(mean(w)))
    return lr * u, m
"""
)


def _call_text(name: str, arity: int) -> str:
    args = ["x", "y", "z"][:arity]
    return f"{name}({', '.join(args)})"


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_every_primitive_has_equal_torch_and_numpy_semantics(name):
    prim = PRIMITIVES[name]
    program = parse_program(
        f"def train(x, y, z):\n    u = {_call_text(name, prim.arity)}\n    return u, x, y, z\n"
    )
    rng = np.random.default_rng(0)
    values = [rng.normal(size=(4, 5)) * 2.0 for _ in range(3)]
    values[0][0, :3] = [0.0, -0.0, 0.5]  # zero and in-domain points for the domain-limited ops
    np_out = compile_program(program, "numpy")(values)[0]
    torch_out = compile_program(program, "torch")([torch.from_numpy(v) for v in values])[0]
    torch_out = np.asarray(torch_out, dtype=np.float64)
    np.testing.assert_allclose(torch_out, np_out, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_ill_defined_values_follow_ieee():
    program = parse_program("def train(g, a, b):\n    u = sqrt(g)\n    return u, log(g), 1 / g\n")
    root, log, inverse = compile_program(program)([torch.tensor([-1.0, 0.0, 4.0]), None, None])
    assert torch.isnan(root[0]) and root[1] == 0 and root[2] == 2
    assert torch.isnan(log[0]) and log[1] == -torch.inf
    assert inverse[1] == torch.inf and inverse[2] == 0.25


def test_adamw_program_matches_torch_adamw():
    torch.manual_seed(0)
    w = torch.randn(7, 3)
    reference = torch.nn.Parameter(w.clone())
    optimizer = torch.optim.AdamW(
        [reference], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01
    )
    compiled, state = compile_program(ADAMW), init_state(ADAMW, w)
    for t in range(1, 101):
        update, state = step(compiled, w, torch.sin(3 * w + t), 0.01, t, state)
        w = w - update
        reference.grad = torch.sin(3 * reference.detach() + t)
        optimizer.step()
    torch.testing.assert_close(w, reference.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("program", [ADAMW, NORMALISED], ids=["adamw", "reductions"])
def test_batched_models_equal_separate_runs(program):
    torch.manual_seed(1)
    batch, shape = 4, (3, 5)
    w = torch.randn(batch, *shape, dtype=torch.float64)
    lrs = torch.tensor([1e-3, 1e-2, 3e-2, 0.1], dtype=torch.float64)
    compiled = compile_program(program)
    state = init_state(program, w)
    separate = [(w[i].clone(), init_state(program, w[i])) for i in range(batch)]
    for t in range(1, 21):
        grad = torch.cos(w * t)
        update, state = step(compiled, w, grad, lrs, t, state, batch_dims=1)
        w = w - update
        for i, (wi, si) in enumerate(separate):
            ui, si = step(compiled, wi, torch.cos(wi * t), float(lrs[i]), t, si)
            separate[i] = (wi - ui, si)
    for i, (wi, _) in enumerate(separate):
        torch.testing.assert_close(w[i], wi, rtol=1e-12, atol=1e-12)


def test_numpy_backend_runs_the_same_steps():
    rng = np.random.default_rng(3)
    w_np = rng.normal(size=(6,))
    w_t = torch.from_numpy(w_np.copy())
    c_np, c_t = compile_program(ADAMW, "numpy"), compile_program(ADAMW, "torch")
    s_np, s_t = init_state(ADAMW, w_np), init_state(ADAMW, w_t)
    for t in range(1, 11):
        u_np, s_np = step(c_np, w_np, np.sin(w_np), 0.1, t, s_np)
        u_t, s_t = step(c_t, w_t, torch.sin(w_t), 0.1, t, s_t)
        w_np, w_t = w_np - u_np, w_t - u_t
    np.testing.assert_allclose(w_t.numpy(), w_np, rtol=1e-12)


def test_scalar_update_is_broadcast_to_the_weight_shape_and_dtype():
    program = parse_program("def train(w, g, lr, t):\n    return lr * 0.5 + 0 * g\n")
    w = torch.zeros(2, 3, dtype=torch.float32)
    update, state = step(compile_program(program), w, w, 0.2, 1, [])
    assert update.shape == w.shape and update.dtype == torch.float32 and state == []
    constant = parse_program("def train(w, g, lr, t, m):\n    return lr + g, 1.5\n")
    _, (m,) = step(compile_program(constant), w, w, 0.2, 1, init_state(constant, w))
    assert m.shape == w.shape and float(m[0, 0]) == 1.5


def test_constant_subexpressions_are_folded_at_compile_time():
    program = parse_program("def train(g):\n    u = g * sqrt(4) * (1 - 0.5 ** 2)\n    return u\n")
    compiled = compile_program(program)
    assert len(compiled.code) == 2  # two multiplications; sqrt(4) and (1 - 0.5**2) folded
    assert torch.equal(compiled([torch.ones(2)])[0], torch.full((2,), 1.5))


def test_the_wrong_number_of_state_tensors_is_an_error():
    w = torch.zeros(3)
    for state in ([w], [w, w, w]):
        with pytest.raises(ValueError, match="2 state slot"):
            step(compile_program(ADAMW), w, w, 0.1, 1, state)


# Reads the horizon T (warm-up, cosine decay) and reduces per tensor: every scalar input and the
# reductions at once.
SCHEDULED = parse_program(
    """\
def train(w, g, lr, t, T, m):
    m = interp(g, m, 0.9)
    warm = minimum(t / (0.1 * T), 1)
    cosine = 0.5 * (1 + cos(3.141592653589793 * t / T))
    return lr * warm * cosine * (m / (rms(m) + 1e-8) + 0.01 * w) + (T - t) * 1e-6 * g, m
"""
)


def test_the_horizon_T_runs_the_same_on_numpy_torch_and_batched_models():
    rng = np.random.default_rng(4)
    w_np = rng.normal(size=(2, 3, 5))
    horizon = 20
    c_np, c_t = compile_program(SCHEDULED, "numpy"), compile_program(SCHEDULED, "torch")
    w_t = torch.from_numpy(w_np.copy())
    lrs = torch.tensor([0.1, 0.01], dtype=torch.float64)
    s_np = [init_state(SCHEDULED, w_np[i]) for i in range(2)]
    s_t = [init_state(SCHEDULED, w_t[i]) for i in range(2)]
    s_batch = init_state(SCHEDULED, w_t)
    w_batch = w_t.clone()
    T = torch.tensor(float(horizon), dtype=torch.float64)  # as the trainer passes it
    for t in range(1, horizon + 1):
        g_batch = torch.sin(w_batch * t)
        u, s_batch = step(c_t, w_batch, g_batch, lrs, t, s_batch, batch_dims=1, T=T)
        w_batch = w_batch - u
        for i in range(2):
            u_np, s_np[i] = step(
                c_np, w_np[i], np.sin(w_np[i] * t), float(lrs[i]), t, s_np[i], T=horizon
            )
            u_t, s_t[i] = step(
                c_t, w_t[i], torch.sin(w_t[i] * t), float(lrs[i]), t, s_t[i], T=horizon
            )
            w_np[i], w_t[i] = w_np[i] - u_np, w_t[i] - u_t
    np.testing.assert_allclose(w_t.numpy(), w_np, rtol=1e-12)
    torch.testing.assert_close(w_batch, w_t, rtol=1e-12, atol=1e-12)
    # T is read: another horizon gives other weights
    u_short, _ = step(c_t, w_t[0], w_t[0], 0.1, 2, init_state(SCHEDULED, w_t[0]), T=10)
    u_long, _ = step(c_t, w_t[0], w_t[0], 0.1, 2, init_state(SCHEDULED, w_t[0]), T=40)
    assert not torch.allclose(u_short, u_long)


def test_a_program_that_takes_T_needs_it():
    w = torch.zeros(3)
    with pytest.raises(ValueError, match="reads T, the run's total number of steps"):
        step(compile_program(SCHEDULED), w, w, 0.1, 1, init_state(SCHEDULED, w))
    # one that does not take T ignores it
    update, _ = step(compile_program(ADAMW), w, w + 1, 0.1, 1, init_state(ADAMW, w), T=5)
    expected, _ = step(compile_program(ADAMW), w, w + 1, 0.1, 1, init_state(ADAMW, w))
    assert torch.equal(update, expected)
