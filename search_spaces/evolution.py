"""Regularized (aging) evolution, steady-state and resumable. Pure: no Ray, no torch.

Follows Real et al., "Regularized Evolution for Image Classifier Architecture Search" (AAAI 2019,
Algorithm 1) as the program search of Chen et al., "Symbolic Discovery of Optimization
Algorithms" (NeurIPS 2023, §2) uses it: warm start from AdamW, tournament selection, aging, and
restarts from the best program. Islands with ring migration follow SymbolicRegression.jl.

It works on the genotypes of a search space (:mod:`search_spaces.interface`: programs, or the
genomes of :mod:`search_spaces.genome`) through that interface; a candidate carries its
genotype and the program made from it, which is what is hashed and trained. Below, "program"
is short for the candidate's genotype and its program.

How an island evolves (candidate ``id`` belongs to island ``id % islands``, round-robin):

1. Its first ``population`` asks are seeds: ``random_programs`` random programs, the rest the
   warm-start zoo programs sharing the places evenly; the first copy of each zoo program is
   unchanged (``"seed:<name>"``), later copies are mutations of that first copy. With no
   warm-start programs, all seeds are random.
2. While the island has no told member, further asks mutate one of its seeds.
3. Then each ask is a tournament (:func:`tournament`) whose winner is mutated (a mutation drawn
   by ``mutation_weights`` among those that apply). With chance ``crossover`` (in a space that
   defines it) a second tournament's winner is drawn, and the child is the crossover of the two,
   then mutated (``"crossover:<second id>+<mutation>"``). A child with a parent's functional hash
   is mutated afresh, up to ``max_retries`` times. Invalid children are returned all the same: they
   are evaluated as the worst, and the campaign log shows them.
4. ``tell`` appends the member to its island's population and drops the oldest beyond
   ``population`` (:func:`age`; the oldest, not the worst). NaN and ±inf count as the worst.
5. Every ``restart_every`` tells, one island in turn loses its population and its plan and is
   re-seeded from the best program so far, as in step 1 with that program as the only zoo entry:
   an unchanged copy (``"restart:<id>"``), then mutations of it.
6. Every ``migration_every`` tells (with several islands), each island's ``migration_size``
   fittest members go to the next island (ring, :func:`migrants`): that island's next asks are
   unchanged copies (``"migration:<id>"``) which join its population once told.
7. With ``tune_constants``, a told valid member that joins its island and is strictly fitter
   than every earlier member of that island (since its last restart; a finite fitness) has its
   constants tuned, as the Lion search's ``hparam_tune`` does: its space's ``tune_variants``
   (one coordinate step: each named constant moved to each of its other
   :func:`~evodisc.constant_steps.candidates`, the others held) become that island's next asks
   (``"tune:<name>=<value>"``, the member as parent), those with the member's functional hash
   left out; they replace the variants of the island's earlier best still queued. A variant
   that wins in turn triggers the next step, so a structure is not rejected for its
   constants: an iterated coordinate search emerges inside the evolution.

Determinism: all randomness comes from named sub-streams of the one seed (:func:`substream`:
``selection`` for tournaments, ``mutation`` for mutations, crossovers and the crossover coin
(drawn only when ``crossover`` > 0), ``init`` for random programs). In one
process or across processes, the same config and the same sequence of ask/tell calls give the
same candidates, and ``from_state(config, state_dict())`` continues exactly as the original
would. A campaign whose evaluators finish in varying order tells in varying order, so only its
in-process (or otherwise ordered) runs repeat exactly.

DEAP is not used here: its ``selTournament`` draws from the global :mod:`random` module, which
would break the seeded, checkpointed sub-streams, and a one-member hall of fame (the best) needs
no library.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from evodisc.analysis import analyse, eliminate_dead_code
from evodisc.program import Const, Program, program_from_json, program_to_json, walk
from evodisc.settings import (
    BOOL,
    COUNT,
    NON_NEGATIVE,
    POSITIVE_INT,
    TEXT,
    SettingError,
    check_known,
    check_settings,
    int_between,
    list_of,
    number_between,
    setting,
    table_of,
)
from evodisc.validity import Validity
from search_spaces.interface import Genotype, SearchSpace
from search_spaces.space import DEFAULT_SPACE
from search_spaces.spaces import SpaceSettings, open_space
from search_spaces.zoo import known

#: The fitness a NaN or ±inf result counts as (fitness is higher-is-better).
WORST = -math.inf
#: ``state_dict()["format"]``; bumped when the state's layout changes.
STATE_FORMAT = "evodisc-evolution/1"
#: The named random streams of an evolution.
STREAMS = ("selection", "mutation", "init")
#: The label prefix of a tune variant (step 7).
TUNE = "tune:"
#: Labels of plan entries that are copies asked once (never an island's seeds, for step 2).
ONE_OFF = ("migration:", TUNE)


@dataclass(frozen=True)
class Candidate:
    """One program proposed by the evolution, with where it came from."""

    id: int  # campaign-wide, contiguous from 0, assigned by ``ask()``
    program: Program  # what is trained: the search space's to_program(genotype)
    parent_id: int | None  # None for seeds and random programs
    mutation: str  # "seed:adamw", "random", "restart:<id>", "migration:<id>",
    # "crossover:<other parent's id>+<mutation name>" or a mutation name
    island: int
    validity: Validity  # the space's check(program), computed once here
    genotype: Genotype = None  # the space's genotype; None: the program itself

    def __post_init__(self) -> None:
        if self.genotype is None:
            object.__setattr__(self, "genotype", self.program)


@dataclass(frozen=True)
class Member:
    """A told candidate in an island's population."""

    candidate: Candidate
    fitness: float  # finite, or WORST


