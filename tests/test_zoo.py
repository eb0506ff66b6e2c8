"""The zoo of known optimizers: every program file parses and round-trips, and every program
trains a real model exactly like its torch reference.

Each numeric check trains a small MLP on scikit-learn's bundled digits for 100 fixed mini-batch
steps twice from the same initial weights: once with the reference optimizer (``torch.optim``,
``lion_pytorch`` or, where no library has it, a plain torch transcription of the paper's
equations below) and once applying the zoo program through :func:`evodisc.interpreter.step`
per parameter tensor (``w ← w − update``). Everything runs in float64 so that the comparison
measures the update rule, not rounding: in float32 the runs agree to ~2e-6 per tensor but only
to ~1e-2 elementwise on weights near zero. That includes torch's default dtype, in which some
references keep scalar state: ``torch.optim.NAdam`` keeps ``Π μ_i`` in a default-dtype scalar,
which in float32 alone puts it 1.2e-7 (elementwise) away from the program.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from lion_pytorch import Lion
from sklearn.datasets import load_digits

from evodisc.analysis import ignores_gradient
from evodisc.interpreter import compile_program, init_state, step
from evodisc.program import (
    Program,
    format_program,
    parse_program,
    program_from_json,
    program_to_json,
)
from search_spaces.zoo import load_known, zoo

STEPS = 100
BATCH = 64
# Agreement asked of the final parameters, elementwise, of every optimizer (no exceptions).
# Measured in float64 (max over tensors and elements): 0 for the sign-based rules and AdaBelief;
# |Δ| ≤ 1.4e-15 for all, relative ≤ 3.1e-12 except on weights near zero (4.7e-11, RMSprop),
# which ATOL covers; 30 steps at every gradient scale: relative ≤ 1.8e-13 (SGD). A 1e-4 relative
# change of Adam's eps moves the final weights by 1.1e-6 relative: caught (not at the old 1e-5).
RTOL = 1e-10
ATOL = 1e-12

# ------------------------------------------------------------------ paper references (plain torch)
# Each rule updates parameter ``p`` in place from gradient ``g``; ``s`` is its state dict (moments
# start at zero), ``t`` the 1-based step.

Rule = Callable[[torch.Tensor, torch.Tensor, dict, int, float], None]


def _zeros(s: dict, p: torch.Tensor, *names: str) -> list[torch.Tensor]:
    return [s.setdefault(n, torch.zeros_like(p)) for n in names]


def adabelief_rule(p, g, s, t, lr, b1=0.9, b2=0.999, eps=1e-16) -> None:
    """AdaBelief, Zhuang et al. 2020, Algorithm 2 (no weight decay, no rectification)."""
    m, v = _zeros(s, p, "m", "s")
    m.mul_(b1).add_((1 - b1) * g)  # m_t = β1 m + (1 − β1) g
    v.mul_(b2).add_((1 - b2) * (g - m) ** 2).add_(eps)  # s_t = β2 s + (1 − β2)(g − m_t)² + ε
    m_hat = m / (1 - b1**t)
    s_hat = v / (1 - b2**t)
    p.sub_(lr * m_hat / (torch.sqrt(s_hat) + eps))


def signsgd_rule(p, g, s, t, lr) -> None:
    """signSGD, Bernstein et al. 2018, Algorithm 1: x ← x − η·sign(g)."""
    p.sub_(lr * torch.sign(g))


def signum_rule(p, g, s, t, lr, beta=0.9) -> None:
    """Signum, Bernstein et al. 2018, Algorithm 3: m ← β m + (1 − β) g; x ← x − η·sign(m)."""
    (m,) = _zeros(s, p, "m")
    m.mul_(beta).add_((1 - beta) * g)
    p.sub_(lr * torch.sign(m))


def addsign_rule(p, g, s, t, lr, alpha=1.0, beta=0.9) -> None:
    """AddSign, Bello et al. 2017: Δ = (α + sign(g)·sign(m))·g with m the moving average of g."""
    (m,) = _zeros(s, p, "m")
    m.mul_(beta).add_((1 - beta) * g)
    p.sub_(lr * (alpha + torch.sign(g) * torch.sign(m)) * g)


def powersign_rule(p, g, s, t, lr, base=math.e, beta=0.9) -> None:
    """PowerSign, Bello et al. 2017: Δ = base^(sign(g)·sign(m))·g."""
    (m,) = _zeros(s, p, "m")
    m.mul_(beta).add_((1 - beta) * g)
    p.sub_(lr * torch.pow(base, torch.sign(g) * torch.sign(m)) * g)


def _caution(direction: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """C-Optim mask: 1 where the direction agrees with the gradient, over max(mean, 1e-3)."""
    mask = (direction * g > 0).to(g.dtype)
    return mask / mask.mean().clamp(min=1e-3)


def cautious_adamw_rule(p, g, s, t, lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.01) -> None:
    """C-AdamW, Liang et al. 2024 (AdamW whose first moment is masked; timm's form)."""
    m, v = _zeros(s, p, "m", "v")
    p.mul_(1 - lr * wd)
    m.mul_(b1).add_((1 - b1) * g)
    v.mul_(b2).add_((1 - b2) * g * g)
    denom = torch.sqrt(v) / math.sqrt(1 - b2**t) + eps
    p.sub_(lr / (1 - b1**t) * (m * _caution(m, g)) / denom)


def cautious_lion_rule(p, g, s, t, lr, b1=0.9, b2=0.99) -> None:
    """C-Lion, Liang et al. 2024: Lion's sign step masked where it disagrees with g."""
    (m,) = _zeros(s, p, "m")
    u = torch.sign(b1 * m + (1 - b1) * g)
    p.sub_(lr * u * _caution(u, g))
    m.mul_(b2).add_((1 - b2) * g)


class PaperOptimizer(torch.optim.Optimizer):
    """A torch optimizer that applies one of the rules above to each parameter."""

    def __init__(self, params, lr: float, rule: Rule):
        super().__init__(params, {"lr": lr})
        self.rule = rule

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["t"] = state.get("t", 0) + 1
                self.rule(p, p.grad, state, state["t"], group["lr"])


def _paper(rule: Rule) -> Callable:
    return lambda params, lr: PaperOptimizer(params, lr, rule)


# name → (learning rate, reference optimizer factory). Library references use their defaults,
# which are the hyper-parameters the zoo files claim to reproduce.
CASES: dict[str, tuple[float, Callable]] = {
    "sgd": (0.1, lambda ps, lr: torch.optim.SGD(ps, lr)),
    "momentum": (0.05, lambda ps, lr: torch.optim.SGD(ps, lr, momentum=0.9)),
    "nesterov": (0.05, lambda ps, lr: torch.optim.SGD(ps, lr, momentum=0.9, nesterov=True)),
    "adagrad": (0.05, lambda ps, lr: torch.optim.Adagrad(ps, lr)),
    "rmsprop": (1e-3, lambda ps, lr: torch.optim.RMSprop(ps, lr)),
    "adam": (1e-3, lambda ps, lr: torch.optim.Adam(ps, lr)),
    "adamw": (3e-3, lambda ps, lr: torch.optim.AdamW(ps, lr)),
    "amsgrad": (3e-3, lambda ps, lr: torch.optim.Adam(ps, lr, amsgrad=True)),
    "adadelta": (1.0, lambda ps, lr: torch.optim.Adadelta(ps, lr)),
    "adamax": (2e-3, lambda ps, lr: torch.optim.Adamax(ps, lr)),
    "nadam": (1e-3, lambda ps, lr: torch.optim.NAdam(ps, lr)),
    "lion": (3e-4, lambda ps, lr: Lion(ps, lr)),
    "adabelief": (1e-3, _paper(adabelief_rule)),
    "signsgd": (1e-3, _paper(signsgd_rule)),
    "signum": (1e-3, _paper(signum_rule)),
    "addsign": (0.05, _paper(addsign_rule)),
    "powersign": (0.05, _paper(powersign_rule)),
    "cautious_adamw": (3e-3, _paper(cautious_adamw_rule)),
    "cautious_lion": (3e-4, _paper(cautious_lion_rule)),
}

# ------------------------------------------------------------------------------ the training run


@pytest.fixture(autouse=True, scope="module")
def one_thread_float64():
    """Tiny tensors: torch's intra-op threads only add spin-waits on a busy 2-core machine.
    float64 as torch's default dtype: the references' scalar state (NAdam's ``Π μ_i``) too."""
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_num_threads(threads)
    torch.set_default_dtype(dtype)


@pytest.fixture(scope="module")
def task() -> tuple[torch.nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A 64-32-10 tanh MLP and 100 fixed mini-batches of the digits data, in float64."""
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float64)
    y = torch.tensor(digits.target)
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(STEPS):
        idx = torch.randint(0, len(x), (BATCH,), generator=gen)
        batches.append((x[idx], y[idx]))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
    return model.double(), batches


def _loss(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y)


def train_reference(model, batches, make_optimizer, lr) -> list[torch.Tensor]:
    """Train with a torch optimizer; return the final parameters."""
    model = copy.deepcopy(model)
    optimizer = make_optimizer(model.parameters(), lr)
    for batch in batches:
        optimizer.zero_grad()
        _loss(model, batch).backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


def train_program(model, batches, program: Program, lr, T=None) -> list[torch.Tensor]:
    """Train by applying ``program`` per parameter tensor (``T``: the horizon, where it reads
    it); return the final parameters."""
    model = copy.deepcopy(model)
    compiled = compile_program(program)
    params = list(model.parameters())
    states = [init_state(program, p.detach()) for p in params]
    for t, batch in enumerate(batches, start=1):
        model.zero_grad()
        _loss(model, batch).backward()
        with torch.no_grad():
            for i, p in enumerate(params):
                update, states[i] = step(compiled, p.detach(), p.grad, lr, t, states[i], T=T)
                p.sub_(update)
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("name", sorted(CASES))
def test_program_matches_reference_over_100_steps(name, task):
    model, batches = task
    lr, make_optimizer = CASES[name]
    expected = train_reference(model, batches, make_optimizer, lr)
    actual = train_program(model, batches, load_known(name), lr)
    initial = [p.detach() for p in model.parameters()]
    for got, want, start in zip(actual, expected, initial, strict=True):
        # The run must move the weights far more than the tolerance, or agreement means nothing.
        assert (want - start).norm() > 1e-3 * start.norm()
        torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)
    # And the reference must actually train the model.
    with torch.no_grad():
        trained = copy.deepcopy(model)
        for p, value in zip(trained.parameters(), expected, strict=True):
            p.copy_(value)
        assert _loss(trained, batches[-1]) < _loss(model, batches[-1])


def test_the_scheduled_adamw_of_the_docs_is_adamw_under_its_lambda_lr(task):
    """docs/zoo.md's example of a program reading the horizon T (warm-up, cosine decay) trains
    like torch.optim.AdamW under the LambdaLR schedule its docstring gives, with T = 100."""
    docs = (Path(__file__).parents[1] / "docs" / "zoo.md").read_text()
    (text,) = [b for b in re.findall(r"```python\n(.*?)```", docs, re.S) if "t, T," in b]
    program = parse_program(text)
    assert program.state == ("m", "v") and "T" in program.params

    def schedule(k: int) -> float:  # the docstring's f, for the 0-based step k
        return min((k + 1) / (0.05 * STEPS), 1) * (1 + math.cos(math.pi * (k + 1) / STEPS)) / 2

    model, batches = task
    reference = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(reference.parameters(), 3e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    for batch in batches:
        optimizer.zero_grad()
        _loss(reference, batch).backward()
        optimizer.step()
        scheduler.step()
    actual = train_program(model, batches, program, 3e-3, T=STEPS)
    initial = [p.detach() for p in model.parameters()]
    for got, want, start in zip(actual, reference.parameters(), initial, strict=True):
        assert (want - start).norm() > 1e-3 * start.norm()
        torch.testing.assert_close(got, want.detach(), rtol=RTOL, atol=ATOL)
    unscheduled = train_program(model, batches, load_known("adamw"), 3e-3)
    assert not torch.allclose(unscheduled[0], actual[0])


def _scaled_tensor_run(name: str, steps: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Final weights from the reference and from the program on one tensor whose elements each
    have their own magnitude, from 1e-12 to 1e2, so that every eps of the rule matters
    (on the digits task the gradients are far above every eps)."""
    gen = torch.Generator().manual_seed(1)
    scale = 10.0 ** (14 * torch.rand(8, 128, generator=gen, dtype=torch.float64) - 12)
    w0 = scale * torch.randn(scale.shape, generator=gen, dtype=torch.float64)
    grads = [
        scale * (0.5 + torch.randn(scale.shape, generator=gen, dtype=torch.float64))
        for _ in range(steps)
    ]
    lr, make_optimizer = CASES[name]

    param = torch.nn.Parameter(w0.clone())
    optimizer = make_optimizer([param], lr)
    for g in grads:
        param.grad = g.clone()
        optimizer.step()

    program = load_known(name)
    compiled, w, state = compile_program(program), w0.clone(), init_state(program, w0)
    for t, g in enumerate(grads, start=1):
        update, state = step(compiled, w, g, lr, t, state)
        w = w - update
    return w, param.detach()


@pytest.mark.parametrize("name", sorted(CASES))
def test_program_matches_reference_at_every_gradient_scale(name):
    actual, expected = _scaled_tensor_run(name)
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=0.0)


@pytest.mark.parametrize("name", ["cautious_adamw", "cautious_lion"])
def test_masked_programs_reduce_each_stacked_model_on_its_own(name):
    """Evaluators stack many models along a batch dimension: the per-tensor mean of the caution
    mask must then be taken per model, giving the same steps as separate runs."""
    program = load_known(name)
    compiled = compile_program(program)
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(2, 16, 8, generator=gen, dtype=torch.float64)
    lr = torch.tensor([1e-3, 3e-2], dtype=torch.float64)
    batched, alone = init_state(program, w), [init_state(program, w[i]) for i in range(2)]
    for t in range(1, 6):
        g = torch.randn(w.shape, generator=gen, dtype=torch.float64)
        update, batched = step(compiled, w, g, lr, t, batched, batch_dims=1)
        for i in range(2):
            single, alone[i] = step(compiled, w[i], g[i], lr[i].item(), t, alone[i])
            torch.testing.assert_close(update[i], single, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("name", sorted(zoo()))
def test_numpy_backend_agrees_with_torch(name):
    """Functional hashing runs programs on NumPy: the zoo must mean the same thing there."""
    program = load_known(name)
    on_torch, on_numpy = compile_program(program), compile_program(program, backend="numpy")
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 5))
    state_t, state_n = init_state(program, torch.from_numpy(w)), init_state(program, w)
    for t in range(1, 4):
        g = rng.standard_normal(w.shape)
        update_t, state_t = step(
            on_torch, torch.from_numpy(w), torch.from_numpy(g), 0.01, t, state_t
        )
        update_n, state_n = step(on_numpy, w, g, 0.01, t, state_n)
        np.testing.assert_allclose(update_n, update_t.numpy(), rtol=1e-12, atol=1e-15)
        w = w - update_n


