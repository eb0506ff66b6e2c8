"""Export: the interpreter-backed optimizer class and the standalone torch source behave like real
``torch.optim`` optimizers (training, param groups, state dicts, lr schedulers) and agree with each
other and with torch's own AdamW."""

from __future__ import annotations

import ast
import importlib.util
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from evodisc import to_torch_optimizer, torch_source
from evodisc.app.cli import main
from evodisc.export import class_name_from_path, state_keys
from evodisc.interpreter import compile_program, init_state, step
from evodisc.program import Program, parse_program
from fitness.device import available_devices
from search_spaces.zoo import load_known, zoo

LION = """
def train(g, lr, m):
    update = sign(interp(g, m, 0.9))
    m = interp(g, m, 0.99)
    return lr * update, m
"""

SIGN_SGD = """
def train(g, lr):
    return lr * sign(g)
"""

# Every awkward corner of code generation: names that clash with the generated code (torch, a slot
# called step), a reassigned w, dead code, Python-number arithmetic that must follow IEEE (lr / t,
# t ** 0.5, 1 / 0), a primitive applied to a constant, reductions, slots that alias g, a reduced
# slot and a constant (infinite) slot.
TRICKY = """
def train(w, g, lr, t, m, step, n, k):
    torch = clip(g, 1.0)
    w = w * 0.5
    junk = log(g - 100)
    decay = sqrt(lr / t) + t ** 0.5 + minimum(cube(g), 0.5) + 0 * n
    m = interp(torch, m, 0.9)
    s = m / (rms(m) + 1e-8) + mean(g) * 0.01 + norm(w) * 1e-3 + maximum(n, k * 0)
    u = lr * s + lr * 0.001 * w + decay * 1e-6 * g
    step = g
    n = norm(g)
    k = 1 / (t - t)
    return u, m, step, n, k
"""


