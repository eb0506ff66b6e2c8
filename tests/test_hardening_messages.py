"""Issue 11, case 7: messages that named the wrong mistake, and inputs taken silently."""

from __future__ import annotations

import math

import pytest
import torch

import evodisc
from evodisc.app.cli import main
from evodisc.program import ProgramError, parse_program

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (
            "def train(g):\n    return g\nx = 1\n",
            3,
            "only 'def train(...)' may appear at the top level of a program, not an assignment",
        ),
        (
            "def train(g):\n    return g\nprint(g)\n",
            3,
            "only 'def train(...)' may appear at the top level of a program, not an expression",
        ),
        ("async def train(g):\n    return g\n", 1, "'async def' is not allowed"),
        ("def train(g):\n    return g\nasync def f():\n    pass\n", 3, "'async def'"),
        ("def train(g):\n    async def f():\n        pass\n    return g\n", 2, "nested functions"),
        ("adamw", 1, "no 'def train(...)' found"),
    ],
)
def test_top_level_mistakes_are_named(text, line, reason):
    with pytest.raises(ProgramError) as info:
        parse_program(text, filename="rule.py")
    assert info.value.line == line and reason in info.value.reason
    assert "only one" not in info.value.reason


def test_functional_hash_of_a_name_says_how_to_hash_it():
    with pytest.raises(ProgramError) as info:
        evodisc.functional_hash("adamw")
    message = str(info.value)
    assert message.startswith("'adamw': a string is hashed as program text")
    assert "load_program" in message and "resolve_program" in message
    assert evodisc.functional_hash("def train(g, lr):\n    return lr * g\n")  # text still works


def test_replay_takes_one_task_name_as_one_task():
    result = evodisc.replay("sgd", "ill_conditioned", "adamw", lrs=(0.01, 0.1), extend=False)
    assert [row.task for row in result.rows] == ["ill_conditioned"]
    assert list(result.rows[0].baselines) == ["adamw"]


def test_both_diverged_is_not_applicable_not_zero(tmp_path, capsys):
    path = tmp_path / "boom.py"
    path.write_text("def train(g, lr, t):\n    return -lr * g * exp(3 * t)\n")
    program = evodisc.load_program(path)
    (row,) = evodisc.replay(program, ["ill_conditioned"], ["sgd"], lrs=(1e6,)).rows
    assert math.isnan(row.ratios["sgd"]) and row.baselines["sgd"][1] is None
    argv = ["replay", str(path), "--task", "ill_conditioned", "--baseline", "sgd", "--lrs", "1e6"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "n/a" in out and "0.000" not in out
    assert "every optimizer diverged at every learning rate" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["replay", "sgd", "--task", "ill_conditioned", "--lrs", ""], "--lrs '': expected"),
        (["replay", "sgd", "--task", "ill_conditioned", "--lrs", " , "], "got none"),
        (["export", "lion", "--name", ""], "--name: '' cannot be a class name"),
    ],
)
def test_empty_options_are_errors_not_defaults(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_file_named_like_a_known_optimizer_does_not_shadow_it_silently(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adamw").write_text("def train(g, lr):\n    return lr * g\n")
    assert main(["show", "adamw"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "evodisc: error: adamw: both a file in this directory and the known optimizer "
        "'adamw'; write './adamw' for the file, or rename it to use the known optimizer\n"
    )
    assert main(["show", "./adamw"]) == 0
    assert capsys.readouterr().out.startswith("def train(g, lr):\n    return lr * g\n")
    (tmp_path / "lion").mkdir()  # a directory is not a program: the name is the optimizer
    assert main(["show", "lion"]) == 0