# ------------------------------------------------------------------------------ the files


def test_zoo_lists_the_known_optimizers():
    entries = zoo()
    assert len(entries) >= 14
    assert {"sgd", "adam", "adamw", "lion", "cautious_lion"} <= set(entries)
    # Every optimizer in the zoo has a numeric check against a reference above.
    assert set(entries) == set(CASES)


@pytest.mark.parametrize("name", sorted(zoo()))
def test_file_parses_round_trips_and_uses_the_gradient(name):
    entry = zoo()[name]
    program = entry.load()
    again = parse_program(format_program(program))
    assert again == program
    assert parse_program(format_program(again)) == again
    assert program_from_json(program_to_json(program)) == program
    assert not ignores_gradient(program)
    assert "g" in program.params
    # The summary names the optimizer and what it reproduces.
    assert len(entry.description) > 40


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="known: .*adamw"):
        load_known("no_such_optimizer")


def test_discovered_rules_are_known_by_name_but_kept_apart_from_the_published_zoo(
    tmp_path, monkeypatch, capsys
):
    import search_spaces.zoo as zoo_module
    from evodisc.app.cli import main
    from search_spaces.evolution import EvolutionConfig
    from search_spaces.zoo import discovered, known, resolve_program

    rule = '"""A rule found by a test campaign.\n\nMore about it."""\n\n\n'
    rule += "def train(g, lr, m):\n    m = interp(g, m, 0.8)\n    return lr * sign(m), m\n"
    (tmp_path / "signed_ema.py").write_text(rule)
    monkeypatch.setattr(zoo_module, "DISCOVERED_DIR", tmp_path)
    assert list(discovered()) == ["discovered_signed_ema"]
    assert "discovered_signed_ema" not in zoo()  # never a baseline a discovery is compared with
    assert set(known()) == set(zoo()) | {"discovered_signed_ema"}
    program = resolve_program("discovered_signed_ema")
    assert program == load_known("discovered_signed_ema")
    assert EvolutionConfig(warm_start=("discovered_signed_ema",)).warm_start  # a warm start
    assert main(["zoo"]) == 0
    listing = capsys.readouterr().out
    published, found = listing.split("discovered by evodisc")
    assert "adamw" in published and "discovered_signed_ema" not in published
    assert "discovered_signed_ema" in found and "A rule found by a test campaign." in found
    out = tmp_path / "opt.py"
    assert main(["export", "discovered_signed_ema", "--name", "SignedEma", "-o", str(out)]) == 0
    source = out.read_text()
    assert "class SignedEma(ProgramOptimizer)" in source and '"beta": 0.8' in source