# ------------------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: torch's thread pool only adds contention when pytest-xdist runs in parallel."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def import_source(source: str, directory: Path, module: str = "exported") -> object:
    """Write ``source`` to ``directory`` and import it from there."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{module}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(module, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def imported_modules(source: str) -> set[str]:
    tree = ast.parse(source)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


def digits(dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    return torch.tensor(x / 16.0, dtype=dtype), torch.tensor(y)


def mlp(dtype=torch.float32, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10)]
    return torch.nn.Sequential(*layers).to(dtype)


def train(model, opt, steps: int, data, batch: int = 128, start: int = 0) -> list[float]:
    """Fixed mini-batches (batch i uses rows i*batch…); returns the losses."""
    x, y = data
    losses = []
    for i in range(start, start + steps):
        rows = torch.arange(i * batch, (i + 1) * batch) % len(x)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[rows]), y[rows])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def both_classes(program: Program, tmp_path: Path) -> list[type[torch.optim.Optimizer]]:
    """The interpreter-backed class and the class from the generated source."""
    module = import_source(torch_source(program, class_name="Exported"), tmp_path)
    return [to_torch_optimizer(program, name="Exported"), module.Exported]


def assert_same_tensors(a, b, **tol) -> None:
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, equal_nan=True, **tol)


# --------------------------------------------------------------------------------------- tests


def test_exported_optimizer_trains_an_mlp_on_digits(tmp_path):
    data = digits()
    for cls in both_classes(parse_program(LION), tmp_path):
        model = mlp()
        opt = cls(model.parameters(), lr=3e-3)
        assert isinstance(opt, torch.optim.Optimizer)
        losses = train(model, opt, 60, data)
        assert losses[-1] < 0.35 * losses[0], (cls, losses[0], losses[-1])
        # step(closure) evaluates the closure with gradients on and returns its loss.
        x, y = data

        def closure(model=model, opt=opt, x=x, y=y):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[:64]), y[:64])
            loss.backward()
            return loss

        assert isinstance(opt.step(closure).item(), float)


def test_exported_adamw_matches_torch_adamw(tmp_path):
    data = digits()
    reference = mlp()
    torch_opt = torch.optim.AdamW(
        reference.parameters(), lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01
    )
    train(reference, torch_opt, 60, data)
    for cls in both_classes(load_known("adamw"), tmp_path):
        model = mlp()
        train(model, cls(model.parameters(), lr=1e-2), 60, data)
        assert_same_tensors(model.parameters(), reference.parameters(), rtol=1e-5, atol=1e-6)
        # and the state is laid out like torch's: step counter plus one tensor per slot
        state = cls(model.parameters()).state_dict()  # empty before a step
        assert state["state"] == {} and state["param_groups"][0]["lr"] == 1e-3


@pytest.mark.parametrize("text", [LION, TRICKY], ids=["lion", "tricky"])
def test_generated_source_imports_only_torch_and_matches_the_interpreter(text, tmp_path):
    program = parse_program(text)
    source = torch_source(program)
    assert imported_modules(source) <= {"torch", "math"}
    assert "evodisc" not in source.replace("exported by evodisc", "")
    assert "def train(" in source  # the program text is in the class docstring
    runtime, generated = both_classes(program, tmp_path)
    params = [torch.randn(5, 3, generator=torch.Generator().manual_seed(0)), torch.randn(4)]
    results = []
    for cls in (runtime, generated):
        ps = [torch.nn.Parameter(p.clone()) for p in params]
        opt = cls(ps, lr=0.05)
        gen = torch.Generator().manual_seed(1)
        for _ in range(25):
            for p in ps:
                p.grad = torch.randn(p.shape, generator=gen) + p.detach()
            opt.step()
        results.append((ps, opt))
    (ps_a, opt_a), (ps_b, opt_b) = results
    assert_same_tensors(ps_a, ps_b, rtol=1e-6, atol=1e-7)
    for pa, pb in zip(ps_a, ps_b, strict=True):
        sa, sb = opt_a.state[pa], opt_b.state[pb]
        assert sa.keys() == sb.keys() == {"step", *state_keys(program)}
        assert sa["step"] == sb["step"] == 25
        assert_same_tensors([sa[k] for k in sa if k != "step"], [sb[k] for k in sa if k != "step"])
        for key in sa:
            if key != "step":
                assert sa[key].shape == pa.shape and sa[key].dtype == pa.dtype


def test_every_zoo_optimizer_exports_to_source_that_matches_the_interpreter(tmp_path):
    start = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(3, 4)
    for name, entry in zoo().items():
        runtime, generated = both_classes(entry.load(), tmp_path / name)
        finals = []
        for cls in (runtime, generated):
            p = torch.nn.Parameter(start.clone())
            opt = cls([p], lr=0.01)
            gen = torch.Generator().manual_seed(0)
            for _ in range(10):
                p.grad = torch.randn(3, 4, generator=gen, dtype=torch.float64)
                opt.step()
            finals.append(p.detach())
        assert not torch.equal(finals[0], start), name
        torch.testing.assert_close(finals[0], finals[1], rtol=1e-12, atol=1e-14, msg=name)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("lion.py", "Lion"),
        ("cautious_adamw", "CautiousAdamw"),
        ("none.py", "NoneOptimizer"),
        ("true.py", "TrueOptimizer"),
        ("torch.py", "Torch"),
        ("2x.py", "Optimizer2x"),
    ],
)
def test_class_names_from_file_names_are_valid_python(path, name):
    assert class_name_from_path(path) == name


def test_generated_source_names_the_class_and_keeps_program_names():
    source = torch_source(load_known("adamw"), class_name="MyAdamW")
    assert "class MyAdamW(torch.optim.Optimizer):" in source
    assert "    mhat = m / (1 - 0.9 ** t)\n" in source
    assert "def _interp(" in source and "def _norm(" not in source  # helpers only when used
    assert "class EvolvedOptimizer(" in torch_source(parse_program(SIGN_SGD))
    with pytest.raises(ValueError, match="cannot be a class name"):
        torch_source(load_known("adamw"), class_name="not valid")


def test_param_groups_use_their_own_learning_rates(tmp_path):
    program = parse_program(LION)
    start = [torch.randn(3, 3, generator=torch.Generator().manual_seed(2)), torch.randn(6)]
    grads = [[torch.randn(p.shape) for p in start] for _ in range(5)]

    def run(cls, groups: Callable[[list], list]) -> list[torch.Tensor]:
        ps = [torch.nn.Parameter(p.clone()) for p in start]
        opt = cls(groups(ps), lr=1.0)
        for step_grads in grads:
            for p, g in zip(ps, step_grads, strict=True):
                p.grad = g.clone()
            opt.step()
        return [p.detach() for p in ps]

    for cls in both_classes(program, tmp_path):
        grouped = run(cls, lambda ps: [{"params": [ps[0]], "lr": 0.1}, {"params": [ps[1]]}])
        only_first = run(cls, lambda ps: [{"params": ps, "lr": 0.1}])
        only_second = run(cls, lambda ps: [{"params": ps, "lr": 1.0}])
        assert torch.equal(grouped[0], only_first[0])
        assert torch.equal(grouped[1], only_second[1])
        assert not torch.equal(grouped[1], only_first[1])


def test_state_dict_round_trip_resumes_identically(tmp_path):
    data = digits()
    runtime, generated = both_classes(load_known("adamw"), tmp_path)
    model = mlp()
    opt = runtime(model.parameters(), lr=1e-2)
    train(model, opt, 10, data)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    saved = buffer.getvalue()
    train(model, opt, 10, data, start=10)
    expected = [p.detach().clone() for p in model.parameters()]
    # Resume in a fresh process-like setting, with either class (their state dicts agree).
    for cls in (runtime, generated):
        checkpoint = torch.load(io.BytesIO(saved))
        resumed = mlp(seed=123)
        resumed.load_state_dict(checkpoint["model"])
        resumed_opt = cls(resumed.parameters(), lr=0.5)
        resumed_opt.load_state_dict(checkpoint["opt"])
        assert resumed_opt.param_groups[0]["lr"] == 1e-2
        train(resumed, resumed_opt, 10, data, start=10)
        for p, q in zip(resumed.parameters(), expected, strict=True):
            assert torch.equal(p.detach(), q), cls


def test_lr_scheduler_changes_the_update(tmp_path):
    for cls in both_classes(parse_program(SIGN_SGD), tmp_path):
        p = torch.nn.Parameter(torch.zeros(8, dtype=torch.float64))
        opt = cls([p], lr=0.1)
        scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.1)
        sizes = []
        for _ in range(7):
            before = p.detach().clone()
            p.grad = torch.linspace(-1, 1, 8, dtype=torch.float64) + 0.01
            opt.step()
            scheduler.step()
            sizes.append((before - p.detach()).abs().max().item())
        assert sizes == pytest.approx([0.1] * 3 + [0.01] * 3 + [0.001], rel=1e-12)


def test_params_without_grad_are_skipped_and_sparse_grads_rejected(tmp_path):
    for cls in both_classes(parse_program(LION), tmp_path):
        used, unused = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
        opt = cls([used, unused], lr=0.1)
        used.grad = torch.ones(3)
        opt.step()
        assert torch.equal(unused.detach(), torch.ones(3)) and unused not in opt.state
        assert torch.allclose(used.detach(), torch.full((3,), 0.9))
        assert set(opt.state[used]) == {"step", "m"}

        embedding = torch.nn.Embedding(10, 4, sparse=True)
        sparse_opt = cls(embedding.parameters(), lr=0.1)
        embedding(torch.tensor([1, 2])).sum().backward()
        with pytest.raises(RuntimeError, match="Exported does not support sparse gradients"):
            sparse_opt.step()
        with pytest.raises(ValueError, match="Invalid learning rate"):
            cls([used], lr=-1.0)
    with pytest.raises(TypeError, match="expected a Program"):
        to_torch_optimizer(LION)


def test_cli_export_writes_an_optimizer_that_imports_and_steps(tmp_path, capsys):
    out = tmp_path / "adamw_export.py"
    assert main(["export", "adamw", "--to", "torch", "-o", str(out)]) == 0
    module = import_source(out.read_text(), tmp_path, "adamw_export")
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    train(model, module.Adamw(model.parameters(), lr=1e-2), 1, digits())
    after = [p.detach() for p in model.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(after, before, strict=True))

    rule = tmp_path / "my_sign_rule.py"
    rule.write_text(SIGN_SGD)
    capsys.readouterr()
    assert main(["export", str(rule)]) == 0
    assert "class MySignRule(torch.optim.Optimizer):" in capsys.readouterr().out

    assert main(["export", "adamw", "--name", "1bad"]) == 2
    assert main(["export", "adamw", "-o", str(tmp_path / "missing" / "x.py")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--name" in err[0] and "cannot write" in err[1]


def test_a_slot_that_keeps_g_is_a_copy_not_the_gradient_itself(tmp_path):
    # The update uses the previous gradient; gradients are written in place, as accumulation does.
    program = parse_program("def train(g, lr, prev):\n    return lr * prev, g\n")
    for cls in both_classes(program, tmp_path):
        p = torch.nn.Parameter(torch.zeros(3))
        opt = cls([p], lr=1.0)
        p.grad = torch.ones(3)
        opt.step()  # prev was 0: no move
        p.grad.copy_(torch.full((3,), 5.0))
        opt.step()  # moves by the first gradient, 1
        assert torch.equal(p.detach(), torch.full((3,), -1.0)), cls


@pytest.mark.parametrize("device", [str(d) for d in available_devices()])
def test_exported_optimizers_agree_with_the_numpy_interpreter_on_every_device(device, tmp_path):
    """Both classes, on each device present (CUDA where there is one), follow the NumPy-backend
    interpreter: lr and t scalars, constants and reductions all work on the parameter's device."""
    start = np.linspace(-1, 1, 12).reshape(3, 4)
    grads = np.random.default_rng(0).normal(size=(10, 3, 4))
    programs = {name: entry.load() for name, entry in zoo().items()}
    programs["tricky"] = parse_program(TRICKY)
    for name, program in programs.items():
        compiled, w = compile_program(program, "numpy"), start.copy()
        state = init_state(program, w)
        for t, g in enumerate(grads, start=1):
            update, state = step(compiled, w, g, 0.01, t, state)
            w = w - update
        for cls in both_classes(program, tmp_path / name):
            p = torch.nn.Parameter(torch.tensor(start, device=device))
            opt = cls([p], lr=0.01)
            for g in grads:
                p.grad = torch.tensor(g, device=device)
                opt.step()
            assert p.device.type == torch.device(device).type
            np.testing.assert_allclose(
                p.detach().cpu().numpy(), w, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name
            )
