"""Fair baselines: a program's named constants tuned by coordinate search (fitness.tuning), cached
like the baselines, and `evodisc tune`."""

from __future__ import annotations

import json
import math

import pytest
import torch

import fitness
import fitness.tuning
from evodisc.app.cli import main
from evodisc.edit import replace_constants
from evodisc.fitness_cache import CacheWarning
from evodisc.program import load_program, parse_program
from fitness.config import SuiteConfig
from fitness.suite import Fitness
from fitness.tuning import Tuned, candidates, tune, tuning_path
from search_spaces.zoo import load_known

torch.set_num_threads(1)


#: Heavy-ball momentum with a poor β (torch's default is 0.9).
BAD_MOMENTUM = "def train(g, lr, m):\n    m = 0.2 * m + g\n    return lr * m, m\n"


def _config(task: str) -> SuiteConfig:
    return SuiteConfig(tasks=(task,), lrs=(1e-3, 1e-2, 0.1), seeds=(0, 1), baseline_seeds=(0, 1))


@pytest.fixture
def counted(monkeypatch) -> list[list]:
    """The programs of each call of ``evaluate`` that ``tune`` makes (the real one runs)."""
    calls: list[list] = []
    real = fitness.tuning.evaluate

    def evaluate(programs, *args, **kwargs):
        calls.append(list(programs))
        return real(programs, *args, **kwargs)

    monkeypatch.setattr(fitness.tuning, "evaluate", evaluate)
    return calls


def test_a_bad_constant_is_tuned_up_and_never_below_its_default(short_task, counted):
    program = parse_program(BAD_MOMENTUM)
    result = tune(program, _config(short_task), "cpu", rounds=2)
    assert isinstance(result, Tuned) and not result.cached
    assert result.default == {"beta": 0.2}
    assert result.tuned["beta"] > 0.2 and result.changed == ["beta"]
    assert result.program == replace_constants(program, {0.2: result.tuned["beta"]})
    assert result.fitness.value > result.default_fitness.value
    assert math.isfinite(result.fitness.uncertainty)  # two seeds: the noise is known
    # one batched call per coordinate; every variant trained once, the default in the first
    sizes = [len(c) for c in counted]  # round 2 skips the values round 1 trained
    assert sizes[0] == 5 and all(1 <= n <= 4 for n in sizes[1:]) and len(sizes) == 2
    assert len({p for c in counted for p in c}) == sum(sizes)
    assert counted[0][candidates(0.2, "beta").index(0.2)] == program
    assert result.variants == sum(len(c) for c in counted)
    # the default's fitness is what the suite gives it on the same seeds
    [again] = fitness.evaluate([program], _config(short_task), "cpu")
    assert again.value == result.default_fitness.value


