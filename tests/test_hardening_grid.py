"""Issue 11, case 2: a best learning rate on the edge of the grid is not reported as the optimum.
``replay`` extends the grid (×3 steps outward, bounded) and says when a bound stopped it; the
campaign's fitness keeps its grid but flags edge results; degenerate metrics get a warning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import evodisc
from evodisc.app.cli import main
from evodisc.program import parse_program
from fitness.baselines import Baseline
from fitness.config import SuiteConfig
from fitness.runs import grid_edge
from fitness.suite import evaluate
from search_spaces.zoo import load_known

torch.set_num_threads(1)

# Inputs scaled by 0.1: the loss is flat, so plain SGD wants a learning rate far above 0.1.
TASK = """
import torch
from fitness.tasks import TaskData


class Flat:
    name = "flat"
    steps = 20
    batch_size = 8
    metric = {metric!r}
    higher_is_better = False

    def data(self):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn({n}, 2, generator=gen)
        y = (x[:, :1] > x[:, 1:]).long().squeeze(1) if {classes} else x @ torch.ones(2, 1)
        x = x * {input_scale}
        return TaskData(x[:48], y[:48], x[48:], y[48:])

    def model(self):
        return torch.nn.Linear(2, 2 if {classes} else 1)

    def loss(self, output, target):
        if {classes}:
            return torch.nn.functional.cross_entropy(output, target)
        return (output - target).square().mean()

    def score(self, output, target):
        if {classes}:  # error rate: exactly 0 on a tiny, separable validation set
            return (output.argmax(-1) != target).float().mean()
        return (output - target).square().mean()


def factory():
    return Flat()
"""


def task_file(tmp_path, classes: bool = False) -> str:
    metric = "val error rate" if classes else "val MSE"
    scale = 1.0 if classes else 0.1
    text = TASK.format(metric=metric, n=52 if classes else 64, classes=classes, input_scale=scale)
    (tmp_path / "flat.py").write_text(text)
    return f"{tmp_path / 'flat.py'}:factory"


def interior(best: float | None, lrs: tuple[float, ...]) -> bool:
    return best is not None and lrs[0] < best < lrs[-1]


def test_replay_extends_the_grid_until_every_best_is_interior(tmp_path):
    result = evodisc.replay("sgd", task_file(tmp_path), ["adamw"], lrs=(1e-2, 1e-1))
    (row,) = result.rows
    assert row.best_lr > 0.1 and interior(row.best_lr, row.lrs)  # not the top of the grid
    assert row.lrs[:2] == (1e-2, 1e-1) and all(
        b == pytest.approx(3 * a) for a, b in zip(row.lrs[1:], row.lrs[2:], strict=False)
    )
    adamw_metric, adamw_lr = row.baselines["adamw"]
    assert interior(adamw_lr, row.baseline_lrs["adamw"])
    assert row.ratios["adamw"] == pytest.approx(adamw_metric / row.metric)
    assert result.warnings == []


def test_fixed_grid_keeps_the_edge(tmp_path):
    result = evodisc.replay("sgd", task_file(tmp_path), [], lrs=(1e-2, 1e-1), extend=False)
    assert result.rows[0].best_lr == 0.1 and result.rows[0].lrs == (1e-2, 1e-1)


def test_a_bound_that_stops_the_extension_is_reported(tmp_path, capsys):
    path = tmp_path / "tiny_steps.py"
    path.write_text("def train(g, lr):\n    return lr * g * 1e-9\n")  # more lr is always better
    spec = task_file(tmp_path)
    result = evodisc.replay(evodisc.load_program(path), spec, [], lrs=(10.0, 30.0))
    (warning,) = result.warnings
    assert warning == (
        "flat: the program: its best learning rate 90 is the highest tried; the grid was not "
        "extended past the bound 100"
    )
    argv = ["replay", str(path), "--task", spec, "--lrs", "10,30", "--baseline", "sgd"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "evodisc: warning: flat: the program: its best learning rate 90" in err


def test_campaign_fitness_keeps_its_grid_and_flags_edges(tmp_path, fresh_cache):
    spec = task_file(tmp_path)
    narrow = SuiteConfig(tasks=(spec,), lrs=(1e-3, 1e-2))
    (sgd,) = evaluate([load_known("sgd")], narrow)
    details = sgd.as_cached().details["tasks"]["flat"]
    assert details["best_lr"] == 1e-2 and details["edge"] == "high"
    wide = SuiteConfig(tasks=(spec,), lrs=(1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0, 1e3))
    (sgd,) = evaluate([load_known("sgd")], wide)
    details = sgd.as_cached().details["tasks"]["flat"]
    assert details["edge"] is None and interior(details["best_lr"], wide.lrs)


def test_a_metric_of_exactly_zero_gets_a_warning(tmp_path, capsys):
    spec = task_file(tmp_path, classes=True)  # 4 validation examples, one seed
    assert main(["replay", "adamw", "--task", spec, "--lrs", "0.1,0.3", "--fixed-grid"]) == 0
    err = capsys.readouterr().err
    assert "evodisc: warning: flat: the best val error rate of the program, adamw is exactly 0" in (
        err
    )
    assert "4 validation example(s), 1 seed(s)" in err and "--seeds" in err


def test_grid_edge_rules():
    lrs = (1e-3, 1e-2, 1e-1)
    loss = np.array([[3.0], [2.0], [1.0]])
    assert grid_edge(loss, lrs, higher_is_better=False) == "high"
    assert grid_edge(loss[::-1], lrs, higher_is_better=False) == "low"
    assert grid_edge(np.array([[3.0], [1.0], [2.0]]), lrs, higher_is_better=False) is None
    assert grid_edge(np.array([[1.0], [1.0], [2.0]]), lrs, False) is None  # a plateau inside
    assert grid_edge(np.array([[1.0], [math.nan], [math.nan]]), lrs, False) == "low"
    assert grid_edge(np.full((3, 1), math.nan), lrs, False) is None  # diverged everywhere
    assert grid_edge(np.array([[1.0]]), (1e-2,), False) is None  # one point: a choice
    assert grid_edge(np.array([[1.0], [3.0], [2.0]]), (0.1, 1e-3, 1e-2), False) == "high"


def test_readme_shows_seeds():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "--seeds" in readme


def test_a_program_parsed_beside_the_suite_is_untouched_by_extension():
    """The campaign grid is fixed: ``evaluate`` trains exactly ``config.lrs``."""
    program = parse_program("def train(g, lr):\n    return lr * g\n")
    config = SuiteConfig(tasks=("ill_conditioned",), lrs=(1e-3, 1e-2))
    (fit,) = evaluate(
        [program], config, baselines={"ill_conditioned": Baseline(1.0, 0.01, 0.05, 8)}
    )
    assert fit.tasks["ill_conditioned"].best_lr in config.lrs
    assert fit.tasks["ill_conditioned"].edge == "high"  # flagged for the funnel
