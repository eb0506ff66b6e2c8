"""Whether a program can be a candidate optimizer, and if not, why: the one check that
``evodisc show``, the fitness screen and the campaign log all use.

A program is *invalid* when its update never depends on ``g`` (it cannot optimise anything),
when its update is not finite on the functional hash's probe inputs (NaN or ±inf: such a program
would only diverge), or when it exceeds a size limit the caller sets. Invalid candidates get the
worst fitness without training; the search goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from evodisc.analysis import ProgramInfo, analyse
from evodisc.hashing import RuleIdentity, functional_hash_info, rule_identity
from evodisc.program import Program


@dataclass(frozen=True)
class Validity:
    """A program's functional hash, the reasons it cannot be a candidate (none: valid), the
    static facts they were judged on, and the program (for :attr:`rule`)."""

    functional_hash: str
    problems: tuple[str, ...]
    info: ProgramInfo
    program: Program = field(compare=False, repr=False)

    @cached_property
    def rule(self) -> RuleIdentity:
        """The program's rule identity (its hash up to a positive factor of an lr-linear
        update, and the factor: :func:`evodisc.hashing.rule_identity`), computed on first
        use: only a screen that merges scale variants asks for it."""
        return rule_identity(self.program, self.functional_hash)

    @property
    def valid(self) -> bool:
        """True when nothing stops the program from being trained as a candidate."""
        return not self.problems

    @property
    def reason(self) -> str:
        """The problems as one sentence (empty when valid)."""
        return "; ".join(self.problems)


def check_candidate(
    program: Program, max_statements: int | None = None, max_memory: int | None = None
) -> Validity:
    """Hash ``program`` and list what makes it invalid; ``max_statements`` bounds the statements
    as written, ``max_memory`` the state slots the update needs (tensors kept per parameter)."""
    hashed = functional_hash_info(program)
    info = analyse(program)
    problems = []
    if not info.uses_gradient:
        problems.append("the update never depends on the gradient g")
    if not hashed.finite:
        problems.append("its update is not finite (NaN or inf) on the probe inputs")
    if max_statements is not None and info.statements > max_statements:
        problems.append(f"{info.statements} statements, more than the limit of {max_statements}")
    if max_memory is not None and info.memory > max_memory:
        problems.append(f"{info.memory} state slots needed, more than the limit of {max_memory}")
    return Validity(hashed.digest, tuple(problems), info, program)
