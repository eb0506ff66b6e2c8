"""Static analysis: dead code, unused state slots, gradient use, memory."""

from __future__ import annotations

import torch

from evodisc.analysis import analyse, eliminate_dead_code, ignores_gradient
from evodisc.interpreter import compile_program, init_state, step
from evodisc.program import format_program, parse_program

WITH_DEAD_CODE = parse_program(
    """\
def train(w, g, lr, t, m, v, unused):
    junk = exp(g) * 3
    m = interp(g, m, 0.9)
    v = interp(square(g), v, 0.99)
    junk = junk + v
    u = sign(m)
    return u * lr, m, v, unused + junk
"""
)


def test_dead_statements_and_slots_are_removed():
    pruned = eliminate_dead_code(WITH_DEAD_CODE)
    assert format_program(pruned) == (
        "def train(w, g, lr, t, m):\n"
        "    m = interp(g, m, 0.9)\n"
        "    u = sign(m)\n"
        "    return u * lr, m\n"
    )


def test_dead_code_elimination_keeps_every_update():
    w = torch.randn(5)
    runs = []
    for program in (WITH_DEAD_CODE, eliminate_dead_code(WITH_DEAD_CODE)):
        compiled, state, weights, updates = compile_program(program), init_state(program, w), w, []
        for t in range(1, 6):
            update, state = step(compiled, weights, torch.sin(weights + t), 0.1, t, state)
            weights = weights - update
            updates.append(update)
        runs.append(torch.stack(updates))
    assert torch.equal(runs[0], runs[1])


def test_slot_needed_only_through_another_slot_is_kept():
    program = parse_program(
        """\
def train(g, lr, a, b):
    b = interp(g, b, 0.5)
    a = interp(b, a, 0.9)
    return lr * a, a, b
"""
    )
    assert eliminate_dead_code(program).state == ("a", "b")
    assert analyse(program).memory == 2


def test_gradient_use_is_tracked_through_state():
    through_state = parse_program(
        "def train(g, lr, m):\n    u = lr * m\n    m = interp(g, m, 0.9)\n    return u, m\n"
    )
    assert not ignores_gradient(through_state)  # u reads last step's m, which holds g
    ignores = parse_program(
        "def train(w, g, lr, m):\n    m = interp(g, m, 0.9)\n    return lr * w, m\n"
    )
    assert ignores_gradient(ignores)
    info = analyse(ignores)
    assert not info.uses_gradient and info.memory == 0 and info.state_slots == 1


def test_analyse_counts_statements_and_memory():
    info = analyse(WITH_DEAD_CODE)
    assert (info.statements, info.live_statements) == (5, 2)
    assert (info.state_slots, info.memory) == (3, 1)
    assert info.uses_gradient