@dataclass(frozen=True)
class EvolutionConfig:
    """Everything that shapes the search: a campaign file's ``[evolution]`` (the fields declared
    with :func:`~evodisc.settings.setting`), its ``[space]`` and its seed.

    ``space`` is the search space's settings (:mod:`search_spaces.spaces`: a program space, by
    default, or a genome space). ``mutation_weights`` is the whole table: a mutation left out is
    never used (unset: each of the space's mutations at 1.0; a campaign file's table is laid
    over that). In the program space, ``space.max_state_slots`` bounds the state slots
    mutations may add and the memory a valid candidate may need.
    """

    population: int = setting(int_between(1, 100_000), 64, "programs alive per island")
    tournament: int = setting(POSITIVE_INT, 8, "programs drawn per tournament (<= population)")
    mutation_weights: Mapping[str, float] = setting(
        table_of(NON_NEGATIVE, "numbers >= 0"),
        None,
        "relative weight per mutation of the space; unlisted mutations keep 1.0",
        shown="1.0 each",
    )
    crossover: float = setting(
        number_between(0, 1),
        0.0,
        "chance that a child is the crossover of two tournament winners, then mutated "
        "(genome space)",
    )
    warm_start: tuple[str, ...] = setting(
        list_of(TEXT, "optimizer names", empty=True),
        ("adamw",),
        "known optimizers the initial population cycles through",
    )
    random_programs: int = setting(COUNT, 0, "random programs in the initial population")
    restart_every: int = setting(
        COUNT, 0, "re-seed an island from the best every N results; 0 never"
    )
    islands: int = setting(int_between(1, 1024), 1, "independent populations")
    migration_every: int = setting(COUNT, 0, "send each island's best to the next every N; 0 never")
    migration_size: int = setting(POSITIVE_INT, 1, "programs sent per migration")
    max_retries: int = setting(
        int_between(0, 1000), 10, "re-mutations of a child equal to its parent"
    )
    tune_constants: bool = setting(
        BOOL,
        False,
        "when a result becomes its island's best, its constants' coordinate-search variants "
        "are that island's next asks",
    )
    merge_scale_variants: bool = setting(
        BOOL,
        True,
        "a positive multiple of a rule's lr-linear update is the same rule: scored once",
        shown="true (false for directories written before it existed)",
    )
    seed: int = 0
    space: SpaceSettings = DEFAULT_SPACE

    def __post_init__(self) -> None:
        check_settings(self)
        search = self.search_space
        if self.mutation_weights is None:
            weights = {name: 1.0 for name in search.mutation_names()}
            object.__setattr__(self, "mutation_weights", weights)
        population = self.population
        for key in ("tournament", "random_programs", "migration_size"):
            if getattr(self, key) > population:
                raise SettingError(key, f"at most population ({population})", getattr(self, key))
        if not self.warm_start and not self.random_programs:
            raise SettingError("random_programs", "> 0 when warm_start is empty", 0)
        room = population - self.random_programs
        if len(self.warm_start) > room:
            expected = f"at most population - random_programs ({room}) names"
            raise SettingError("warm_start", expected, self.warm_start)
        check_known("warm_start", self.warm_start, known(), "optimizer")
        expressible = search.warm_start_names()
        for name in self.warm_start:
            if name not in expressible:
                detail = (
                    f"{name!r} is not expressible in the {search.kind} space "
                    f"(these are: {', '.join(expressible)})"
                )
                raise SettingError("warm_start", detail, unknown=True)
        names = search.mutation_names()
        check_known("mutation_weights", self.mutation_weights, names, "mutation")
        if not any(self.mutation_weights.values()):
            raise SettingError("mutation_weights", "at least one weight > 0", self.mutation_weights)
        if self.crossover and not search.has_crossover:
            expected = f"0: the {search.kind} space defines no crossover"
            raise SettingError("crossover", expected, self.crossover)
        if self.tune_constants and not hasattr(search, "tune_variants"):
            expected = f"false: the {search.kind} space defines no tune variants"
            raise SettingError("tune_constants", expected, self.tune_constants)

    @property
    def search_space(self) -> SearchSpace:
        """The search space ``space`` describes (:func:`search_spaces.spaces.open_space`)."""
        return open_space(self.space)


