"""The search-space interface: what the evolution needs from a space, whatever its genotype.

A search space proposes *genotypes* (a program in the program space, a :class:`Genome` in the
genome space) and turns each into the :class:`~evodisc.program.Program` that is hashed, trained,
simplified, exported and replayed like any other. :class:`~search_spaces.evolution.
RegularizedEvolution` works on genotypes through this interface only, so the same evolution,
controller and campaign directory run either space.

Implementations: :class:`search_spaces.programs.ProgramSearch` (the program space, over
:class:`~search_spaces.space.ProgramSpace`) and :class:`search_spaces.genome.GenomeSpace`;
:func:`search_spaces.spaces.open_space` gives the one a ``[space]`` section describes.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from typing import Any, ClassVar, Protocol

from evodisc.program import Program
from evodisc.validity import Validity

#: A search space's genotype (its own type; :class:`Any` here).
Genotype = Any


class SearchSpace(Protocol):
    """What regularized evolution asks of a search space. Every method is deterministic given
    its ``rng`` (a :class:`random.Random` that the evolution draws from a named stream)."""

    #: The name a campaign file's ``[space] kind`` gives it.
    kind: ClassVar[str]
    #: Whether the genotype *is* the program (then a checkpoint stores it once, as the
    #: program's JSON: the layout of checkpoints written before there were other spaces).
    genotype_is_program: ClassVar[bool]
    #: Whether :meth:`crossover` is defined (``[evolution] crossover`` > 0 needs it).
    has_crossover: ClassVar[bool]

    def mutation_names(self) -> tuple[str, ...]:
        """Every mutation's name (``[evolution.mutation_weights]`` weighs them; 1.0 each by
        default)."""
        ...

    def warm_start_names(self) -> Collection[str]:
        """The known optimizers (zoo names) the space can start from."""
        ...

    def warm_start(self, name: str) -> Genotype:
        """The genotype of the known optimizer ``name`` (one of :meth:`warm_start_names`)."""
        ...

    def random(self, rng: random.Random) -> Genotype:
        """A random genotype."""
        ...

    def mutation_table(
        self, genotype: Genotype, weights: Mapping[str, float]
    ) -> tuple[list[str], list[float]]:
        """The mutations a draw for ``genotype`` chooses among and their weights
        (``rng.choices(names, weights)[0]`` is the draw): those with a positive weight that
        apply to it, or all with a positive weight when none applies."""
        ...

    def mutate(self, name: str, genotype: Genotype, rng: random.Random) -> Genotype:
        """``genotype`` changed by the mutation ``name``."""
        ...

    def crossover(self, a: Genotype, b: Genotype, rng: random.Random) -> Genotype:
        """A child mixing ``a`` and ``b`` (only where :attr:`has_crossover`)."""
        ...

    def to_program(self, genotype: Genotype) -> Program:
        """The program the genotype stands for (what is hashed and trained)."""
        ...

    def check(self, program: Program) -> Validity:
        """Whether ``program`` can be a candidate here, and its functional hash."""
        ...

    def tune_variants(self, genotype: Genotype) -> list[tuple[str, Genotype]]:
        """One coordinate step around the genotype's constants (optional: a space without it
        cannot run ``[evolution] tune_constants``): for each constant, each of its other
        :func:`~evodisc.constant_steps.candidates`, the others held, as ``("<name>=<value>",
        variant)``."""
        ...

    def to_json(self, genotype: Genotype) -> str:
        """The genotype as canonical JSON text."""
        ...

    def from_json(self, text: str) -> Genotype:
        """The genotype :meth:`to_json` wrote."""
        ...
