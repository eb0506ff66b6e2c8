"""Export: the optimizer class and the standalone torch source behave like real ``torch.optim``
optimizers (training, param groups, state dicts, lr schedulers), agree with each other bit for
bit, with the interpreter up to rounding, and with torch.optim / lion-pytorch in float64 as
tightly as the zoo programs do (tests/test_zoo.py); their multi-tensor plans allocate no more
temporaries than torch.optim's foreach AdamW."""

from __future__ import annotations

import ast
import copy
import importlib.util
import io
import pickle
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from evodisc import to_torch_optimizer, torch_source
from evodisc.app.cli import main
from evodisc.export import class_name_from_path, named_constants, state_keys
from evodisc.interpreter import compile_program, init_state, step
from evodisc.lowering import lower
from evodisc.program import (
    RESERVED_INPUTS,
    Assign,
    Call,
    Const,
    Program,
    format_program,
    parse_program,
)
from fitness.device import available_devices
from search_spaces.space import DEFAULT_SPACE, ProgramSpace, random_program
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

# Number arithmetic (lr, t, constants: Python floats, or float64 tensors where Python would raise
# or torch needs a tensor), primitives without a foreach form, lists of 0-dim reductions mixed
# with tensors, and sums that fold into add/addcmul/addcdiv.
NUMBERS = """
def train(w, g, lr, t, m, n):
    lr = lr * 0.5 + sqrt(lr) * 0.001
    k = t ** 0.5 + exp(-t) + clip(lr, t) + maximum(lr, 0.5) + sign(lr - 0.5)
    k = k + minimum(1 / (t - t), 5)
    a = relu(g) + arcsinh(m) + clip(g, m) + minimum(g, 0.1) + maximum(norm(g), m)
    b = cube(g) * 0.1 + 2 ** sign(g) + 0.5 / (abs(g) + 1) + (1 - abs(m)) ** 2 - 3 * lr
    m = interp(a, m, 0.9) / (rms(m) + 1)
    n = mean(g) * lr + n * 0.5 - clip(m, 0.5) * g / (abs(n) + 1)
    return lr * (a + b) * 0.01 + k * 1e-3 * g + lr * n + 1e-4 * w, m, n
"""

# Reads the run's horizon T: a warm-up and a cosine decay (numbers), T in tensor arithmetic, in a
# primitive without a foreach form, beside a reduction and as a power's exponent.
SCHEDULED = """
def train(w, g, lr, t, T, m):
    m = interp(g, m, 0.9)
    warm = minimum(t / (0.1 * T), 1)
    cosine = 0.5 * (1 + cos(3.141592653589793 * t / T))
    decay = 0.01 * (1 - t / T) * w + clip(g, T * 0.001) * 0.9 ** T
    return lr * (warm * cosine * m / (rms(m) + 1e-8) + decay + arctan(g * T) * 0.001), m
"""