@dataclass(frozen=True)
class Seed:
    """``copies`` asks of an island still to come from ``genotype`` (None: random ones)."""

    label: str  # the candidates' mutation: "seed:<name>", "random", "restart:<id>", …
    genotype: Genotype
    parent_id: int | None
    copies: int


@dataclass
class Island:
    """One aging population, the seeds it still has to ask, the seeds it was given, and the
    best fitness of any member it has had (step 7)."""

    population: list[Member] = field(default_factory=list)  # oldest first
    plan: list[Seed] = field(default_factory=list)
    seeds: list[Candidate] = field(default_factory=list)  # unchanged copies, for step 2
    best: float = WORST


def substream(seed: int, name: str) -> random.Random:
    """The random stream ``name`` of root ``seed`` (independent of the other names' streams)."""
    return random.Random(f"{seed}/{name}")


def _rank(member: Member) -> tuple[float, int]:
    """Sort key: fitter first, then older (lower id)."""
    return member.fitness, -member.candidate.id


def _zero_signs(program: Program) -> list[float]:
    """The signs of the program's zero constants (``==`` does not tell ``0.0`` from ``-0.0``,
    and the functional hash can)."""
    exprs = (*(s.expr for s in program.body), *program.returns)
    return [math.copysign(1.0, n.value) for e in exprs for n in walk(e)
            if type(n) is Const and n.value == 0]  # fmt: skip


def _same_code(a: Program, b: Program) -> bool:
    """Whether ``a`` and ``b`` are the same program, constants to the sign of zero."""
    return a == b and _zero_signs(a) == _zero_signs(b)