def test_a_variant_replaces_every_occurrence_of_its_number(monkeypatch):
    """AdamW's bias corrections ``1 - β ** t`` move with the β of its ``interp``; one call of
    ``evaluate`` per constant; the search is deterministic."""
    calls: list[list] = []

    def evaluate(programs, *args, **kwargs):
        calls.append(list(programs))
        # fitter the closer β₁ to 0.95 and the smaller the weight decay: nothing is trained
        out = []
        for program in programs:
            beta1 = program.body[0].expr.args[2].value
            decay = program.body[4].expr.args[1].args[0].value
            out.append(Fitness(1 - abs(beta1 - 0.95) - decay, {}, 0.01))
        return out

    monkeypatch.setattr(fitness.tuning, "evaluate", evaluate)
    monkeypatch.setattr(fitness.tuning, "suite_baselines", lambda *args: {})
    adamw = load_known("adamw")
    config = SuiteConfig(tasks=("ill_conditioned",))
    result = fitness.tuning._search(adamw, config, "cpu", rounds=2)
    assert result.tuned == {"beta1": 0.9474, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    assert result.changed == ["beta1", "weight_decay"]
    text = str(result.program)
    assert "interp(g, m, 0.9474)" in text and "1 - 0.9474 ** t" in text and "0 * w" in text
    for program in [p for call in calls for p in call]:
        body = {s.target: s.expr for s in program.body}
        # mhat = m / (1 - β₁ ** t), vhat = v / (1 - β₂ ** t): the βs of the two interps
        assert body["mhat"].args[1].args[1].args[0] == body["m"].args[2]
        assert body["vhat"].args[1].args[1].args[0] == body["v"].args[2]
    # one call per constant and round, each variant once: round 1 tries 5 β₁ (the default
    # among them), 4 β₂, 4 ε, 5 weight decays; round 2 the same around the new values, except
    # the weight decay (0 stays 0) and the current program (trained already)
    assert [len(c) for c in calls] == [5, 4, 4, 5, 4, 4, 4]
    assert result.variants == 30
    assert fitness.tuning._search(adamw, config, "cpu", rounds=2) == result  # deterministic


def test_a_second_call_trains_nothing_and_a_damaged_file_is_recomputed(
    short_task, counted, fresh_cache
):
    program, config = parse_program(BAD_MOMENTUM), _config(short_task)
    first = tune(program, config, "cpu", rounds=1)
    path = tuning_path(program, config, "cpu", rounds=1)
    assert path.parent == fresh_cache / "tuned" and path.is_file()
    trained = len(counted)
    second = tune(program, config, "cpu", rounds=1)
    assert len(counted) == trained  # no call of evaluate: read from the cache
    assert second.cached and not first.cached
    assert (second.program, second.default, second.tuned, second.variants) == (
        first.program,
        first.default,
        first.tuned,
        first.variants,
    )
    for a, b in [(first.fitness, second.fitness), (first.default_fitness, second.default_fitness)]:
        assert (a.value, a.uncertainty, a.tasks) == (b.value, b.uncertainty, b.tasks)
    # other search settings, other seeds: another file
    assert tuning_path(program, config, "cpu", rounds=2) != path
    other = SuiteConfig(**{**config.to_dict(), "seeds": (5,)})
    assert tuning_path(program, other, "cpu", rounds=1) != path
    for damaged in ('{"program": ', json.dumps({"default": {}}), "\x00\xff"):
        path.write_bytes(damaged.encode("latin-1"))
        with pytest.warns(CacheWarning, match="damaged tuning cache file"):
            again = tune(program, config, "cpu", rounds=1)
        assert not again.cached and again.tuned == first.tuned
        assert json.loads(path.read_text())["tuned"] == first.tuned


def test_a_program_without_constants_is_only_evaluated(short_task, counted):
    result = tune(load_known("sgd"), _config(short_task), "cpu")
    assert result.default == result.tuned == {} and result.variants == 1
    assert result.program == load_known("sgd") and result.fitness == result.default_fitness
    assert [len(c) for c in counted] == [1]


def test_cli_prints_the_table_and_writes_the_tuned_program(short_task, tmp_path, capsys):
    source = tmp_path / "bad_momentum.py"
    source.write_text(BAD_MOMENTUM)
    out = tmp_path / "tuned.py"
    args = ["tune", str(source), "--task", short_task, "--seeds", "1", "--rounds", "1"]
    assert main([*args, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split() == ["constant", "default", "tuned"]
    beta = load_program(out).body[0].expr.args[0].args[0].value  # m = β * m + g
    assert text.splitlines()[1].split() == ["beta", "0.2", repr(beta)] and beta > 0.2
    assert "fitness (1.0 = tuned AdamW)" in text and f"wrote {out}" in text
    assert "  default 0." in text and "  tuned   " in text
    assert main(args) == 0  # the second time from the cache
    assert "(from the cache: nothing trained now)" in capsys.readouterr().out


def test_cli_without_constants_says_so_and_trains_nothing(monkeypatch, capsys):
    monkeypatch.setattr(fitness.tuning, "tune", lambda *a, **k: pytest.fail("trained"))
    assert main(["tune", "sgd", "--task", "ill_conditioned"]) == 0
    out = capsys.readouterr().out
    assert out == "sgd: no named constants to tune (whole numbers stay in the code)\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "no_such_task"], "unknown task 'no_such_task'"),
        (["--seeds", "0"], "--seeds must be between 1 and 64"),
        (["--rounds", "0"], "--rounds must be at least 1"),
    ],
)
def test_cli_bad_arguments_are_one_line_and_exit_2(args, message, counted, capsys):
    assert main(["tune", "adamw", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"evodisc: error: {message}") and err.count("\n") == 1
    assert counted == []