# A helper function that only a number calls: the source defines it all the same.
NUMBER_HELPER = """
def train(g, lr, t):
    return clip(lr, t * 0.001) * g
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


@pytest.mark.parametrize(
    "text",
    [LION, TRICKY, NUMBERS, NUMBER_HELPER, SCHEDULED],
    ids=["lion", "tricky", "numbers", "helper", "scheduled"],
)
def test_generated_source_imports_only_torch_and_equals_the_class(text, tmp_path):
    program = parse_program(text)
    source = torch_source(program)
    assert imported_modules(source) <= {"torch", "math"}
    assert "evodisc" not in source.replace("exported by evodisc", "")
    assert "def train(" in source  # the program text is in the class docstring
    runtime, generated = both_classes(program, tmp_path)
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(5, 3, generator=gen), torch.randn(4, generator=gen), torch.tensor(0.3)]
    results = []
    for cls in (runtime, generated):
        ps = [torch.nn.Parameter(p.clone()) for p in params]
        opt = cls(ps, lr=0.05, total_steps=25)  # T: only SCHEDULED reads it
        gen = torch.Generator().manual_seed(1)
        for _ in range(25):
            for p in ps:
                p.grad = torch.randn(p.shape, generator=gen) + p.detach()
            opt.step()
        results.append((ps, opt))
    (ps_a, opt_a), (ps_b, opt_b) = results
    assert_same_tensors(ps_a, ps_b, rtol=0, atol=0)  # the same torch calls: bit for bit
    for pa, pb in zip(ps_a, ps_b, strict=True):
        sa, sb = opt_a.state[pa], opt_b.state[pb]
        assert sa.keys() == sb.keys() == {"step", *state_keys(program)}
        assert sa["step"] == sb["step"] == 25
        same = [sa[k] for k in sa if k != "step"], [sb[k] for k in sa if k != "step"]
        assert_same_tensors(*same, rtol=0, atol=0)
        for key in sa:
            if key != "step":
                assert sa[key].shape == pa.shape and sa[key].dtype == pa.dtype


#: The weights that :func:`exported_and_interpreted` starts from.
START = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(3, 4)


def exported_and_interpreted(
    program: Program,
    grads: list[torch.Tensor],
    tmp_path: Path,
    start: torch.Tensor = START,
    lr: float = 0.01,
    total_steps: int | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor, list[torch.optim.Optimizer]]:
    """The weights after one step per gradient at ``lr`` from ``start``: by each exported class
    (:func:`both_classes`), and by the interpreter; and the exported optimizers. ``total_steps``
    is the horizon ``T``."""
    compiled, w, state = compile_program(program), start.clone(), init_state(program, start)
    for t, g in enumerate(grads, start=1):
        update, state = step(compiled, w, g, lr, t, state, T=total_steps)
        w = w - update
    finals, optimizers = [], []
    for cls in both_classes(program, tmp_path):
        p = torch.nn.Parameter(start.clone())
        opt = cls([p], lr=lr, total_steps=total_steps)
        for g in grads:
            p.grad = g.clone()
            opt.step()
        finals.append(p.detach())
        optimizers.append(opt)
    return finals, w, optimizers


def test_every_zoo_optimizer_exports_to_code_that_matches_the_interpreter(tmp_path):
    for name, entry in zoo().items():
        gen = torch.Generator().manual_seed(0)
        grads = [torch.randn(3, 4, generator=gen, dtype=torch.float64) for _ in range(10)]
        finals, w, _ = exported_and_interpreted(entry.load(), grads, tmp_path / name)
        assert not torch.equal(finals[0], START), name
        assert torch.equal(finals[0], finals[1]), name
        torch.testing.assert_close(finals[0], w, rtol=1e-12, atol=1e-14, msg=name)


def test_a_rule_reading_T_takes_total_steps_and_matches_the_interpreter(tmp_path):
    program = parse_program(SCHEDULED)
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 4, generator=gen, dtype=torch.float64) for _ in range(10)]
    finals, w, optimizers = exported_and_interpreted(program, grads, tmp_path, total_steps=10)
    assert torch.equal(finals[0], finals[1])
    torch.testing.assert_close(finals[0], w, rtol=1e-12, atol=1e-14)
    longer, w_longer, _ = exported_and_interpreted(program, grads, tmp_path, total_steps=40)
    torch.testing.assert_close(longer[0], w_longer, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(longer[0], finals[0])  # T reaches the update
    source = torch_source(program)
    assert "def _update(w, g, lr, t, T, " in source and "reads_horizon = True" in source
    assert "``total_steps`` (required)" in source
    for cls, opt in zip(both_classes(program, tmp_path / "again"), optimizers, strict=True):
        assert opt.total_steps == 10 and cls.reads_horizon
        p = opt.param_groups[0]["params"][0]
        before = p.detach().clone()
        with pytest.raises(ValueError, match=r"step 11 is past total_steps=10 \(its update rule"):
            opt.step()  # the eleventh step of a ten-step run
        assert torch.equal(p.detach(), before) and opt.state[p]["step"] == 10
        with pytest.raises(TypeError, match=r"Exported\(\) needs total_steps, the number of"):
            cls([torch.nn.Parameter(START.clone())], lr=0.01)
        for bad in (0, -3, 2.5, True, float("inf"), "ten"):
            with pytest.raises(ValueError, match="Invalid total_steps value"):
                cls([torch.nn.Parameter(START.clone())], total_steps=bad)
        assert cls([torch.nn.Parameter(START.clone())], total_steps=10.0).total_steps == 10


def test_total_steps_is_optional_where_the_rule_does_not_read_T(tmp_path):
    """Where T reaches nothing the plan computes (the rule does not take it, or only a dead
    statement reads it), the class needs no total_steps; given one, it ignores it."""
    unread = parse_program("def train(g, lr, t, T):\n    junk = g * T\n    return lr * sign(g)\n")
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 4, generator=gen, dtype=torch.float64) for _ in range(5)]
    for program in (parse_program(SIGN_SGD), unread):
        assert "T" not in lower(program).parameters
        plain, _, _ = exported_and_interpreted(program, grads, tmp_path / "plain", total_steps=5)
        for cls in both_classes(program, tmp_path):
            assert not cls.reads_horizon
            for total_steps in (None, 3):  # not even a step past it is an error
                p = torch.nn.Parameter(START.clone())
                opt = cls([p], lr=0.01, total_steps=total_steps)
                for g in grads:
                    p.grad = g.clone()
                    opt.step()
                assert torch.equal(p.detach(), plain[0])


# The references of tests/test_zoo.py that are libraries, at their defaults (the zoo files).
REFERENCES = {
    "adamw": (3e-3, lambda ps, lr: torch.optim.AdamW(ps, lr)),
    "adam": (1e-3, lambda ps, lr: torch.optim.Adam(ps, lr)),
    "nadam": (1e-3, lambda ps, lr: torch.optim.NAdam(ps, lr)),
    "rmsprop": (1e-3, lambda ps, lr: torch.optim.RMSprop(ps, lr)),
    "nesterov": (0.05, lambda ps, lr: torch.optim.SGD(ps, lr, momentum=0.9, nesterov=True)),
    "lion": (3e-4, lambda ps, lr: pytest.importorskip("lion_pytorch").Lion(ps, lr)),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_exported_optimizers_match_torch_and_lion_pytorch_in_float64(name, tmp_path):
    """As tight as tests/test_zoo.py asks of the programs (rtol 1e-10): 100 steps of the digits
    MLP, and 30 steps on a tensor whose elements span 1e-12…1e2 (every eps matters)."""
    lr, make = REFERENCES[name]
    x, y = digits(torch.float64)
    gen = torch.Generator().manual_seed(3)
    scale = 10.0 ** (14 * torch.rand(8, 128, generator=gen, dtype=torch.float64) - 12)
    w0 = scale * torch.randn(scale.shape, generator=gen, dtype=torch.float64)
    grads = [scale * (0.5 + torch.randn(scale.shape, generator=gen, dtype=torch.float64))]
    grads *= 30

    start = mlp(torch.float64)

    def run(cls) -> list[torch.Tensor]:
        model = copy.deepcopy(start)
        opt = cls(model.parameters(), lr)
        train(model, opt, 100, (x, y), batch=64)
        param = torch.nn.Parameter(w0.clone())
        opt = cls([param], lr)
        for g in grads:
            param.grad = g.clone()
            opt.step()
        return [*model.parameters(), param]

    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # NAdam keeps Π μ_i in the default dtype (test_zoo)
    try:
        expected = run(make)
    finally:
        torch.set_default_dtype(dtype)
    for cls in both_classes(load_known(name), tmp_path):
        assert_same_tensors(run(cls), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "space, count",
    [(DEFAULT_SPACE, 200), (ProgramSpace(inputs=RESERVED_INPUTS), 100)],
    ids=["default", "reading-T"],
)
def test_random_programs_step_like_the_interpreter(space, count):
    """200 random programs (the search space's; 100 more that may read the horizon T), three
    steps each from the interpreter's own states: the plan computes the same update and state
    up to rounding, whatever it folds, fuses or updates in place. (Compared step by step: over
    many steps, chaotic programs turn rounding differences into anything.)"""
    rng = random.Random(5)
    gen = torch.Generator().manual_seed(5)
    shapes = [(3, 4), (5,)]
    for _ in range(count):
        program = random_program(rng, space)
        compiled, plan = compile_program(program), lower(program)
        horizon = (7,) if plan.reads_horizon else ()
        w = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
        states = [init_state(program, x) for x in w]
        for t in (1, 2, 3):
            g = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
            expected = [step(compiled, w[i], g[i], 0.01, t, states[i], T=7) for i in range(2)]
            w_plan = [x.clone() for x in w]
            slots = [[states[i][k].clone() for i in range(2)] for k in range(len(program.state))]
            slots = plan.run(w_plan, [x.clone() for x in g], 0.01, t, *horizon, *slots)
            for i in range(2):
                update, new_state = expected[i]
                got = [w_plan[i], *[s[i] for s in slots]]
                for a, b in zip(got, [w[i] - update, *new_state], strict=True):
                    torch.testing.assert_close(
                        a, b, rtol=1e-9, atol=1e-12, equal_nan=True, msg=format_program(program)
                    )
            w = [w[i] - expected[i][0] for i in range(2)]
            states = [expected[i][1] for i in range(2)]


def test_plans_allocate_no_more_temporaries_than_torch_foreach_adamw():
    """torch.optim's foreach AdamW allocates one list of temporaries per step (for the
    denominator) and updates its state and the weights in place; so do the plans of AdamW and
    Lion (Lion's sign(interp(g, m, 0.9)) needs its own buffer, as in lion-pytorch)."""
    for name in ("adamw", "lion", "adam"):
        plan = lower(load_known(name))
        allocating = [s for s in plan.steps if s.out is not None and s.text != "{0}"]
        assert len(allocating) == 1, (name, plan.source())
        assert plan.outputs == plan.slots  # new state: the same tensors, updated in place
    source = "\n".join(lower(load_known("adamw")).source())
    assert "torch._foreach_addcdiv_(w, m, tmp, value=-(lr / (1 - 0.9 ** t)))" in source
    assert "torch._foreach_mul_(w, 1 - 0.01 * lr)" in source  # decoupled weight decay


def test_chunks_and_step_counts_do_not_change_the_result():
    """Parameters are updated in cache-sized chunks on CPU and grouped by step count (a
    parameter without a gradient for a while has its own): the result is the interpreter's,
    tensor by tensor, with each tensor's own step number."""
    program = load_known("adamw")
    compiled = compile_program(program)
    gen = torch.Generator().manual_seed(4)
    start = [torch.randn(40, 30, generator=gen, dtype=torch.float64) for _ in range(5)]
    grads = [[torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in start]] * 6
    skipped = {(0, 1), (1, 1), (2, 3)}  # (step, parameter) without a gradient
    w, states, counts = [p.clone() for p in start], [init_state(program, p) for p in start], [0] * 5
    for k, gs in enumerate(grads):
        for i, g in enumerate(gs):
            if (k, i) not in skipped:
                counts[i] += 1
                update, states[i] = step(compiled, w[i], g, 0.01, counts[i], states[i])
                w[i] = w[i] - update
    cls = to_torch_optimizer(program)
    cls.chunk_bytes = 20_000  # 2 tensors of 9,600 bytes a chunk
    ps = [torch.nn.Parameter(p.clone()) for p in start]
    opt = cls(ps, lr=0.01)
    assert [len(c) for c in opt._chunks(ps, torch.device("cpu"))] == [2, 2, 1]
    for k, gs in enumerate(grads):
        for i, (p, g) in enumerate(zip(ps, gs, strict=True)):
            p.grad = None if (k, i) in skipped else g.clone()
        opt.step()
    assert [opt.state[p]["step"] for p in ps] == counts == [6, 4, 6, 5, 6]
    assert_same_tensors(ps, w, rtol=1e-12, atol=1e-15)


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
    assert "class MyAdamW(ProgramOptimizer):" in source
    assert "    # mhat = m / (1 - 0.9 ** t)\n" in source  # each block under its statement
    assert "def _" + "clip(" not in source  # helpers only when used
    normalised = torch_source(parse_program(TRICKY))
    assert "def _rms(" in normalised and "def _norm(" in normalised
    assert "torch_ = torch._foreach_clamp_min(g, -1)" in normalised  # a clashing name renamed
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


@pytest.mark.parametrize(
    ("name", "constants"),
    [
        ("adamw", {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01}),
        ("lion", {"beta1": 0.9, "beta2": 0.99}),  # lion-pytorch's betas
        ("rmsprop", {"beta": 0.99, "eps": 1e-8}),
        ("momentum", {"beta": 0.9}),  # buf = 0.9 * buf + g
        ("adamax", {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}),  # eps inside maximum(...)
        ("nadam", {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "c1": 0.5, "c2": 0.96, "c3": 0.004}),
        ("sgd", {}),
    ],
)
def test_named_constants_are_the_defaults_of_the_exported_class(name, constants, tmp_path):
    program = load_known(name)
    assert {k: c.value for k, c in named_constants(program).items()} == constants
    runtime, generated = both_classes(program, tmp_path)
    assert runtime.constants == generated.constants == constants
    assert list(runtime.constants) == list(constants)  # __init__ order: betas, eps, decay, c…
    assert runtime.ranges == generated.ranges
    opt = runtime([torch.nn.Parameter(torch.zeros(2))])
    assert opt.defaults == {"lr": 1e-3, **constants}
    assert all(f"    {key}: {value}\n" in repr(opt) for key, value in constants.items())
    assert all(f"``{key}={value!r}``" in runtime.__doc__ for key, value in constants.items())


def with_number(program: Program, old: float, new: float) -> Program:
    """``program`` with each ``old`` constant written as ``new``."""

    def edit(expr):
        if isinstance(expr, Call):
            return Call(expr.op, tuple(edit(a) for a in expr.args))
        return Const(new) if expr == Const(old) else expr

    body = tuple(Assign(s.target, edit(s.expr)) for s in program.body)
    return Program(program.params, body, tuple(edit(e) for e in program.returns))


def test_each_constant_of_a_group_acts_as_the_edited_program(tmp_path):
    """For every zoo optimizer and each of its named constants: a param group that sets it to the
    square root of its default (0.9 → 0.95, 1e-8 → 1e-4) steps as the interpreter runs the program
    with that number edited; the other group, as the program. Both classes, float64, 10 steps
    (rtol 1e-12, as for the defaults)."""
    start = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(3, 4)
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 4, generator=gen, dtype=torch.float64) for _ in range(10)]

    def interpreted(program: Program) -> torch.Tensor:
        compiled, w, state = compile_program(program), start.clone(), init_state(program, start)
        for t, g in enumerate(grads, start=1):
            update, state = step(compiled, w, g, 0.01, t, state)
            w = w - update
        return w

    for name, entry in zoo().items():
        program = entry.load()
        classes = both_classes(program, tmp_path / name)
        for key, constant in named_constants(program).items():
            edited = with_number(program, constant.value, constant.value**0.5)
            for cls in classes:
                ps = [torch.nn.Parameter(start.clone()) for _ in range(2)]
                groups = [{"params": ps[:1]}, {"params": ps[1:], key: constant.value**0.5}]
                opt = cls(groups, lr=0.01)
                for g in grads:
                    for p in ps:
                        p.grad = g.clone()
                    opt.step()
                msg = f"{name}: {key}"
                torch.testing.assert_close(
                    ps[0].detach(), interpreted(program), rtol=1e-12, atol=1e-14, msg=msg
                )
                torch.testing.assert_close(
                    ps[1].detach(), interpreted(edited), rtol=1e-12, atol=1e-14, msg=msg
                )