def tournament(members: Sequence[Member], size: int, rng: random.Random) -> Member:
    """The fittest of ``size`` members drawn uniformly with replacement (Real et al., Alg. 1);
    ties go to the lower id."""
    return max(rng.choices(members, k=size), key=_rank)


def age(population: Sequence[Member], member: Member, size: int) -> list[Member]:
    """``population`` with ``member`` appended and the oldest dropped beyond ``size``."""
    return [*population, member][-size:]


def migrants(populations: Sequence[Sequence[Member]], size: int) -> list[list[Member]]:
    """What each island receives: the ``size`` fittest members of the previous island (ring)."""
    best = [sorted(p, key=_rank, reverse=True)[:size] for p in populations]
    return [best[i - 1] for i in range(len(populations))]


def initial_plan(config: EvolutionConfig, space: SearchSpace) -> list[Seed]:
    """An island's first ``population`` asks (step 1 of the module docstring)."""
    names = config.warm_start
    zoo_places = config.population - config.random_programs if names else 0
    plan = [
        Seed(f"seed:{name}", space.warm_start(name), None, len(range(i, zoo_places, len(names))))
        for i, name in enumerate(names)
    ]
    random_places = config.population - zoo_places
    return plan + ([Seed("random", None, None, random_places)] if random_places else [])


