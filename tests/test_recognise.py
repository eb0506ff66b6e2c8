"""Recognition: exact equivalence by functional hash, hyper-parameters read off by structure,
similarity of update directions on the probe."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evodisc import parse_program
from evodisc.inspect.recognise import (
    FAMILIES,
    closest_known,
    deviation,
    fit,
    member,
    recognise,
    similarity,
)
from evodisc.inspect.simplify import simplify
from evodisc.program import Const, walk
from search_spaces.zoo import load_known, zoo

LION_0899 = """\
def train(g, lr, m):
    update = sign(interp(g, m, 0.899))
    m = interp(g, m, 0.997)
    return lr * update, m
"""


def test_every_zoo_optimizer_has_a_family_whose_constants_it_contains():
    assert set(FAMILIES) == set(zoo())
    for name, family in FAMILIES.items():
        program = load_known(name)
        constants = {
            n.value
            for e in [s.expr for s in program.body] + list(program.returns)
            for n in walk(e)
            if isinstance(n, Const)
        }
        names = [n for n, _ in family.constants]
        defaults = [d for _, d in family.constants]
        assert len(set(names)) == len(names) and len(set(defaults)) == len(defaults), name
        assert set(defaults) <= constants, name


@pytest.mark.parametrize("name", sorted(zoo()))
def test_every_zoo_optimizer_is_recognised_as_itself(name):
    matches = recognise(load_known(name))
    assert matches[0].name == name and matches[0].exact and not matches[0].fitted
    assert matches[0].describe() == f"equivalent to {FAMILIES[name].title}"
    assert len(matches) == 3


def test_a_lion_with_other_betas_is_equivalent_to_that_family_member():
    match = closest_known(parse_program(LION_0899))
    assert match.name == "lion" and match.exact and match.fitted
    assert match.describe() == "equivalent to Lion with β₁ = 0.899, β₂ = 0.997"


def test_a_lion_on_a_cosine_schedule_of_T_is_lion_but_where_the_schedule_ends():
    """The probe is one run: T = its 300 steps. The schedule scales Lion's update, which keeps
    its direction at every step but the last, where the cosine reaches 0."""
    scheduled = """\
def train(g, lr, t, T, m):
    update = sign(interp(g, m, 0.9)) * 0.5 * (1 + cos(3.141592653589793 * t / T))
    m = interp(g, m, 0.99)
    return lr * update, m
"""
    match = closest_known(parse_program(scheduled))
    assert match.name == "lion" and not match.exact
    assert match.score == pytest.approx(299 / 300, abs=1e-9)


def test_constants_are_read_off_a_differently_written_program():
    """0.1·g + 0.9·m spelled out, 1 - 0.85 unfolded: simplification brings it to the family's
    form, and the fit reads β₁ = 0.85."""
    program = parse_program(
        "def train(g, lr, t, m, v):\n"
        "    v = 0.999 * v + 0.001 * g * g\n"
        "    m = 0.85 * m + (1 - 0.85) * g\n"
        "    return lr * m / (1 - 0.85 ** t) / (sqrt(v / (1 - 0.999 ** t)) + 1e-8), m, v\n"
    )
    closest = simplify(program).closest
    assert closest.name == "adam" and closest.exact
    assert closest.describe() == "equivalent to Adam with β₁ = 0.85, β₂ = 0.999"


def test_fit_sees_through_extra_terms_and_a_transformed_gradient():
    program = parse_program(
        "def train(w, g, lr, v):\n"
        "    g = arcsin(clip(g, lr))\n"
        "    update = 0.4602 * w + sign(interp(g, v, 0.899))\n"
        "    v = interp(g, v, 0.996991)\n"
        "    return 0.0002 * lr * update, v\n"
    )
    from evodisc.inspect.recognise import _outputs

    values = fit(_outputs(program), load_known("lion"), FAMILIES["lion"])
    assert values == {"β₁": 0.899, "β₂": 0.996991}
    assert fit(_outputs(program), load_known("sgd"), FAMILIES["sgd"]) == {}
    lion = next(m for m in recognise(program, top=19) if m.name == "lion")
    assert lion.fitted and not lion.exact and lion.score > lion.default_score


def test_member_replaces_every_occurrence_of_a_hyper_parameter():
    adam = member(load_known("adam"), FAMILIES["adam"], {"β₁": 0.8})
    text = str(adam)
    assert "interp(g, m, 0.8)" in text and "0.8 ** t" in text
    constants = {n.value for s in adam.body for n in walk(s.expr) if isinstance(n, Const)}
    assert 0.9 not in constants and 0.999 in constants


def test_similarity_is_the_mean_cosine_of_the_update_directions():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 50))
    assert similarity(a, a) == pytest.approx(1.0)
    assert similarity(a, 1e-4 * a) == pytest.approx(1.0)  # any learning-rate scale
    assert similarity(a, -a) == pytest.approx(-1.0)
    signs = np.sign(a)
    flipped = signs.copy()
    flipped[:, :10] *= -1  # 40 of 50 signs agree: 2 · 0.8 − 1
    assert similarity(signs, flipped) == pytest.approx(0.6)
    assert math.isnan(similarity(a, np.full_like(a, np.nan)))
    assert deviation(a, a) == 0 and deviation(a, 1.1 * a) == pytest.approx(0.1)
    assert deviation(a, np.full_like(a, np.inf)) == math.inf


def test_a_program_that_is_not_finite_scores_not_applicable():
    matches = recognise(parse_program("def train(g, lr):\n    return lr * log(g)\n"))
    assert not any(m.exact for m in matches)
    assert all(m.describe().endswith("n/a (not finite)") for m in matches)


def test_scores_rank_related_rules_above_unrelated_ones():
    """Momentum is closer to Nesterov than to signSGD; Adam closer to AdamW than to SGD."""
    by_name = {m.name: m.score for m in recognise(load_known("momentum"), top=19)}
    assert by_name["nesterov"] > by_name["signsgd"]
    by_name = {m.name: m.score for m in recognise(load_known("adam"), top=19)}
    assert by_name["adamw"] > 0.99 > by_name["sgd"]