def test_exported_classes_check_their_constants(tmp_path):
    for cls in both_classes(load_known("adamw"), tmp_path):
        # beta1 in lr / (1 - beta1 ** t) must keep 1 - beta1 ** t from 0; beta2 = 1 divides by 0
        # on tensors (IEEE), as the program does.
        assert cls.ranges == {"beta1": (0.0, 1.0, "[)"), "beta2": (0.0, 1.0, "[]")}
        p = torch.nn.Parameter(torch.ones(3))
        with pytest.raises(ValueError, match=r"Invalid beta1 value: 1.0 \(must be in \[0, 1\)\)"):
            cls([p], beta1=1.0)
        with pytest.raises(ValueError, match="Invalid beta1 value: -0.5"):
            cls([{"params": [p], "beta1": -0.5}])
        with pytest.raises(TypeError, match="unexpected keyword argument 'betas'"):
            cls([p], betas=(0.9, 0.99))
        opt = cls([p], beta1=0.0, beta2=1.0)  # the limits torch.optim.AdamW allows, and 1
        with pytest.raises(ValueError, match="Invalid beta1 value: 2"):
            opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(1))], "beta1": 2})


def adamw_groups(lr, betas, eps, weight_decay, beta2_of_second_group=None):
    """torch.optim.AdamW's and the exported AdamW's arguments for two param groups."""
    second = {} if beta2_of_second_group is None else {"betas": (betas[0], beta2_of_second_group)}
    ours = {} if beta2_of_second_group is None else {"beta2": beta2_of_second_group}
    reference = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    exported = dict(lr=lr, beta1=betas[0], beta2=betas[1], eps=eps, weight_decay=weight_decay)
    return (second, reference), (ours, exported)


