"""Held-out tasks (never in the default suite) and the fitness-quality statistics (issue 13)."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from evodisc.app.cli import main
from fitness import tasks as registry
from fitness.config import SuiteConfig
from fitness.naive import train_naive
from fitness.quality import (
    best_per_seed,
    cv,
    ranks,
    spearman,
    study,
    task_quality,
)
from fitness.runs import seeded_model
from fitness.tasks import heldout_task_names, is_heldout, load_task, task_names
from fitness.trainer import train_batch
from search_spaces.zoo import load_known

torch.set_num_threads(1)

SUITE = ["digits_mlp", "markov_lm", "teacher_student", "ill_conditioned"]


def test_heldout_tasks_are_registered_but_never_in_the_default_suite():
    heldout = heldout_task_names()
    assert len(heldout) >= 3
    assert task_names() == SUITE  # campaigns default to this list
    assert not set(heldout) & set(task_names())
    assert SuiteConfig().tasks == tuple(SUITE)
    for name in heldout:
        assert is_heldout(name) and load_task(name).name == name
    assert not is_heldout("digits_mlp")


def test_the_registry_is_data_and_names_need_no_torch():
    """Listing and naming tasks imports neither torch nor the task modules (a fresh process);
    a name added to the held-out table is held out, and loads through its ``module:factory``."""
    code = (
        "import sys\nfrom fitness.config import SuiteConfig\nfrom fitness import tasks\n"
        "SuiteConfig(); tasks.task_names(); tasks.heldout_task_names()\n"
        "print(sorted({'torch', 'fitness.builtin'} & set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_a_heldout_entry_is_held_out_and_loads(monkeypatch):
    monkeypatch.setitem(registry.HELDOUT, "extra_heldout", "fitness.builtin:ill_conditioned")
    assert "extra_heldout" in heldout_task_names() and "extra_heldout" not in task_names()
    assert is_heldout("extra_heldout") and load_task("extra_heldout").name == "ill_conditioned"


@pytest.mark.parametrize("name", heldout_task_names())
def test_each_heldout_task_learns_with_adamw_without_batch_statistics(name):
    task = load_task(name)
    model = task.model()
    assert not list(model.buffers()) or name.startswith("markov")  # the causal mask only
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    task = dataclasses.replace(task, steps=min(task.steps, 40))
    data = task.data()
    with torch.no_grad():
        before = float(task.score(seeded_model(task, 0)(data.x_val), data.y_val))
    result = train_batch(task, [load_known("adamw")], [3e-3], (0,))
    assert float(result.metric[0, 0, 0]) < 0.9 * before


def test_layernorm_task_batched_equals_naive():
    task = dataclasses.replace(load_task("digits_mlp_layernorm"), steps=6)
    programs = [load_known("adamw"), load_known("lion")]
    batched = train_batch(task, programs, [1e-3], (0, 1), dtype=torch.float64)
    for p, program in enumerate(programs):
        for s in (0, 1):
            naive = train_naive(task, program, 1e-3, s, dtype=torch.float64)
            assert batched.metric[p, 0, s] == pytest.approx(naive, rel=1e-9)


def test_evodisc_tasks_marks_the_heldout_tasks(capsys):
    assert main(["tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    marked = {line.split()[0]: "held out" in line for line in lines[1:] if line.strip()}
    for name in SUITE:
        assert marked[name] is False
    for name in heldout_task_names():
        assert marked[name] is True


def test_campaign_accepts_a_heldout_task_only_when_named(tmp_path):
    from evodisc.campaign.config import check_tasks, load_campaign

    path = tmp_path / "c.toml"
    minimal = "[campaign]\nname = 'c'\n[budget]\nevaluations = 10\n"
    path.write_text(minimal)
    assert check_tasks(load_campaign(path)).fitness.tasks == tuple(SUITE)
    path.write_text(minimal + "[fitness]\ntasks = ['breast_cancer_logreg']\n")
    assert check_tasks(load_campaign(path)).fitness.tasks == ("breast_cancer_logreg",)


# ------------------------------------------------------------------------------ the statistics


def test_ranks_and_spearman_handle_ties():
    assert list(ranks([3.0, 1.0, 2.0, 1.0])) == [4.0, 1.5, 3.0, 1.5]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # scipy.stats.spearmanr([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == 0.8
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    # with ties: scipy.stats.spearmanr([1, 2, 2, 3], [1, 3, 2, 4]) == 0.9486832980505138
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(0.9486832980505138)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        spearman([1, 2], [1, 2, 3])


def test_best_per_seed_skips_diverged_runs():
    metric = np.array([[0.5, np.nan, np.nan], [0.3, 0.4, np.nan]])  # (L, S)
    best = best_per_seed(metric, higher_is_better=False)
    assert best[0] == 0.3 and best[1] == 0.4 and math.isnan(best[2])
    assert best_per_seed(metric, higher_is_better=True)[0] == 0.5
    assert cv([1.0, 1.0]) == 0.0 and math.isnan(cv([1.0]))


def test_task_quality_ratios_noise_and_separation():
    # 3 programs × 1 lr × 4 seeds, lower is better; "b" is twice as bad as the baseline, "c"
    # as good on average but noisy.
    metric = np.array(
        [
            [[1.0, 1.0, 1.0, 1.0]],
            [[2.0, 2.0, 2.0, 2.0]],
            [[0.8, 1.25, 0.8, 1.25]],
        ]
    )
    q = task_quality("t", metric, ["a", "b", "c"], "a", higher_is_better=False)
    assert q.baseline_cv == 0.0
    assert list(q.ratios["a"]) == [1.0] * 4 and list(q.ratios["b"]) == [0.5] * 4
    assert q.mean("c") == pytest.approx(1.025)
    spread = np.std([1.0, 0.5, 1.025], ddof=1)
    noise = math.sqrt((0 + np.var([1.25, 0.8, 1.25, 0.8], ddof=1)) / 2)
    assert q.spread == pytest.approx(spread)
    assert q.separation == pytest.approx(spread / noise)
    same = task_quality("s", np.ones((2, 1, 3)), ["a", "b"], "a", False)
    assert same.separation == 0.0
    diverged = task_quality("d", np.array([[[1.0]], [[np.nan]]]), ["a", "b"], "a", False)
    assert list(diverged.ratios["b"]) == [0.0]


def test_the_quality_study_measures_the_protocol():
    """What ``tools/bench_fitness_quality.py`` prints: per-task statistics, the fitness on two
    disjoint seed sets, on all seeds and held out, and the proxy fidelity."""
    names = ["adamw", "sgd", "lion"]
    lrs = (1e-3, 0.1)
    result = study(
        names,
        ["ill_conditioned"],
        ["breast_cancer_logreg"],
        lrs,
        seeds=4,
        heldout_seeds=2,
        candidate_seeds=1,
        baseline_seeds=2,
    )
    assert set(result.qualities) == {"ill_conditioned", "breast_cancer_logreg"}
    assert result.results["ill_conditioned"].metric.shape == (3, 2, 4)
    assert result.results["breast_cancer_logreg"].metric.shape == (3, 2, 2)
    assert list(result.qualities["ill_conditioned"].ratios["adamw"]) == [1.0] * 4
    # AdamW against itself on the same seeds is exactly 1; the first and the second seed sets
    # are disjoint (another value), each uncertain
    assert result.every["adamw"].value == 1.0 and result.held["adamw"].value == 1.0
    assert result.first["lion"].value != result.second["lion"].value
    assert result.first["lion"].uncertainty > 0
    assert result.moved("lion") == abs(result.first["lion"].value - result.second["lion"].value)
    assert -1.0 <= result.rho() <= 1.0
    held = [result.held[n].value for n in names]
    assert result.rho() == spearman([result.first[n].value for n in names], held)
    with pytest.raises(ValueError, match="seeds must be at least 4: two disjoint seed sets"):
        study(names, [], [], lrs, seeds=3, heldout_seeds=1, candidate_seeds=1, baseline_seeds=2)
