"""Aggregates of the suite's per-task ratios (fitness.aggregate, the ``[fitness] aggregate`` key):
what one task can and cannot carry, their order, their sensitivities (checked numerically), the
uncertainty they carry, the Pareto ranking across tasks, and the cache keys."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from evodisc.campaign.config import CampaignError, load_campaign
from evodisc.settings import SettingError
from fitness.aggregate import AGGREGATES, pareto_ranks, power_mean
from fitness.baselines import baseline_path
from fitness.config import SuiteConfig
from fitness.normalise import RATIO_CAP, RATIO_FLOOR, WORST_FITNESS, suite_value, suite_weights
from fitness.suite import Fitness, TaskFitness
from fitness.tasks import load_task
from fitness.tuning import tuning_path
from fitness.uncertainty import RatioError, suite_uncertainty
from search_spaces.zoo import load_known

#: AdaGrad's shape on the suite (docs/fitness.md): far better on one task, a little worse on
#: the three others.
CARRIED = [1.6, 0.9, 0.9, 0.9]
NOT_GEOMEAN = [name for name in AGGREGATES if name != "geomean"]


def test_one_task_carries_the_geometric_mean_but_no_other_aggregate():
    assert suite_value(CARRIED, "geomean") > 1.0  # one task outweighs three small losses
    for name in NOT_GEOMEAN:
        assert suite_value(CARRIED, name) < 1.0, name
    assert suite_value(CARRIED, "worst_half") == pytest.approx(0.9)
    assert suite_value(CARRIED, "min") == pytest.approx(0.9)
    # ... and a rule good on every task still scores above 1 under each
    for name in AGGREGATES:
        assert suite_value([1.2, 1.1, 1.05, 1.3], name) > 1.0, name


def test_order_properties():
    ratios = [0.5, 1.2, 0.8, 2.0]
    values = {name: suite_value(ratios, name) for name in AGGREGATES}
    # min ≤ worst half ≤ geometric mean, and the soft minimum in between min and the mean
    assert values["min"] <= values["worst_half"] <= values["geomean"]
    assert values["min"] < values["softmin"] < values["geomean"]
    assert values["min"] == pytest.approx(0.5)
    for name in AGGREGATES:
        # equal ratios: that ratio; the order of the tasks does not matter
        assert suite_value([0.7] * 4, name) == pytest.approx(0.7)
        for permuted in itertools.permutations(ratios):
            assert suite_value(list(permuted), name) == pytest.approx(values[name])
        # better on one task is never worse
        for i in range(len(ratios)):
            better = ratios[:i] + [ratios[i] * 1.5] + ratios[i + 1 :]
            assert suite_value(better, name) >= values[name], name
        # the floor and the cap apply to every aggregate; diverged everywhere is the worst
        assert suite_value([0.0, 1.0], name) == suite_value([RATIO_FLOOR, 1.0], name)
        assert suite_value([1e6, 1.0], name) == suite_value([RATIO_CAP, 1.0], name)
        assert suite_value([0.0, 0.0], name) == WORST_FITNESS == suite_value([], name)
        assert math.isnan(suite_value([math.nan, 1.0], name))
    # the soft minimum approaches the minimum as its power falls
    logs = np.log(ratios)
    powers = [power_mean(p)(logs)[0] for p in (-1.0, -4.0, -32.0)]
    assert powers[0] > powers[1] > powers[2] > math.log(0.5) - 1e-9
    assert math.exp(powers[2]) == pytest.approx(0.5, rel=0.05)
    with pytest.raises(ValueError, match="negative power"):
        power_mean(0.5)


@pytest.mark.parametrize("name", list(AGGREGATES))
def test_sensitivities_are_the_derivatives_of_the_log_value(name):
    ratios = [0.55, 1.3, 0.8, 2.2]  # distinct: min and worst_half are differentiable here
    value, weights = suite_weights(ratios, name)
    assert value == suite_value(ratios, name)
    assert sum(weights) == pytest.approx(1.0) and all(w >= 0 for w in weights)
    step = 1e-6
    for i, ratio in enumerate(ratios):
        up = ratios[:i] + [ratio * math.exp(step)] + ratios[i + 1 :]
        down = ratios[:i] + [ratio * math.exp(-step)] + ratios[i + 1 :]
        numeric = (math.log(suite_value(up, name)) - math.log(suite_value(down, name))) / (2 * step)
        assert weights[i] == pytest.approx(numeric, abs=1e-6)


def test_the_uncertainty_counts_each_task_by_its_sensitivity():
    errors = [
        RatioError(0.02, 7.0),
        RatioError(0.05, 7.0),
        RatioError(0.01, 7.0),
        RatioError(0.03, 7.0),
    ]
    ratios = [0.55, 1.3, 0.8, 2.2]
    value, weights = suite_weights(ratios, "geomean")
    # the geometric mean's sensitivities are the default: the same limit as before the choice
    assert suite_uncertainty(value, errors, weights) == pytest.approx(
        suite_uncertainty(value, errors)
    )
    # the minimum's value is the worst task's ratio: only that task's noise counts
    worst, weights = suite_weights(ratios, "min")
    alone = suite_uncertainty(worst, [errors[0]])
    assert suite_uncertainty(worst, errors, weights) == pytest.approx(alone)
    unknown = [RatioError(math.nan, math.nan), *errors[1:]]
    assert math.isnan(suite_uncertainty(worst, unknown, weights))  # the task that counts
    assert suite_uncertainty(worst, [errors[0], *unknown[:1], *errors[2:]], weights) == (
        pytest.approx(alone)
    )  # a task that does not count may have an unknown noise


def test_fitness_of_uses_the_aggregate():
    tasks = {
        f"t{i}": TaskFitness(f"t{i}", 1.0, 0.01, r, None, RatioError(0.02, 7.0))
        for i, r in enumerate(CARRIED)
    }
    for name in AGGREGATES:
        fitness = Fitness.of(tasks, name)
        assert fitness.value == pytest.approx(suite_value(CARRIED, name))
        assert fitness.as_cached().details["tasks"]["t0"]["ratio"] == 1.6  # per-task ratios kept
    assert Fitness.of(tasks).value == Fitness.of(tasks, "softmin").value  # the default


def test_pareto_ranks_across_tasks():
    ratios = [
        [1.0, 2.0],  # rank 1: nothing beats it on both tasks
        [2.0, 1.0],  # rank 1
        [0.5, 0.5],  # rank 3: below [1, 1]
        [1.0, 1.0],  # rank 2: below both of the first, above the third
        [1.0, 2.0],  # equal to the first: the same rank
    ]
    assert pareto_ranks(ratios) == [1, 1, 3, 2, 1]
    assert pareto_ranks([]) == []
    with pytest.raises(ValueError, match="the same tasks"):
        pareto_ranks([[1.0], [1.0, 2.0]])


def test_the_aggregate_changes_the_cache_key_but_not_the_baselines():
    default = SuiteConfig(tasks=("ill_conditioned",))
    geomean = SuiteConfig(tasks=("ill_conditioned",), aggregate="geomean")
    keys = {
        name: SuiteConfig(tasks=("ill_conditioned",), aggregate=name).cache_key("cpu")
        for name in AGGREGATES
    }
    assert len(set(keys.values())) == len(AGGREGATES)
    assert keys["softmin"] == default.cache_key("cpu")  # the default is the soft minimum
    task = load_task("ill_conditioned")
    softmin = SuiteConfig(tasks=("ill_conditioned",), aggregate="softmin")
    assert baseline_path(task, softmin, "cpu") == baseline_path(task, geomean, "cpu")
    lion = load_known("lion")
    assert tuning_path(lion, softmin, "cpu") != tuning_path(lion, geomean, "cpu")
    assert SuiteConfig.from_dict(softmin.to_dict()) == softmin  # crosses to an evaluator
    with pytest.raises(SettingError, match="aggregate: expected one of 'geomean'"):
        SuiteConfig(aggregate="mean")


def test_a_campaign_file_chooses_the_aggregate(tmp_path):
    path = tmp_path / "c.toml"
    budget = "[budget]\nevaluations = 8\n"
    path.write_text(f'{budget}[fitness]\naggregate = "worst_half"\n')
    assert load_campaign(path).fitness.aggregate == "worst_half"
    path.write_text(f'{budget}[fitness]\naggregate = "median"\n')
    with pytest.raises(CampaignError) as error:
        load_campaign(path)
    message = str(error.value)
    assert "aggregate" in message and "'softmin'" in message and "\n" not in message