class RegularizedEvolution:
    """Steady-state aging evolution with explicit, JSON-able state (see the module docstring).

    Any number of candidates may be outstanding (asked, not yet told).
    """

    def __init__(self, config: EvolutionConfig):
        self.config = config
        self._space = config.search_space
        self._rngs = {name: substream(config.seed, name) for name in STREAMS}
        plan = initial_plan(config, self._space)
        self._islands = [Island(plan=list(plan)) for _ in range(config.islands)]
        self._outstanding: dict[int, Candidate] = {}
        self._best: Member | None = None
        self._next_id = 0
        self._told = 0
        self._restarts = 0
        self._texts: dict[int, str] = {}  # candidate id -> program JSON (see state_dict)
        self._parents: dict[int, tuple] = {}  # candidate id -> _parent_facts (a cache)

    # -------------------------------------------------------------------------------- queries

    @property
    def best(self) -> tuple[int, float, Program] | None:
        """The fittest candidate told so far (ties: the lower id)."""
        if self._best is None:
            return None
        return self._best.candidate.id, self._best.fitness, self._best.candidate.program

    @property
    def outstanding(self) -> list[Candidate]:
        """Candidates asked and not yet told, in id order."""
        return list(self._outstanding.values())

    @property
    def populations(self) -> list[list[Member]]:
        """Each island's population, oldest first."""
        return [list(island.population) for island in self._islands]

    def population(self, island: int) -> list[Member]:
        """The population of island ``island``, oldest first."""
        return list(self._islands[island].population)

    @property
    def told(self) -> int:
        """How many results were told."""
        return self._told

    @property
    def asked(self) -> int:
        """How many candidates were asked for (the next id)."""
        return self._next_id

    # ------------------------------------------------------------------------------- ask/tell

    def ask(self) -> Candidate:
        """The next candidate to evaluate."""
        index = self._next_id % self.config.islands
        island = self._islands[index]
        if island.plan:
            candidate = self._from_plan(island, index)
        elif island.population:
            rng = self._rngs["selection"]
            parent = tournament(island.population, self.config.tournament, rng).candidate
            other = None
            if self.config.crossover and self._rngs["mutation"].random() < self.config.crossover:
                other = tournament(island.population, self.config.tournament, rng).candidate
            candidate = self._child(parent, index, other)
        else:
            candidate = self._child(self._rngs["selection"].choice(island.seeds), index)
        self._outstanding[candidate.id] = candidate
        return candidate

    def tell(self, candidate_id: int, fitness: float, join: bool = True) -> None:
        """Record the fitness (higher is better) of an outstanding candidate; ``join=False``:
        it does not join the population (a candidate a screen rejected), though it counts as
        told (for restarts and migrations)."""
        candidate = self._outstanding.pop(candidate_id, None)
        if candidate is None:
            raise KeyError(f"candidate {candidate_id} is not outstanding")
        fitness = float(fitness)
        member = Member(candidate, fitness if math.isfinite(fitness) else WORST)
        if join:
            island = self._islands[candidate.island]
            island.population = age(island.population, member, self.config.population)
            if self._best is None or _rank(member) > _rank(self._best):
                self._best = member
            if member.fitness > island.best:
                island.best = member.fitness
                if self.config.tune_constants and candidate.validity.valid:
                    rest = [s for s in island.plan if not s.label.startswith(TUNE)]
                    island.plan = self._tune_variants(candidate) + rest
        self._told += 1
        if self.config.restart_every and self._told % self.config.restart_every == 0:
            self._restart()
        if self.config.migration_every and self._told % self.config.migration_every == 0:
            self._migrate()

    # ------------------------------------------------------------------------------ internals

    def _new(
        self,
        genotype: Genotype,
        parent_id: int | None,
        mutation: str,
        island: int,
        program: Program | None = None,
        validity: Validity | None = None,
    ) -> Candidate:
        """A candidate with the next id; ``program`` and ``validity`` when already known."""
        if program is None:
            program = self._space.to_program(genotype)
        if validity is None:
            validity = self._space.check(program)
        candidate = Candidate(
            self._next_id, program, parent_id, mutation, island, validity, genotype
        )
        self._next_id += 1
        return candidate

    def _parent_facts(self, parent: Candidate) -> tuple[list[str], list[float], Program]:
        """The space's mutation table for ``parent`` (names, weights: ``rng.choices(names,
        weights)[0]`` is the draw) and its live code, kept while it is likely to be drawn again
        (tournament winners are mutated many times; in the program space the applicability
        checks walk the whole program)."""
        facts = self._parents.get(parent.id)
        if facts is None:
            if len(self._parents) >= 4 * self.config.population * self.config.islands:
                self._parents.clear()
            table = self.config.mutation_weights
            names, weights = self._space.mutation_table(parent.genotype, table)
            facts = names, weights, eliminate_dead_code(parent.program)
            self._parents[parent.id] = facts
        return facts

    def _child(self, parent: Candidate, island: int, other: Candidate | None = None) -> Candidate:
        """A mutation of ``parent`` (of its crossover with ``other``, when given), re-drawn while
        its functional hash equals a parent's.

        A child whose live code (after dead-code elimination) is a parent's has that parent's
        functional hash (the hash sees only the updates: :mod:`evodisc.hashing`), so it is
        re-drawn without hashing it; most re-draws are such mutations of dead code. The
        candidates are the same as when every child is hashed, and only the one returned is
        checked (the space's ``check``)."""
        rng = self._rngs["mutation"]
        names, weights, live = self._parent_facts(parent)
        start, parents = parent.genotype, [parent]
        if other is not None:
            start = self._space.crossover(parent.genotype, other.genotype, rng)
            names, weights = self._space.mutation_table(start, self.config.mutation_weights)
            parents.append(other)
        lives = [live] + [self._parent_facts(p)[2] for p in parents[1:]]
        hashes = {p.validity.functional_hash for p in parents}
        validity = None
        for _ in range(self.config.max_retries + 1):
            name = rng.choices(names, weights)[0]
            genotype = self._space.mutate(name, start, rng)
            program = self._space.to_program(genotype)
            code = eliminate_dead_code(program)
            if any(_same_code(code, known) for known in lives):
                validity = None  # a parent's hash: re-draw
                continue
            validity = self._space.check(program)
            if validity.functional_hash not in hashes:
                break
        mutation = name if other is None else f"crossover:{other.id}+{name}"
        return self._new(genotype, parent.id, mutation, island, program, validity)

    def _tune_variants(self, candidate: Candidate) -> list[Seed]:
        """The plan entries of step 7: one coordinate step around ``candidate``'s constants,
        each variant with a functional hash other than the candidate's."""
        space, own = self._space, candidate.validity.functional_hash
        return [
            Seed(f"{TUNE}{label}", genotype, candidate.id, 1)
            for label, genotype in space.tune_variants(candidate.genotype)
            if space.check(space.to_program(genotype)).functional_hash != own
        ]

    def _from_plan(self, island: Island, index: int) -> Candidate:
        seed, *rest = island.plan
        island.plan = ([replace(seed, copies=seed.copies - 1)] if seed.copies > 1 else []) + rest
        if seed.genotype is None:
            candidate = self._new(self._space.random(self._rngs["init"]), None, "random", index)
            island.seeds.append(candidate)
            return candidate
        first = next((c for c in island.seeds if c.mutation == seed.label), None)
        if first is not None:
            return self._child(first, index)
        candidate = self._new(seed.genotype, seed.parent_id, seed.label, index)
        if not seed.label.startswith(ONE_OFF):
            island.seeds.append(candidate)
        return candidate

    def _restart(self) -> None:
        index = self._restarts % self.config.islands
        self._restarts += 1
        best = self._best.candidate
        seed = Seed(f"restart:{best.id}", best.genotype, best.id, self.config.population)
        self._islands[index] = Island(plan=[seed])

    def _migrate(self) -> None:
        if self.config.islands < 2:
            return
        populations = [island.population for island in self._islands]
        arriving = migrants(populations, self.config.migration_size)
        for island, arrivals in zip(self._islands, arriving, strict=True):
            island.plan = [
                Seed(f"migration:{m.candidate.id}", m.candidate.genotype, m.candidate.id, 1)
                for m in arrivals
            ] + island.plan

    # ---------------------------------------------------------------------------- persistence

    def state_dict(self) -> dict:
        """The full state as JSON-able data (strict JSON: non-finite fitness is ``None``)."""
        # A candidate's program JSON is computed once, not at every checkpoint: candidates are
        # immutable and their ids unique, so the text is kept by id while the state holds it.
        texts: dict[int, str] = {}

        def text(c: Candidate) -> str:
            known = texts.get(c.id) or self._texts.get(c.id)
            if known is None:
                known = program_to_json(c.program)
            texts[c.id] = known
            return known

        codec = _Codec(self._space, text)
        best = self._best
        state = {
            "format": STATE_FORMAT,
            "space": self._space.kind,
            "next_id": self._next_id,
            "told": self._told,
            "restarts": self._restarts,
            "rngs": {name: _rng_to_json(rng) for name, rng in self._rngs.items()},
            "islands": [codec.island_to_json(island) for island in self._islands],
            "outstanding": [codec.candidate_to_json(c) for c in self._outstanding.values()],
            "best": None if best is None else codec.member_to_json(best),
        }
        self._texts = texts  # only the candidates the state still holds
        return state

    def genotype_json(self, candidate: Candidate) -> str | None:
        """The candidate's genotype as JSON, or None where the genotype is the program."""
        return None if self._space.genotype_is_program else self._space.to_json(candidate.genotype)

    @classmethod
    def from_state(cls, config: EvolutionConfig, state: dict) -> RegularizedEvolution:
        """The evolution that :meth:`state_dict` described, continuing under ``config`` (a
        state without a space, written before there were several, is of the program space)."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not an evolution state in format {STATE_FORMAT!r}")
        if len(state["islands"]) != config.islands:
            raise ValueError(
                f"the state has {len(state['islands'])} island(s), the config {config.islands}"
            )
        evolution = cls(config)
        space = evolution._space
        if state.get("space", "program") != space.kind:
            raise ValueError(f"the state is of a {state['space']} space, the config {space.kind}")
        codec = _Codec(space)
        evolution._rngs = {name: _rng_from_json(value) for name, value in state["rngs"].items()}
        evolution._islands = [codec.island_from_json(doc) for doc in state["islands"]]
        outstanding = [codec.candidate_from_json(doc) for doc in state["outstanding"]]
        evolution._outstanding = {c.id: c for c in outstanding}
        best = state["best"]
        evolution._best = None if best is None else codec.member_from_json(best)
        evolution._next_id = state["next_id"]
        evolution._told = state["told"]
        evolution._restarts = state["restarts"]
        return evolution


# ------------------------------------------------------------------------------ JSON conversion


def _rng_to_json(rng: random.Random) -> list:
    version, internal, gauss_next = rng.getstate()
    return [version, list(internal), gauss_next]


def _rng_from_json(doc: list) -> random.Random:
    rng = random.Random()
    rng.setstate((doc[0], tuple(doc[1]), doc[2]))
    return rng


def _program_json(c: Candidate) -> str:
    return program_to_json(c.program)


@dataclass(frozen=True)
class _Codec:
    """The state's JSON in one search space. A candidate is stored with its program's JSON
    (``text``) and, where the genotype is not the program, its genotype's JSON (``genotype``);
    a seed of a plan with its genotype's JSON (``program_json`` in the program space, as in
    states written before there were several spaces, else ``genotype``)."""

    space: SearchSpace
    text: Callable[[Candidate], str] = _program_json

    @property
    def _seed_key(self) -> str:
        return "program_json" if self.space.genotype_is_program else "genotype"

    def candidate_to_json(self, c: Candidate) -> dict:
        doc = {
            "id": c.id,
            "program_json": self.text(c),
            "parent_id": c.parent_id,
            "mutation": c.mutation,
            "island": c.island,
            "functional_hash": c.validity.functional_hash,
            "problems": list(c.validity.problems),
        }
        if not self.space.genotype_is_program:
            doc["genotype"] = self.space.to_json(c.genotype)
        return doc

    def candidate_from_json(self, doc: dict) -> Candidate:
        program = program_from_json(doc["program_json"])
        problems = tuple(doc["problems"])
        validity = Validity(doc["functional_hash"], problems, analyse(program), program)
        genotype = None if self.space.genotype_is_program else self.space.from_json(doc["genotype"])
        return Candidate(
            doc["id"], program, doc["parent_id"], doc["mutation"], doc["island"], validity, genotype
        )

    def member_to_json(self, m: Member) -> dict:
        fitness = m.fitness if math.isfinite(m.fitness) else None
        return {"fitness": fitness, "candidate": self.candidate_to_json(m.candidate)}

    def member_from_json(self, doc: dict) -> Member:
        fitness = WORST if doc["fitness"] is None else doc["fitness"]
        return Member(self.candidate_from_json(doc["candidate"]), fitness)

    def island_to_json(self, island: Island) -> dict:
        key = self._seed_key
        return {
            "population": [self.member_to_json(m) for m in island.population],
            "plan": [
                {
                    "label": s.label,
                    key: None if s.genotype is None else self.space.to_json(s.genotype),
                    "parent_id": s.parent_id,
                    "copies": s.copies,
                }
                for s in island.plan
            ],
            "seeds": [self.candidate_to_json(c) for c in island.seeds],
            "best": island.best if math.isfinite(island.best) else None,
        }

    def island_from_json(self, doc: dict) -> Island:
        """The island :meth:`island_to_json` wrote (a state written before islands kept their
        best: the best of its population)."""
        key = self._seed_key
        population = [self.member_from_json(m) for m in doc["population"]]
        best = doc.get("best", max((m.fitness for m in population), default=None))
        return Island(
            population=population,
            plan=[
                Seed(
                    s["label"],
                    None if s[key] is None else self.space.from_json(s[key]),
                    s["parent_id"],
                    s["copies"],
                )
                for s in doc["plan"]
            ],
            seeds=[self.candidate_from_json(c) for c in doc["seeds"]],
            best=WORST if best is None else best,
        )