def _make_exported(exported, horizon: dict, params, lr) -> torch.optim.Optimizer:
    return exported(params, lr=lr, **horizon)


def test_every_kept_discovered_rule_is_documented_replays_and_exports_by_name(task):
    """The rules docs/discoveries.md keeps: each file says where it came from and how it fared,
    replays by its name, and its exported torch.optim.Optimizer trains as the interpreter
    does."""
    from evodisc import replay, to_torch_optimizer
    from search_spaces.zoo import discovered

    kept = discovered()
    assert kept, "docs/discoveries.md keeps its rules in search_spaces/zoo/discovered/"
    model, batches = task
    for name, entry in kept.items():
        text = entry.path.read_text()
        for word in ("campaign", "budget", "fitness", "held-out"):
            assert word in text, f"{name}: its docstring says nothing of its {word}"
        (row,) = replay(name, "ill_conditioned", lrs=(1e-2,), extend=False).rows
        assert math.isfinite(row.metric) and row.best_lr == 1e-2
        program = load_known(name)
        horizon = {"total_steps": len(batches)} if "T" in program.params else {}
        exported = to_torch_optimizer(program)
        expected = train_program(model, batches, program, 1e-3, T=len(batches))
        make = functools.partial(_make_exported, exported, horizon)
        actual = train_reference(model, batches, make, 1e-3)
        for got, want in zip(actual, expected, strict=True):
            torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)