@pytest.mark.parametrize(
    "setting",
    [
        dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, beta2_of_second_group=0.99),
        dict(lr=3e-3, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1),
        dict(lr=3e-3, betas=(0.0, 0.99), eps=1e-12, weight_decay=0.0),
    ],
    ids=["beta2-of-one-group", "all-constants", "beta1-zero"],
)
def test_overridden_constants_match_torch_adamw_group_by_group(setting, tmp_path):
    """The constants are the rule's: set for the optimizer or for one param group, they change
    the computation as they change torch.optim.AdamW's (float64, rtol 1e-10 as in
    test_exported_optimizers_match_torch_and_lion_pytorch_in_float64)."""
    (second, reference), (ours, exported) = adamw_groups(**setting)
    data = digits(torch.float64)

    def run(make, group_setting) -> list[torch.Tensor]:
        model = mlp(torch.float64)
        first, rest = list(model.parameters())[:2], list(model.parameters())[2:]
        opt = make([{"params": first}, {"params": rest, **group_setting}])
        train(model, opt, 60, data, batch=64)
        return [p.detach() for p in model.parameters()]

    expected = run(lambda groups: torch.optim.AdamW(groups, **reference), second)
    for cls in both_classes(load_known("adamw"), tmp_path):
        got = run(lambda groups, cls=cls: cls(groups, **exported), ours)
        assert_same_tensors(got, expected, rtol=1e-10, atol=1e-12)
        if ours:  # and beta2 of the second group made a difference
            defaults = run(lambda groups, cls=cls: cls(groups, **exported), {})
            assert not torch.allclose(got[2], defaults[2], rtol=1e-6, atol=0)


