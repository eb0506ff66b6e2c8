"""Replay: a program against baselines on built-in tasks and on a user's own task file."""

from __future__ import annotations

import json
import math

import pytest
import torch

import evodisc
from evodisc.app.cli import main

torch.set_num_threads(1)

# A user's task, written without evodisc's help: logistic regression scored by accuracy.
USER_TASK = """
import torch
from fitness.tasks import TaskData


class Blobs:
    name = "blobs"
    description = "two Gaussian blobs, logistic regression"
    steps = 30
    batch_size = 16
    metric = "val accuracy"
    higher_is_better = True

    def data(self):
        gen = torch.Generator().manual_seed(0)
        y = torch.randint(0, 2, (400,), generator=gen)
        x = torch.randn(400, 2, generator=gen) + 2.0 * y[:, None].float() - 1.0
        return TaskData(x[:300], y[:300], x[300:], y[300:])

    def model(self):
        return torch.nn.Linear(2, 2)

    def loss(self, output, target):
        return torch.nn.functional.cross_entropy(output, target)

    def score(self, output, target):
        return (output.argmax(-1) == target).float().mean()


def factory():
    return Blobs()
"""


@pytest.fixture
def user_task(tmp_path) -> str:
    path = tmp_path / "x.py"
    path.write_text(USER_TASK)
    return f"{path}:factory"


def test_replay_api_reports_metric_lr_and_ratios(user_task):
    result = evodisc.replay("lion", [user_task], baselines=["adamw", "lion"], lrs=(1e-3, 1e-1))
    (row,) = result.rows
    assert row.task == "blobs" and row.metric_name == "val accuracy"
    assert 0.8 < row.metric <= 1.0 and row.best_lr in row.lrs
    # the program is Lion, so against the Lion baseline it is exactly even
    assert row.baselines["lion"] == (row.metric, row.best_lr) and row.ratios["lion"] == 1.0
    adamw_metric, _ = row.baselines["adamw"]
    assert row.ratios["adamw"] == pytest.approx(row.metric / adamw_metric)


def test_replay_ratios_carry_the_seeds_spread_and_the_final_metric_its_own_sweep(
    user_task, tmp_path
):
    """Against a program file holding Lion itself every ratio is 1; the repeatability limit is
    the one the fitness gives two sides with these seeds' spread, and the final metric is the
    last validation of the same runs, at its own best learning rate."""
    from fitness.tasks import load_task
    from fitness.trainer import train_batch
    from fitness.uncertainty import coverage_factor, cv, welch_dof
    from search_spaces.zoo import load_known

    tuned = tmp_path / "tuned_lion.py"
    tuned.write_text(evodisc.format_program(load_known("lion")))
    lrs, seeds = (1e-3, 1e-2, 1e-1), (0, 1, 2)
    result = evodisc.replay(
        "lion", [user_task], baselines=["adamw", str(tuned)], lrs=lrs, seeds=seeds, extend=False
    )
    (row,) = result.rows
    assert row.ratios["tuned_lion"] == 1.0 and row.final.ratios["tuned_lion"] == 1.0
    runs = train_batch(load_task(user_task), [load_known("lion")], lrs, seeds, checkpoints=8)
    at_best = runs.metric[0, lrs.index(row.best_lr)]
    c = cv(at_best)
    variances = [c**2 / 3, c**2 / 3]  # each side's noise: its own CV over its three seeds
    expected = coverage_factor(welch_dof(variances, [4, 2])) * math.sqrt(sum(variances))
    assert c > 0 and row.anytime.uncertainties["tuned_lion"] == pytest.approx(expected)
    final = runs.curve[0, ..., -1].mean(axis=1)  # higher is better: accuracy
    assert row.final.metric == pytest.approx(final.max())
    assert row.final.best_lr == lrs[int(final.argmax())]
    adamw = row.anytime
    assert math.isfinite(adamw.uncertainties["adamw"]) and adamw.uncertainties["adamw"] > 0


