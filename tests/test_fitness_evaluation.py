"""Fitness through the cache: equivalent programs are trained once, cached ones never again."""

from __future__ import annotations

import math

import pytest

from evodisc.fitness_cache import FitnessCache
from evodisc.program import parse_program
from evodisc.screen import WORST_FITNESS
from fitness.config import SuiteConfig
from fitness.evaluation import evaluate_cached
from fitness.suite import evaluate
from search_spaces.zoo import load_known

# One seed, for the baseline too: AdamW is then exactly its own baseline.
CONFIG = SuiteConfig(
    tasks=("ill_conditioned",), lrs=(1e-3, 1e-2), seeds=(0,), dtype="float64", baseline_seeds=(0,)
)

# Lion spelled differently: reordered, renamed, interp expanded, dead code.
LION_AGAIN = parse_program(
    """\
def train(w, g, lr, momentum):
    unused = exp(w)
    new_momentum = 0.99 * momentum + 0.01 * g
    direction = sign(0.9 * momentum + (1 - 0.9) * g)
    return direction * lr, new_momentum
"""
)
IGNORES_G = parse_program("def train(w, g, lr):\n    return lr * w\n")
NOT_FINITE = parse_program("def train(w, g, lr):\n    return lr * g / 0\n")


pytestmark = pytest.mark.usefixtures("fresh_cache")  # each test counts what gets trained


def test_equivalent_programs_are_trained_once_and_reuse_the_result(tmp_path):
    cache = FitnessCache(tmp_path / "cache")
    programs = [load_known("lion"), LION_AGAIN, load_known("adamw"), IGNORES_G, NOT_FINITE]
    first = evaluate_cached(programs, cache, CONFIG)
    assert [e.cache_hit for e in first] == [False, True, False, False, False]
    assert first[0].functional_hash == first[1].functional_hash
    assert first[1].result == first[0].result
    # the trained results are the fitness the trainer gives directly
    direct = evaluate([load_known("lion"), load_known("adamw")], CONFIG)
    assert first[0].result.fitness == pytest.approx(direct[0].value, rel=1e-12)
    assert first[2].result.fitness == pytest.approx(1.0)  # AdamW against itself
    assert first[0].result.status == "ok"
    assert set(first[0].result.details["tasks"]) == {"ill_conditioned"}
    # invalid candidates get the worst fitness without training, and the search goes on
    assert [e.result.status for e in first[3:]] == ["invalid", "invalid"]
    assert all(e.result.fitness == WORST_FITNESS for e in first[3:])
    assert "gradient" in first[3].result.details["reason"]
    assert "not finite" in first[4].result.details["reason"]
    assert len(cache) == 4


def test_a_persisted_cache_answers_a_new_campaign_without_training(tmp_path):
    cache = FitnessCache(tmp_path / "cache")
    first = evaluate_cached([load_known("lion"), load_known("sgd")], cache, CONFIG)
    cache.flush()
    reopened = FitnessCache(tmp_path / "cache")
    again = evaluate_cached([LION_AGAIN, load_known("sgd")], reopened, CONFIG)
    assert all(e.cache_hit for e in again)
    assert [e.result for e in again] == [e.result for e in first]
    assert reopened.hits == 2 and reopened.misses == 0


def test_another_configuration_is_another_key(tmp_path):
    other = SuiteConfig(tasks=("ill_conditioned",), lrs=(1e-3,), seeds=(0,), dtype="float64")
    assert other.cache_key("cpu") != CONFIG.cache_key("cpu")
    assert CONFIG.cache_key("cpu") != CONFIG.cache_key("cuda")
    cache = FitnessCache()
    evaluate_cached([load_known("sgd")], cache, CONFIG)
    [result] = evaluate_cached([load_known("sgd")], cache, other)
    assert not result.cache_hit and len(cache) == 2
    assert not math.isnan(result.result.fitness)
