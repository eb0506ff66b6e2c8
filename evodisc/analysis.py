"""Static analysis of programs: dependencies, dead code, memory, reductions.

Dependencies are tracked across steps: a state slot feeds the next step's computation, so the
update depends on ``g`` if ``g`` reaches it directly or through any state slot the update reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from evodisc.primitives import PRIMITIVES
from evodisc.program import Assign, Call, Expr, Program, names_used, walk


def _output_roots(program: Program) -> list[set[str]]:
    """For each return value, the parameters it depends on within one step."""
    roots: dict[str, set[str]] = {p: {p} for p in program.params}
    for statement in program.body:
        roots[statement.target] = set().union(*(roots[n] for n in names_used(statement.expr)))
    return [set().union(*(roots[n] for n in names_used(e))) for e in program.returns]


def update_dependencies(program: Program) -> tuple[set[str], set[str]]:
    """``(inputs, slots)``: every parameter the update depends on over any number of steps, and
    the state slots it needs (the others can be removed without changing any update)."""
    roots = _output_roots(program)
    slot_roots = dict(zip(program.state, roots[1:], strict=True))
    needed_inputs = set(roots[0])
    frontier = [p for p in needed_inputs if p in slot_roots]
    needed_slots: set[str] = set()
    while frontier:
        slot = frontier.pop()
        if slot in needed_slots:
            continue
        needed_slots.add(slot)
        for p in slot_roots[slot]:
            needed_inputs.add(p)
            if p in slot_roots and p not in needed_slots:
                frontier.append(p)
    return needed_inputs, needed_slots


def eliminate_dead_code(program: Program) -> Program:
    """Remove statements and state slots that cannot affect any update."""
    _, needed_slots = update_dependencies(program)
    kept_state = [s for s in program.state if s in needed_slots]
    state_returns = dict(zip(program.state, program.returns[1:], strict=True))
    returns = (program.update, *(state_returns[s] for s in kept_state))
    params = tuple(p for p in program.params if p not in program.state or p in needed_slots)

    return Program(params, live_statements(program.body, returns), tuple(returns))


def live_statements(body: Sequence[Assign], outputs: Sequence[Expr]) -> tuple[Assign, ...]:
    """The statements of ``body`` whose value reaches one of ``outputs`` (straight-line code)."""
    live: set[str] = set().union(*(names_used(e) for e in outputs))
    kept: list[Assign] = []
    for statement in reversed(body):
        if statement.target in live:
            live.discard(statement.target)
            live |= names_used(statement.expr)
            kept.append(statement)
    return tuple(reversed(kept))


def ignores_gradient(program: Program) -> bool:
    """True when no update can depend on ``g`` (such a program cannot optimise anything)."""
    inputs, _ = update_dependencies(program)
    return "g" not in inputs


def uses_reduction(program: Program) -> bool:
    """Whether a live statement reduces over a tensor (``norm``, ``rms``, ``mean``): such a
    program must see one parameter tensor at a time, and its hash needs another probe size."""
    pruned = eliminate_dead_code(program)
    exprs = [s.expr for s in pruned.body] + list(pruned.returns)
    return any(
        type(node) is Call and PRIMITIVES[node.op].reduction for e in exprs for node in walk(e)
    )


@dataclass(frozen=True)
class ProgramInfo:
    """Summary printed by ``evodisc show`` and stored with candidates."""

    statements: int  # assignments in the program as written
    live_statements: int  # assignments left after dead-code elimination
    state_slots: int  # state slots as written
    memory: int  # state slots actually needed = tensors kept per parameter
    uses_gradient: bool  # False: no update depends on g (see evodisc.validity for the rest)
    uses_reduction: bool  # a live statement reduces over a tensor (norm, rms, mean)


def analyse(program: Program) -> ProgramInfo:
    """Static facts about ``program``."""
    pruned = eliminate_dead_code(program)
    return ProgramInfo(
        statements=len(program.body),
        live_statements=len(pruned.body),
        state_slots=len(program.state),
        memory=len(pruned.state),
        uses_gradient=not ignores_gradient(program),
        uses_reduction=uses_reduction(pruned),
    )