def test_replay_summary_and_json_over_several_tasks(tmp_path, capsys):
    path = tmp_path / "x.py"
    shorter = "def shorter():\n    task = Blobs()\n    task.name, task.steps = 'blobs20', 20\n"
    path.write_text(f"{USER_TASK}\n\n{shorter}    return task\n")
    tasks = [f"{path}:factory", f"{path}:shorter"]
    out = tmp_path / "replay.json"
    argv = ["replay", "sgd", "--baseline", "adamw", "--lrs", "0.01,0.1", "--seeds", "2"]
    assert main([*argv, "--task", tasks[0], "--task", tasks[1], "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "anytime metric" in printed and "final metric" in printed
    assert "geometric mean over the tasks" in printed
    data = json.loads(out.read_text())
    assert data["seeds"] == [0, 1] and [r["task"] for r in data["rows"]] == ["blobs", "blobs20"]
    for kind in ("anytime", "final"):
        ratios = [r[kind]["ratios"]["adamw"] for r in data["rows"]]
        value, limit = data["summary"][kind]["adamw"]
        assert value == pytest.approx(math.sqrt(ratios[0] * ratios[1]))
        assert limit is None or limit > 0


def test_replay_cli_prints_a_table(user_task, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code = main(
        [
            "replay",
            "sgd",
            "--task",
            "ill_conditioned",
            "--task",
            user_task,
            "--baseline",
            "adamw",
            "--baseline",
            "lion",
            "--lrs",
            "0.01,0.1",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    for text in ("ill_conditioned", "blobs", "val MSE", "val accuracy", "vs adamw", "vs lion"):
        assert text in out


def test_tasks_cli_lists_the_suite(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name in ("digits_mlp", "digits_cnn", "markov_lm", "teacher_student", "ill_conditioned"):
        assert name in out
    # piped output keeps every column (rich would drop the last ones at 80 columns)
    assert "1-block transformer LM" in out and "condition number 1e4" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["replay", "adamw", "--task", "nope"], "unknown task 'nope'"),
        (["replay", "no_such_optimizer"], "not a known optimizer"),
        (
            ["replay", "adamw", "--baseline", "nope", "--task", "ill_conditioned"],
            "nope: no such file, and not a known optimizer",
        ),
        (["replay", "adamw", "--lrs", "fast"], "expected comma-separated numbers"),
        (["replay", "adamw", "--lrs", "-1"], "positive finite"),
        (["replay", "adamw", "--task", "missing.py:make"], "no such file"),
        (["replay", "adamw", "--baseline", "sgd", "--baseline", "sgd"], "two baselines named"),
    ],
)
def test_bad_replay_input_is_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_replay_gives_a_program_reading_T_each_tasks_own_steps(tmp_path):
    """The rule is SGD where T = 30 and makes no update elsewhere: on the user's task of 30
    steps it is SGD exactly, on a 20-step copy it does not train."""
    path = tmp_path / "x.py"
    shorter = "def shorter():\n    task = Blobs()\n    task.name, task.steps = 'blobs20', 20\n"
    path.write_text(f"{USER_TASK}\n\n{shorter}    return task\n")
    rule = "def train(g, lr, T):\n    return lr * relu(1 - abs(T - 30)) * g\n"
    program = evodisc.parse_program(rule)
    tasks = [f"{path}:factory", f"{path}:shorter"]
    result = evodisc.replay(program, tasks, baselines=["sgd"], lrs=(0.1,), extend=False)
    thirty, twenty = result.rows
    assert (thirty.task, twenty.task) == ("blobs", "blobs20")
    assert thirty.ratios["sgd"] == 1.0 and thirty.baselines["sgd"] == (thirty.metric, 0.1)
    assert twenty.metric != twenty.baselines["sgd"][0]


def test_a_diverging_program_shows_as_diverged(tmp_path, capsys):
    path = tmp_path / "boom.py"
    path.write_text("def train(g, lr, t):\n    return -lr * g * exp(3 * t)\n")
    result = evodisc.replay(evodisc.load_program(path), ["ill_conditioned"], lrs=(0.01,))
    row = result.rows[0]
    assert row.best_lr is None and math.isnan(row.metric) and row.ratios["adamw"] == 0.0
    assert main(["replay", str(path), "--task", "ill_conditioned", "--lrs", "0.01"]) == 0
    assert "diverged" in capsys.readouterr().out


def test_a_task_whose_model_cannot_be_batched_is_a_one_line_error(tmp_path, capsys):
    """BatchNorm keeps running statistics, which a vmapped functional call cannot update."""
    path = tmp_path / "bn.py"
    path.write_text(
        USER_TASK.replace(
            "torch.nn.Linear(2, 2)",
            "torch.nn.Sequential(torch.nn.Linear(2, 4), "
            "torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))",
        )
    )
    assert main(["replay", "sgd", "--task", f"{path}:factory", "--lrs", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("evodisc: error: blobs: training failed (RuntimeError: ")
    assert "docs/fitness.md" in err and err.count("\n") == 1
