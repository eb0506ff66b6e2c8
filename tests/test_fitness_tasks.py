"""The proxy-task registry, the Task protocol and loading a user's task file."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
import torch

from fitness import batch_size, builtin
from fitness.runs import seeded_model
from fitness.tasks import (
    TaskError,
    describe,
    heldout_task_names,
    load_data,
    load_task,
    make_model,
    task_names,
)
from fitness.trainer import train_batch
from search_spaces.zoo import load_known

torch.set_num_threads(1)


def test_registry_lists_the_suite_and_held_out_tasks_with_sizes_and_budgets():
    names = task_names()
    assert {"digits_mlp", "markov_lm", "teacher_student", "ill_conditioned"} <= set(names)
    assert "digits_cnn" in heldout_task_names()  # too noisy to select by (docs/fitness.md)
    for name in names + heldout_task_names():
        info = describe(load_task(name))
        assert info.parameters > 0 and info.steps > 0 and info.batch_size > 0
        assert info.train_examples > info.batch_size and info.val_examples > 0


@pytest.mark.parametrize("name", task_names())
def test_each_task_learns_with_adamw(name):
    task = dataclasses.replace(load_task(name), steps=min(load_task(name).steps, 60))
    data = task.data()
    with torch.no_grad():
        before = float(task.score(seeded_model(task, 0)(data.x_val), data.y_val))
    result = train_batch(task, [load_known("adamw")], [3e-3], (0,))
    after = float(result.metric[0, 0, 0])
    assert after < 0.9 * before, (before, after)


def test_data_and_initialisation_are_deterministic():
    task = load_task("markov_lm")
    first = task.data().x_train
    builtin._sparse_markov.cache_clear()  # generate the data again, not just reread a cache
    again = load_task("markov_lm").data().x_train
    assert again is not first and torch.equal(first, again)
    a, b, c = (seeded_model(task, s) for s in (5, 5, 6))
    assert torch.equal(a.qkv.weight, b.qkv.weight) and not torch.equal(a.qkv.weight, c.qkv.weight)


def test_bad_task_specs_give_one_line_errors(tmp_path):
    with pytest.raises(TaskError, match="unknown task 'nope'; known: digits_mlp"):
        load_task("nope")
    with pytest.raises(TaskError, match="no such file"):
        load_task(str(tmp_path / "missing.py") + ":make")
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(TaskError, match="importing the file failed: RuntimeError: boom"):
        load_task(f"{bad}:make")
    empty = tmp_path / "empty.py"
    empty.write_text("class Half:\n    name = 'half'\n\ndef make():\n    return Half()\n")
    with pytest.raises(TaskError, match="has no callable 'other'"):
        load_task(f"{empty}:other")
    with pytest.raises(TaskError, match=r"not a Task \(missing steps, batch_size") as info:
        load_task(f"{empty}:make")
    assert "\n" not in str(info.value)


LINE_TASK = (
    "from __future__ import annotations\n"
    "import dataclasses, torch\n"
    "from pathlib import Path\n"
    "from fitness.tasks import TaskData\n"
    "with open(Path(__file__).with_suffix('.imports'), 'a') as counter:\n"
    "    counter.write('x')\n"
    "@dataclasses.dataclass\n"
    "class Line:\n"
    "    name: str = 'line'\n"
    "    steps: int = 5\n"
    "    batch_size: int = 4\n"
    "    metric: str = 'val MSE'\n"
    "    higher_is_better: bool = False\n"
    "    def data(self):\n"
    "        x = torch.linspace(-1, 1, 40)[:, None]\n"
    "        return TaskData(x[:30], 2 * x[:30], x[30:], 2 * x[30:])\n"
    "    def model(self):\n"
    "        return torch.nn.Linear(1, 1)\n"
    "    def loss(self, out, y):\n"
    "        return ((out - y) ** 2).mean()\n"
    "    score = loss\n"
    "def make():\n"
    "    return Line()\n"
)


def test_a_user_task_module_is_importable_like_any_module(tmp_path):
    """Dataclasses (with postponed annotations) and pickling look the module up by name."""
    path = tmp_path / "dc.py"
    path.write_text(LINE_TASK)
    task = load_task(f"{path}:make")
    assert pickle.loads(pickle.dumps(task)).steps == 5


def test_a_user_task_is_imported_and_measured_once_per_process_until_it_changes(
    tmp_path, monkeypatch
):
    path = tmp_path / "line.py"
    path.write_text(LINE_TASK)
    measured = []
    measure = batch_size._measure
    monkeypatch.setattr(batch_size, "_measure", lambda *a: measured.append(1) or measure(*a))
    first = load_task(f"{path}:make")
    assert all(load_task(f"{path}:make") is first for _ in range(5))
    for _ in range(3):
        batch_size.candidates_per_batch([f"{path}:make"], lrs=2)
        batch_size.models_per_evaluation(first, torch.float32)
    assert (tmp_path / "line.imports").read_text() == "x" and len(measured) == 1
    path.write_text(LINE_TASK.replace("steps: int = 5", "steps: int = 6"))  # edited: a new task
    edited = load_task(f"{path}:make")
    assert edited.steps == 6 and (tmp_path / "line.imports").read_text() == "xx"
    batch_size.models_per_evaluation(edited, torch.float32)
    assert len(measured) == 2


def test_a_failing_data_or_model_method_is_one_line_naming_the_task():
    def boom():
        raise RuntimeError("boom\nsecond line")

    broken_data = dataclasses.replace(load_task("ill_conditioned"), name="x", make_data=boom)
    with pytest.raises(TaskError) as error:
        load_data(broken_data)
    assert str(error.value) == "x: data() failed (RuntimeError: boom)"
    broken_model = dataclasses.replace(load_task("ill_conditioned"), name="y", make_model=boom)
    with pytest.raises(TaskError) as error:
        make_model(broken_model)
    assert str(error.value) == "y: model() failed (RuntimeError: boom)"
    with pytest.raises(TaskError, match="^z: mine$"):  # a TaskError passes through as it is
        load_data(dataclasses.replace(broken_data, name="z", make_data=_raise_task_error))


def _raise_task_error():
    raise TaskError("z: mine")
