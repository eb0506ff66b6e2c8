"""A *rule* is a program up to its constants: AdamW with β₁ = 0.82 and AdamW with β₁ = 0.9 are
two variants of one rule. A search tunes constants freely, so its top programs by functional
hash are mostly constant variants of a few rules; the report lists rules (:func:`rule_key`).

**Structure.** :func:`structure_key` is the functional hash of the program with its named
constants (:func:`evodisc.export.named_constants`: the βs, ε, the weight decay and the others —
whole numbers stay, as they are part of the form) set to fixed stand-in values: two programs
that differ only in those constants get the same key, whatever their spelling (the hash sees
through reordering, renaming, dead code). Which constant of a role gets which stand-in must not
depend on the order the program is written in (Lion's β₂ may come first), so every assignment
within each role is hashed and the smallest hash is the key (up to :data:`MAX_ORDERINGS`; past
that, the order of appearance). Two constants that happen to be equal in one variant (β₁ = β₂)
are one named constant there, so that variant has another structure.

**Family.** A rule whose structure is a zoo optimizer's is that optimizer's family
(:func:`family`): "Lion up to constants".

To make more programs one rule (e.g. variants that differ by a scale of the update), extend
:func:`rule_key`: the report groups by it alone.
"""

from __future__ import annotations

import functools
import itertools
import math

from evodisc.edit import replace_constants
from evodisc.export import named_constants
from evodisc.hashing import functional_hash
from evodisc.program import Program
from search_spaces.zoo import zoo

#: The stand-ins are a Weyl sequence: irrational-looking numbers in (0, 1), all distinct.
_GOLDEN = 0.6180339887498949

#: The most assignments of stand-ins to constants hashed for one program.
MAX_ORDERINGS = 120


def _stand_in(index: int) -> float:
    return round((index + 1) * _GOLDEN % 1, 12)


def structure_key(program: Program) -> str:
    """The functional hash of ``program`` with its named constants replaced by stand-ins (the
    same for two programs that differ only in those constants; see the module's docstring)."""
    roles: dict[str, list[float]] = {}
    for constant in named_constants(program).values():
        roles.setdefault(constant.role, []).append(constant.value)
    count = math.prod(math.factorial(len(values)) for values in roles.values())
    if count > MAX_ORDERINGS:
        orderings = [tuple(roles.values())]
    else:
        orderings = itertools.product(*(itertools.permutations(v) for v in roles.values()))
    stand_ins = [_stand_in(i) for i in range(sum(map(len, roles.values())))]
    return min(
        functional_hash(
            replace_constants(
                program, dict(zip(itertools.chain(*ordering), stand_ins, strict=True))
            )
        )
        for ordering in orderings
    )


@functools.cache
def _zoo_structures() -> dict[str, str]:
    """Structure key → the zoo optimizer with that structure (the first in the zoo's order)."""
    structures: dict[str, str] = {}
    for name, entry in zoo().items():
        structures.setdefault(structure_key(entry.load()), name)
    return structures


def family(program: Program) -> str | None:
    """The zoo optimizer whose family ``program`` is in up to constants (``"lion"``), or None."""
    return _zoo_structures().get(structure_key(program))


def rule_key(program: Program) -> str:
    """What makes two programs one rule: ``family:NAME`` for a zoo family up to constants,
    else ``structure:KEY`` (:func:`structure_key`)."""
    key = structure_key(program)
    name = _zoo_structures().get(key)
    return f"family:{name}" if name else f"structure:{key}"
