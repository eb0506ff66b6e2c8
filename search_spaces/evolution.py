"""Regularized (aging) evolution, steady-state and resumable. Pure: no Ray, no torch.

Follows Real et al., "Regularized Evolution for Image Classifier Architecture Search" (AAAI 2019,
Algorithm 1) as the program search of Chen et al., "Symbolic Discovery of Optimization
Algorithms" (NeurIPS 2023, §2) uses it: warm start from AdamW, tournament selection, aging, and
restarts from the best program. Islands with ring migration follow SymbolicRegression.jl.

How an island evolves (candidate ``id`` belongs to island ``id % islands``, round-robin):

1. Its first ``population`` asks are seeds: ``random_programs`` random programs, the rest the
   warm-start zoo programs sharing the places evenly; the first copy of each zoo program is
   unchanged (``"seed:<name>"``), later copies are mutations of that first copy. With no
   warm-start programs, all seeds are random.
2. While the island has no told member, further asks mutate one of its seeds.
3. Then each ask is a tournament (:func:`tournament`) whose winner is mutated (a mutation drawn
   by ``mutation_weights`` among those that apply). A child with its parent's functional hash is
   mutated afresh, up to ``max_retries`` times. Invalid children are returned all the same: they
   are evaluated as the worst, and the campaign log shows them.
4. ``tell`` appends the member to its island's population and drops the oldest beyond
   ``population`` (:func:`age`; the oldest, not the worst). NaN and ±inf count as the worst.
5. Every ``restart_every`` tells, one island in turn loses its population and its plan and is
   re-seeded from the best program so far, as in step 1 with that program as the only zoo entry:
   an unchanged copy (``"restart:<id>"``), then mutations of it.
6. Every ``migration_every`` tells (with several islands), each island's ``migration_size``
   fittest members go to the next island (ring, :func:`migrants`): that island's next asks are
   unchanged copies (``"migration:<id>"``) which join its population once told.

Determinism: all randomness comes from named sub-streams of the one seed (:func:`substream`:
``selection`` for tournaments, ``mutation`` for mutations, ``init`` for random programs). In one
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
    setting,
    table_of,
)
from evodisc.validity import Validity, check_candidate
from search_spaces.mutations import MUTATIONS, can_apply
from search_spaces.space import DEFAULT_SPACE, ProgramSpace, random_program
from search_spaces.zoo import load_known, zoo


def default_weights() -> dict[str, float]:
    """Every mutation at weight 1.0."""
    return {name: 1.0 for name in MUTATIONS}


#: The fitness a NaN or ±inf result counts as (fitness is higher-is-better).
WORST = -math.inf
#: ``state_dict()["format"]``; bumped when the state's layout changes.
STATE_FORMAT = "evodisc-evolution/1"
#: The named random streams of an evolution.
STREAMS = ("selection", "mutation", "init")


@dataclass(frozen=True)
class Candidate:
    """One program proposed by the evolution, with where it came from."""

    id: int  # campaign-wide, contiguous from 0, assigned by ``ask()``
    program: Program
    parent_id: int | None  # None for seeds and random programs
    mutation: str  # "seed:adamw", "random", "restart:<id>", "migration:<id>" or a mutation name
    island: int
    validity: Validity  # check_candidate(program, …), computed once here


@dataclass(frozen=True)
class Member:
    """A told candidate in an island's population."""

    candidate: Candidate
    fitness: float  # finite, or WORST


