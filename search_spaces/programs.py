"""The program space behind the search-space interface (:mod:`search_spaces.interface`): the
genotype is the program itself, random programs come from :func:`~search_spaces.space.
random_program`, mutations from :data:`~search_spaces.mutations.MUTATIONS` (looked up at each
call, so a mutation registered there is usable at once), warm starts from the zoo. It defines
no crossover.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import ClassVar

from evodisc.constant_names import named_constants
from evodisc.constant_steps import coordinate_step
from evodisc.edit import replace_constants
from evodisc.program import Program, program_from_json, program_to_json
from evodisc.validity import Validity, check_candidate
from search_spaces import mutations
from search_spaces.space import ProgramSpace, random_program
from search_spaces.zoo import known, load_known


@dataclass(frozen=True)
class ProgramSearch:
    """The program space described by ``settings`` (a campaign's ``[space]``)."""

    settings: ProgramSpace

    kind: ClassVar[str] = "program"
    genotype_is_program: ClassVar[bool] = True
    has_crossover: ClassVar[bool] = False

    def mutation_names(self) -> tuple[str, ...]:
        return tuple(mutations.MUTATIONS)

    def warm_start_names(self) -> Collection[str]:
        return known()

    def warm_start(self, name: str) -> Program:
        return load_known(name)

    def random(self, rng: random.Random) -> Program:
        return random_program(rng, self.settings)

    def mutation_table(
        self, genotype: Program, weights: Mapping[str, float]
    ) -> tuple[list[str], list[float]]:
        return mutations.mutation_table(genotype, self.settings, weights)

    def mutate(self, name: str, genotype: Program, rng: random.Random) -> Program:
        return mutations.MUTATIONS[name](genotype, rng, self.settings)

    def crossover(self, a: Program, b: Program, rng: random.Random) -> Program:
        raise NotImplementedError("the program space defines no crossover")

    def to_program(self, genotype: Program) -> Program:
        return genotype

    def check(self, program: Program) -> Validity:
        """:func:`~evodisc.validity.check_candidate` within the space's statement and memory
        bounds."""
        settings = self.settings
        return check_candidate(program, settings.max_statements, settings.max_state_slots)

    def tune_variants(self, genotype: Program) -> list[tuple[str, Program]]:
        """For each named constant (:func:`~evodisc.constant_names.named_constants`), each of
        its other candidate values: the program with that number replaced wherever it appears
        (:func:`~evodisc.edit.replace_constants`, as :func:`fitness.tune` does; a value another
        constant holds is left out, so two constants never merge)."""
        named = named_constants(genotype)
        return [
            (f"{name}={value!r}", replace_constants(genotype, {named[name].value: value}))
            for name, value in coordinate_step(named)
        ]

    def to_json(self, genotype: Program) -> str:
        return program_to_json(genotype)

    def from_json(self, text: str) -> Program:
        return program_from_json(text)