def test_overridden_betas_match_lion_pytorch(tmp_path):
    lion = pytest.importorskip("lion_pytorch").Lion
    gen = torch.Generator().manual_seed(6)
    start = [torch.randn(4, 5, generator=gen, dtype=torch.float64) for _ in range(2)]
    grads = [[torch.randn(4, 5, generator=gen, dtype=torch.float64) for _ in start]] * 20

    def run(make) -> list[torch.Tensor]:
        ps = [torch.nn.Parameter(p.clone()) for p in start]
        opt = make(ps)
        for gs in grads:
            for p, g in zip(ps, gs, strict=True):
                p.grad = g + p.detach()
            opt.step()
        return ps

    expected = run(
        lambda ps: lion([{"params": ps[:1]}, {"params": ps[1:], "betas": (0.95, 0.98)}], lr=1e-3)
    )
    for cls in both_classes(load_known("lion"), tmp_path):
        got = run(
            lambda ps, cls=cls: cls(
                [{"params": ps[:1]}, {"params": ps[1:], "beta1": 0.95, "beta2": 0.98}]
            )
        )
        assert_same_tensors(got, expected, rtol=0, atol=0)  # the same operations: bit for bit


def test_names_of_the_program_make_way_for_the_constants(tmp_path):
    """Slots called ``eps`` and ``beta``, a variable ``c1``: the arguments keep their names, the
    program's get a ``_`` in the source; the state keeps the slot names."""
    program = parse_program(
        """
def train(g, lr, eps, beta):
    c1 = interp(g, eps, 0.9)
    beta = beta + square(g) * 0.5
    return lr * c1 / (sqrt(beta) + 1e-8), c1, beta
"""
    )
    assert {k: c.value for k, c in named_constants(program).items()} == {
        "beta": 0.9,
        "eps": 1e-8,
        "c1": 0.5,
    }
    assert "def _update(w, g, lr, t, beta, eps, c1, eps_, beta_):" in torch_source(program)
    start = torch.linspace(-1, 1, 6, dtype=torch.float64)
    grads = [torch.randn(6, dtype=torch.float64) for _ in range(5)]
    finals, w, optimizers = exported_and_interpreted(program, grads, tmp_path, start, lr=0.1)
    for opt in optimizers:
        assert [set(state) for state in opt.state.values()] == [{"step", "eps", "beta"}]
    assert torch.equal(finals[0], finals[1])
    torch.testing.assert_close(finals[0], w, rtol=1e-12, atol=1e-14)


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


