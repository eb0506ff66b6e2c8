"""Issue 11, cases 1 and 3: user tasks — cache keys that follow an edited task, no writes
outside the cache, and one-line errors (exit 2) for the common mistakes in a task file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from evodisc.app.cli import main
from fitness.baselines import tuned_baseline
from fitness.config import PROTOCOL_VERSION, SuiteConfig
from fitness.suite import evaluate
from fitness.tasks import TaskError, load_task
from search_spaces.zoo import load_known

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]

#: A tiny regression task; the ``{…}`` fields are what each test changes.
TASK = """
import numpy as np
import torch
from fitness.tasks import TaskData


class Line:
    name = {name!r}
    steps = {steps}
    batch_size = {batch}
    metric = "val MSE"
    higher_is_better = False

    def data(self):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(64, 2, generator=gen)
        y = (x @ torch.tensor([[1.0], [-2.0]])) * {scale}
        {data}

    def model(self):
        return torch.nn.Linear(2, 1)

    def loss(self, output, target):
        {loss}

    def score(self, output, target):
        return (output - target).square().mean()


def factory():
    return Line()
"""

DATA = "return TaskData(x[:48], y[:48], x[48:], y[48:])"
LOSS = "return (output - target).square().mean()"
CONFIG_LRS = (1e-2, 1e-1)


def write_task(tmp_path: Path, file: str = "line.py", **fields) -> str:
    values = {"name": "line", "steps": 20, "batch": 8, "scale": 1.0, "data": DATA, "loss": LOSS}
    values.update(fields)
    (tmp_path / file).write_text(TASK.format(**values))
    return f"{tmp_path / file}:factory"


pytestmark = pytest.mark.usefixtures("fresh_cache")


def one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("evodisc: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------------ case 1: keys and paths


def test_an_edited_task_file_gets_a_new_baseline_not_the_stale_one(tmp_path):
    spec = write_task(tmp_path)
    config = SuiteConfig(tasks=(spec,), lrs=CONFIG_LRS, seeds=(0,), baseline_seeds=(0,))
    before = tuned_baseline(load_task(spec), config).metric
    spec = write_task(tmp_path, scale=100.0)  # edited in place: same name, targets ×100
    after = tuned_baseline(load_task(spec), config).metric
    assert after > 100 * before  # recomputed: a loss on targets ×100
    (adamw,) = evaluate([load_known("adamw")], config)
    assert adamw.value == pytest.approx(1.0, rel=1e-6)  # not 1.5e-06 against a stale baseline


def test_keys_follow_the_data_even_when_the_task_file_is_unchanged(tmp_path, fresh_cache):
    """The file reads its data from elsewhere: its content alone does not identify the task."""
    csv = tmp_path / "scale.txt"
    csv.write_text("1.0")
    data = (
        f"y = y * float(open({str(csv)!r}).read()); return TaskData(x[:48], y[:48], x[48:], y[48:])"
    )
    spec = write_task(tmp_path, data=data)
    config = SuiteConfig(tasks=(spec,), lrs=CONFIG_LRS)
    key, metric = config.cache_key("cpu"), tuned_baseline(load_task(spec), config).metric
    csv.write_text("100.0")
    assert config.cache_key("cpu") != key
    assert tuned_baseline(load_task(spec), config).metric > 100 * metric
    assert len(list((fresh_cache / "baselines").glob("*.json"))) == 2
    assert PROTOCOL_VERSION >= 2  # the key format changed: results under the old keys are void


def test_a_task_name_never_makes_a_cache_file_outside_the_cache(tmp_path, fresh_cache):
    (tmp_path / "task").mkdir()
    spec = write_task(tmp_path / "task", name="../../x")
    metric = tuned_baseline(load_task(spec), SuiteConfig(tasks=(spec,), lrs=CONFIG_LRS)).metric
    assert math.isfinite(metric)
    inside = {p.resolve() for p in fresh_cache.rglob("*") if p.is_file()}
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "task" not in p.parts]
    assert len(inside) == 1 and {p.resolve() for p in written} == inside


# --------------------------------------------------------------- case 3: task-file mistakes


def test_numpy_arrays_from_data_are_converted(tmp_path, capsys):
    data = (
        "return TaskData(x[:48].numpy(), y[:48].numpy().astype('float64'), "
        "np.asarray(x[48:]), np.asarray(y[48:]))"
    )
    spec = write_task(tmp_path, data=data)
    assert main(["replay", "sgd", "--task", spec, "--lrs", "0.01,0.1", "--fixed-grid"]) == 0
    assert "line" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("return x[:48], y[:48], x[48:], y[48:]", "line: data() returned a tuple, not a TaskData"),
        ("return 'x_train.csv'", "line: data() returned a str, not a TaskData"),
        (
            "return TaskData(x[:0], y[:0], x[48:], y[48:])",
            "line: the training set is empty",
        ),
        (
            "return TaskData(x[:48].tolist(), y[:48], x[48:], y[48:])",
            "line: TaskData.x_train is a list, not a tensor",
        ),
    ],
)
def test_bad_data_is_a_one_line_error_naming_the_task(tmp_path, capsys, data, message):
    spec = write_task(tmp_path, data=data)
    err = one_line_error(["replay", "sgd", "--task", spec, "--lrs", "0.1"], capsys)
    assert message in err
    if "TaskData" in message:
        assert "TaskData(x_train, y_train, x_val, y_val)" in err or "tensor" in err


def test_a_loss_raising_any_exception_is_a_one_line_error(tmp_path, capsys):
    spec = write_task(tmp_path, loss="return {'mse': output}['loss']")
    err = one_line_error(["replay", "sgd", "--task", spec, "--lrs", "0.1"], capsys)
    assert "line: training failed (KeyError: 'loss')" in err


def test_a_task_that_is_nan_for_every_optimizer_is_called_broken(tmp_path, capsys):
    spec = write_task(tmp_path, loss="return (output - target).square().mean() * float('nan')")
    err = one_line_error(["replay", "sgd", "--task", spec, "--lrs", "0.01,0.1"], capsys)
    assert "line: the task is broken" in err and "training loss is nan" in err
    assert "diverged" not in err


def test_absurd_steps_and_seeds_are_refused_before_allocating(tmp_path, capsys):
    spec = write_task(tmp_path, steps=10**12)
    err = one_line_error(["replay", "sgd", "--task", spec], capsys)
    assert "steps is 1,000,000,000,000; the limit is 100,000" in err
    with pytest.raises(TaskError, match="steps × batch_size"):
        load_task(write_task(tmp_path, file="wide.py", steps=100_000, batch=1000))
    spec = write_task(tmp_path, file="ok.py")
    err = one_line_error(["replay", "sgd", "--task", spec, "--seeds", "1000000000"], capsys)
    assert "--seeds must be between 1 and 64" in err


def test_the_readme_says_a_task_file_is_code_that_runs():
    readme = (ROOT / "README.md").read_text()
    assert "imports and runs" in readme and "--seeds" in readme
