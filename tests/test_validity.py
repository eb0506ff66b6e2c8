"""Candidate validity (:func:`evodisc.validity.check_candidate`): what makes a program unfit to
train, and the sentence that says why."""

from __future__ import annotations

from evodisc.analysis import analyse
from evodisc.hashing import functional_hash
from evodisc.program import parse_program
from evodisc.validity import check_candidate
from search_spaces.zoo import load_known

ADAMW = load_known("adamw")
IGNORES_G = parse_program("def train(w, g, lr):\n    return lr * w\n")
NOT_FINITE = parse_program("def train(g, lr):\n    return lr * sqrt(-abs(g))\n")


def test_adamw_is_a_valid_candidate():
    validity = check_candidate(ADAMW)
    assert validity.valid and validity.problems == () and validity.reason == ""
    assert validity.functional_hash == functional_hash(ADAMW)


def test_a_program_that_ignores_the_gradient_is_invalid():
    validity = check_candidate(IGNORES_G)
    assert not validity.valid
    assert validity.problems == ("the update never depends on the gradient g",)
    assert validity.functional_hash == functional_hash(IGNORES_G)


def test_a_non_finite_update_is_invalid():
    validity = check_candidate(NOT_FINITE)  # NaN wherever g != 0
    assert not validity.valid
    (problem,) = validity.problems
    assert "not finite" in problem and "NaN or inf" in problem


def test_every_problem_is_listed_in_one_sentence():
    both = parse_program("def train(w, g, lr):\n    return lr * log(-abs(w))\n")
    validity = check_candidate(both)
    assert len(validity.problems) == 2
    assert "gradient g" in validity.problems[0] and "not finite" in validity.problems[1]
    assert validity.reason == "; ".join(validity.problems)


def test_size_limits_are_inclusive_and_count_what_is_needed():
    info = analyse(ADAMW)
    assert check_candidate(ADAMW, info.statements, info.memory).valid
    over = check_candidate(ADAMW, max_statements=info.statements - 1, max_memory=info.memory - 1)
    assert over.problems == (
        f"{info.statements} statements, more than the limit of {info.statements - 1}",
        f"{info.memory} state slots needed, more than the limit of {info.memory - 1}",
    )
    # memory counts the slots the update needs, not the slots written
    unused_slot = parse_program(
        "def train(g, lr, m, unused):\n"
        "    m = interp(g, m, 0.9)\n"
        "    unused = unused + g\n"
        "    return lr * m, m, unused\n"
    )
    assert check_candidate(unused_slot, max_memory=1).valid
    assert not check_candidate(unused_slot, max_memory=0).valid
    # statements count as written, dead ones included
    assert check_candidate(unused_slot, max_statements=2).valid
    assert "2 statements" in check_candidate(unused_slot, max_statements=1).reason