def test_state_dicts_keep_the_constants_of_each_group(tmp_path):
    runtime, generated = both_classes(load_known("adamw"), tmp_path)

    def params() -> list[torch.nn.Parameter]:
        return [torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(2))]

    ps = params()
    opt = runtime([{"params": ps[:1]}, {"params": ps[1:], "beta2": 0.99}], lr=0.1)
    for p in ps:
        p.grad = torch.full_like(p, 0.5)
    opt.step()
    saved = pickle.dumps(opt.state_dict())
    for cls in (runtime, generated):
        resumed = cls([{"params": [x]} for x in params()], lr=0.5)
        resumed.load_state_dict(pickle.loads(saved))
        assert [g["beta2"] for g in resumed.param_groups] == [0.999, 0.99]
        assert [g["lr"] for g in resumed.param_groups] == [0.1, 0.1]
    # A checkpoint from before the constants were arguments (lr only): they take the defaults.
    old = pickle.loads(saved)
    for group in old["param_groups"]:
        for key in runtime.constants:
            del group[key]
    resumed = generated([{"params": [x]} for x in params()])
    resumed.load_state_dict(old)
    assert all(g["beta2"] == 0.999 and g["eps"] == 1e-8 for g in resumed.param_groups)


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
    assert "class MySignRule(ProgramOptimizer):" in capsys.readouterr().out

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
    interpreter: lr, t and T scalars, constants and reductions all work on the parameter's
    device."""
    start = np.linspace(-1, 1, 12).reshape(3, 4)
    grads = np.random.default_rng(0).normal(size=(10, 3, 4))
    programs = {name: entry.load() for name, entry in zoo().items()}
    programs["tricky"] = parse_program(TRICKY)
    programs["numbers"] = parse_program(NUMBERS)
    programs["scheduled"] = parse_program(SCHEDULED)  # reads T
    for name, program in programs.items():
        compiled, w = compile_program(program, "numpy"), start.copy()
        state = init_state(program, w)
        for t, g in enumerate(grads, start=1):
            update, state = step(compiled, w, g, 0.01, t, state, T=len(grads))
            w = w - update
        for cls in both_classes(program, tmp_path / name):
            p = torch.nn.Parameter(torch.tensor(start, device=device))
            opt = cls([p], lr=0.01, total_steps=len(grads))  # the others ignore it
            for g in grads:
                p.grad = torch.tensor(g, device=device)
                opt.step()
            assert p.device.type == torch.device(device).type
            np.testing.assert_allclose(
                p.detach().cpu().numpy(), w, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name
            )