@dataclass(frozen=True)
class EvolutionConfig:
    """Everything that shapes the search: a campaign file's ``[evolution]`` (the fields declared
    with :func:`~evodisc.settings.setting`), its ``[space]`` and its seed.

    ``mutation_weights`` is the whole table: a mutation left out is never used (a campaign
    file's table is laid over the default, 1.0 each). ``space.max_state_slots`` bounds the state
    slots mutations may add and the memory a valid candidate may need.
    """

    population: int = setting(int_between(1, 100_000), 64, "programs alive per island")
    tournament: int = setting(POSITIVE_INT, 8, "programs drawn per tournament (<= population)")
    mutation_weights: Mapping[str, float] = setting(
        table_of(NON_NEGATIVE, "numbers >= 0", base=default_weights),
        default_weights,
        "relative weight per mutation; unlisted mutations keep 1.0",
        shown="1.0 each",
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
    merge_scale_variants: bool = setting(
        BOOL,
        True,
        "a positive multiple of a rule's lr-linear update is the same rule: scored once",
        shown="true (false for directories written before it existed)",
    )
    seed: int = 0
    space: ProgramSpace = DEFAULT_SPACE

    def __post_init__(self) -> None:
        check_settings(self)
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
        check_known("warm_start", self.warm_start, zoo(), "optimizer")
        check_known("mutation_weights", self.mutation_weights, MUTATIONS, "mutation")
        if not any(self.mutation_weights.values()):
            raise SettingError("mutation_weights", "at least one weight > 0", self.mutation_weights)


@dataclass(frozen=True)
class Seed:
    """``copies`` asks of an island still to come from ``program`` (None: random programs)."""

    label: str  # the candidates' mutation: "seed:<name>", "random", "restart:<id>", …
    program: Program | None
    parent_id: int | None
    copies: int


@dataclass
class Island:
    """One aging population, the seeds it still has to ask, and the seeds it was given."""

    population: list[Member] = field(default_factory=list)  # oldest first
    plan: list[Seed] = field(default_factory=list)
    seeds: list[Candidate] = field(default_factory=list)  # unchanged copies, for step 2


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


def initial_plan(config: EvolutionConfig) -> list[Seed]:
    """An island's first ``population`` asks (step 1 of the module docstring)."""
    names = config.warm_start
    zoo_places = config.population - config.random_programs if names else 0
    plan = [
        Seed(f"seed:{name}", load_known(name), None, len(range(i, zoo_places, len(names))))
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
        self._space = config.space
        self._rngs = {name: substream(config.seed, name) for name in STREAMS}
        self._islands = [Island(plan=initial_plan(config)) for _ in range(config.islands)]
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
            candidate = self._child(parent, index)
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
        self._told += 1
        if self.config.restart_every and self._told % self.config.restart_every == 0:
            self._restart()
        if self.config.migration_every and self._told % self.config.migration_every == 0:
            self._migrate()

    # ------------------------------------------------------------------------------ internals

    def _new(
        self,
        program: Program,
        parent_id: int | None,
        mutation: str,
        island: int,
        validity: Validity | None = None,
    ) -> Candidate:
        if validity is None:
            validity = self._check(program)
        candidate = Candidate(self._next_id, program, parent_id, mutation, island, validity)
        self._next_id += 1
        return candidate

    def _check(self, program: Program) -> Validity:
        space = self._space
        return check_candidate(program, space.max_statements, space.max_state_slots)

    def _mutation_table(self, program: Program) -> tuple[list[str], list[float]]:
        """The mutations :func:`~search_spaces.mutations.pick_mutation` draws from for
        ``program``, and their weights: ``rng.choices(names, weights)[0]`` is its draw. Computed
        once per parent rather than once per re-draw (the applicability checks walk the whole
        program)."""
        table = self.config.mutation_weights
        weighted = [name for name in MUTATIONS if table.get(name, 0.0) > 0]
        if not weighted:
            raise ValueError("at least one mutation needs a positive weight")
        names = [name for name in weighted if can_apply(name, program, self._space)] or weighted
        return names, [table[name] for name in names]

    def _parent_facts(self, parent: Candidate) -> tuple[list[str], list[float], Program]:
        """:meth:`_mutation_table` and the live code of ``parent``, kept while it is likely to
        be drawn again (tournament winners are mutated many times)."""
        facts = self._parents.get(parent.id)
        if facts is None:
            if len(self._parents) >= 4 * self.config.population * self.config.islands:
                self._parents.clear()
            names, weights = self._mutation_table(parent.program)
            facts = names, weights, eliminate_dead_code(parent.program)
            self._parents[parent.id] = facts
        return facts

    def _child(self, parent: Candidate, island: int) -> Candidate:
        """A mutation of ``parent``, re-drawn while its functional hash equals the parent's.

        A child whose live code (after dead-code elimination) is the parent's has the parent's
        functional hash (the hash sees only the updates: :mod:`evodisc.hashing`), so it is
        re-drawn without hashing it; most re-draws are such mutations of dead code. The
        candidates are the same as when every child is hashed, and only the one returned is
        checked (:meth:`_check`)."""
        rng = self._rngs["mutation"]
        names, weights, live = self._parent_facts(parent)
        validity = None
        for _ in range(self.config.max_retries + 1):
            name = rng.choices(names, weights)[0]  # pick_mutation's draw, applicability hoisted
            program = MUTATIONS[name](parent.program, rng, self._space)
            if _same_code(eliminate_dead_code(program), live):
                validity = None  # the parent's hash: re-draw
                continue
            validity = self._check(program)
            if validity.functional_hash != parent.validity.functional_hash:
                break
        return self._new(program, parent.id, name, island, validity)

    def _from_plan(self, island: Island, index: int) -> Candidate:
        seed, *rest = island.plan
        island.plan = ([replace(seed, copies=seed.copies - 1)] if seed.copies > 1 else []) + rest
        if seed.program is None:
            program = random_program(self._rngs["init"], self._space)
            candidate = self._new(program, None, "random", index)
            island.seeds.append(candidate)
            return candidate
        first = next((c for c in island.seeds if c.mutation == seed.label), None)
        if first is not None:
            return self._child(first, index)
        candidate = self._new(seed.program, seed.parent_id, seed.label, index)
        if not seed.label.startswith("migration:"):
            island.seeds.append(candidate)
        return candidate

    def _restart(self) -> None:
        index = self._restarts % self.config.islands
        self._restarts += 1
        best = self._best.candidate
        seed = Seed(f"restart:{best.id}", best.program, best.id, self.config.population)
        self._islands[index] = Island(plan=[seed])

    def _migrate(self) -> None:
        if self.config.islands < 2:
            return
        populations = [island.population for island in self._islands]
        arriving = migrants(populations, self.config.migration_size)
        for island, arrivals in zip(self._islands, arriving, strict=True):
            island.plan = [
                Seed(f"migration:{m.candidate.id}", m.candidate.program, m.candidate.id, 1)
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

        state = {
            "format": STATE_FORMAT,
            "next_id": self._next_id,
            "told": self._told,
            "restarts": self._restarts,
            "rngs": {name: _rng_to_json(rng) for name, rng in self._rngs.items()},
            "islands": [_island_to_json(island, text) for island in self._islands],
            "outstanding": [_candidate_to_json(c, text) for c in self._outstanding.values()],
            "best": None if self._best is None else _member_to_json(self._best, text),
        }
        self._texts = texts  # only the candidates the state still holds
        return state

    @classmethod
    def from_state(cls, config: EvolutionConfig, state: dict) -> RegularizedEvolution:
        """The evolution that :meth:`state_dict` described, continuing under ``config``."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not an evolution state in format {STATE_FORMAT!r}")
        if len(state["islands"]) != config.islands:
            raise ValueError(
                f"the state has {len(state['islands'])} island(s), the config {config.islands}"
            )
        evolution = cls(config)
        evolution._rngs = {name: _rng_from_json(value) for name, value in state["rngs"].items()}
        evolution._islands = [_island_from_json(doc) for doc in state["islands"]]
        outstanding = [_candidate_from_json(doc) for doc in state["outstanding"]]
        evolution._outstanding = {c.id: c for c in outstanding}
        evolution._best = None if state["best"] is None else _member_from_json(state["best"])
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


def _candidate_to_json(c: Candidate, text: Callable[[Candidate], str] | None = None) -> dict:
    return {
        "id": c.id,
        "program_json": program_to_json(c.program) if text is None else text(c),
        "parent_id": c.parent_id,
        "mutation": c.mutation,
        "island": c.island,
        "functional_hash": c.validity.functional_hash,
        "problems": list(c.validity.problems),
    }


def _candidate_from_json(doc: dict) -> Candidate:
    program = program_from_json(doc["program_json"])
    validity = Validity(doc["functional_hash"], tuple(doc["problems"]), analyse(program), program)
    return Candidate(doc["id"], program, doc["parent_id"], doc["mutation"], doc["island"], validity)


def _member_to_json(m: Member, text: Callable[[Candidate], str] | None = None) -> dict:
    fitness = m.fitness if math.isfinite(m.fitness) else None
    return {"fitness": fitness, "candidate": _candidate_to_json(m.candidate, text)}


def _member_from_json(doc: dict) -> Member:
    fitness = WORST if doc["fitness"] is None else doc["fitness"]
    return Member(_candidate_from_json(doc["candidate"]), fitness)


def _island_to_json(island: Island, text: Callable[[Candidate], str] | None = None) -> dict:
    return {
        "population": [_member_to_json(m, text) for m in island.population],
        "plan": [
            {
                "label": s.label,
                "program_json": None if s.program is None else program_to_json(s.program),
                "parent_id": s.parent_id,
                "copies": s.copies,
            }
            for s in island.plan
        ],
        "seeds": [_candidate_to_json(c, text) for c in island.seeds],
    }


def _island_from_json(doc: dict) -> Island:
    return Island(
        population=[_member_from_json(m) for m in doc["population"]],
        plan=[
            Seed(
                s["label"],
                None if s["program_json"] is None else program_from_json(s["program_json"]),
                s["parent_id"],
                s["copies"],
            )
            for s in doc["plan"]
        ],
        seeds=[_candidate_from_json(c) for c in doc["seeds"]],
    )
