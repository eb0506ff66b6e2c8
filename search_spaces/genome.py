"""The genome space of Marfinetz, "Evolving Deep Learning Optimizers" (arXiv:2512.11853; the
reference implementation is github.com/mmarfinetz/evo-optimizer, ``evolutionary_optimizer_colab.
ipynb``): an update is ``lr · (Σₖ αₖ·Tₖ + wd·w)`` over primitive update terms ``Tₖ``.

The terms (:data:`TERMS`), with ``m`` and ``v`` the EMAs of ``g`` and ``g²`` (β₁, β₂) and
``m̂``, ``v̂`` them divided by ``1 − βᵗ`` when bias correction is on:

- ``gradient`` ``g``; ``momentum`` ``m̂``; ``rms`` ``g / (√v̂ + ε)`` (RMS-normalised gradient);
- ``adam`` ``m̂ / (√v̂ + ε)``; ``sign_gradient`` ``sign(g)``; ``sign_momentum`` ``sign(m)``.

A :class:`Genome` holds one weight α per term (0: the term is absent), β₁, β₂, ε, the decoupled
weight decay and three flags: bias correction, warm-up and cosine decay. The learning rate is
not a gene (the paper's ``lr_log10``): every candidate is trained with the fitness's
learning-rate sweep. The schedules scale the whole update (weight decay included, as the
reference's ``p·(1 − lr·wd)`` with the scheduled ``lr``) and read the run's horizon ``T``: a
linear warm-up over the first ``warmup_fraction`` of the run, ``min(t / (f·T), 1)``, and the
reference search's cosine decay over the whole run, ``(1 + cos(π·(t − 1)/T)) / 2``.

Operators, as in the reference where it says (module-level pure functions):

1. :meth:`GenomeSpace.random`: 1 to 3 terms with α uniform in [−1, 1], β₁ ∈ [0.5, 0.99],
   β₂ ∈ [0.9, 0.9999], ε log-uniform in [1e-9, 1e-6], weight decay log-uniform in
   [1e-5, 1e-3], bias correction with probability 0.6, warm-up and cosine decay with 0.3.
2. Mutations (:data:`MUTATIONS`), each named: α times a log-normal factor (``perturb_alpha``),
   add, remove or move a term, β₁ and β₂ moved in log-odds, ε and weight decay moved in log
   space, and a flip of each flag. One mutation per child; the evolution draws which by weight.
3. :func:`crossover`: uniform, gene by gene (each α on its own), then at most ``max_terms``
   terms and at least one.

:meth:`GenomeSpace.to_program` writes the genome as a readable program in the text format
(DESIGN.md §2.1), leaving out zero-weight terms and the state and statements they alone need, so
that genomes that are the same function get the same functional hash.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, fields, replace
from typing import ClassVar

from evodisc.constant_names import Constant
from evodisc.constant_steps import coordinate_step
from evodisc.program import Program, parse_program
from evodisc.settings import (
    POSITIVE,
    TEXT,
    check_known,
    check_settings,
    int_between,
    list_of,
    number_between,
    setting,
)
from evodisc.validity import Validity, check_candidate
from search_spaces.space import round_significant

#: The primitive update terms, in gene order.
TERMS = ("gradient", "momentum", "rms", "adam", "sign_gradient", "sign_momentum")
#: Terms that read the first moment ``m``, the bias-corrected ``m̂``, and the second moment ``v``.
READS_M = frozenset({"momentum", "adam", "sign_momentum"})
READS_MHAT = frozenset({"momentum", "adam"})
READS_V = frozenset({"rms", "adam"})

#: Significant digits genes keep (so that programs read well).
DIGITS = 4


@dataclass(frozen=True)
class Genome:
    """One optimizer of the genome space (see the module docstring)."""

    alphas: tuple[float, ...]  # one weight per term of TERMS, in that order; 0: absent
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    bias_correction: bool = True
    warmup: bool = False
    cosine_decay: bool = False

    def __post_init__(self) -> None:
        alphas = self.alphas
        if len(alphas) != len(TERMS) or not all(_finite(a) for a in alphas):
            raise ValueError(f"a genome needs {len(TERMS)} finite term weights, got {alphas!r}")
        if not any(alphas):
            raise ValueError("a genome needs at least one term with a weight other than 0")
        for name in ("beta1", "beta2"):
            if not (_finite(getattr(self, name)) and 0 < getattr(self, name) < 1):
                raise ValueError(f"a genome's {name} must be in (0, 1), got {getattr(self, name)}")
        if not (_finite(self.eps) and self.eps > 0):
            raise ValueError(f"a genome's eps must be > 0, got {self.eps}")
        if not (_finite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"a genome's weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("bias_correction", "warmup", "cosine_decay"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"a genome's {name} must be true or false")

    @property
    def terms(self) -> dict[str, float]:
        """The terms present (weight other than 0) and their weights."""
        return {name: alpha for name, alpha in zip(TERMS, self.alphas, strict=True) if alpha}


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def genome(terms: Mapping[str, float], **genes: float | bool) -> Genome:
    """A genome from its terms by name (the others 0) and its other genes."""
    check_known("terms", terms, TERMS, "term")
    return Genome(tuple(float(terms.get(name, 0.0)) for name in TERMS), **genes)


#: Known optimizers the genome expresses exactly (their programs compute the zoo's updates):
#: heavy-ball momentum ``buf = 0.9·buf + g`` is ``10·m`` with ``m`` the EMA at β₁ = 0.9.
KNOWN: dict[str, Genome] = {
    "sgd": genome({"gradient": 1.0}, bias_correction=False),
    "momentum": genome({"momentum": 10.0}, beta1=0.9, bias_correction=False),
    "signsgd": genome({"sign_gradient": 1.0}, bias_correction=False),
    "signum": genome({"sign_momentum": 1.0}, beta1=0.9, bias_correction=False),
    "rmsprop": genome({"rms": 1.0}, beta2=0.99, bias_correction=False),
    "adam": genome({"adam": 1.0}),
    "adamw": genome({"adam": 1.0}, weight_decay=0.01),
}


# ------------------------------------------------------------------------------ the program


def _number(value: float) -> str:
    return repr(float(value))


def _weighted_sum(terms: Mapping[str, str], weights: Mapping[str, float]) -> str:
    """``α₁·T₁ + α₂·T₂ − …`` with weights ±1 written as a bare term."""
    text = ""
    for name, alpha in weights.items():
        term = terms[name]
        magnitude = abs(alpha)
        product = term if magnitude == 1 else f"{_number(magnitude)} * {term}"
        if not text:
            text = product if alpha > 0 else f"-{product}"
        else:
            text += f" + {product}" if alpha > 0 else f" - {product}"
    return text


def program_text(g: Genome, warmup_fraction: float = 0.1) -> str:
    """The genome as program text: only the state, corrections, terms and schedules it uses."""
    present = g.terms
    reads_m, reads_v = bool(READS_M & set(present)), bool(READS_V & set(present))
    corrected_m = g.bias_correction and bool(READS_MHAT & set(present))
    corrected_v = g.bias_correction and reads_v
    b1, b2 = _number(g.beta1), _number(g.beta2)
    body = []
    if reads_m:
        body.append(f"m = interp(g, m, {b1})")
    if reads_v:
        body.append(f"v = interp(square(g), v, {b2})")
    if corrected_m:
        body.append(f"mhat = m / (1 - {b1} ** t)")
    if corrected_v:
        body.append(f"vhat = v / (1 - {b2} ** t)")
    mhat = "mhat" if corrected_m else "m"
    denominator = f"sqrt({'vhat' if corrected_v else 'v'}) + {_number(g.eps)}"
    if READS_V.issubset(present):  # both terms divide by it: written once
        body.append(f"denom = {denominator}")
        denominator = "denom"
    else:
        denominator = f"({denominator})"
    terms = {
        "gradient": "g",
        "momentum": mhat,
        "rms": f"g / {denominator}",
        "adam": f"{mhat} / {denominator}",
        "sign_gradient": "sign(g)",
        "sign_momentum": "sign(m)",
    }
    update = _weighted_sum(terms, present)
    if g.weight_decay:
        update += f" + {_number(g.weight_decay)} * w"
    body.append(f"update = {update}")
    scale = ["lr"]
    if g.warmup:
        body.append(f"warmup = minimum(t / ({_number(warmup_fraction)} * T), 1.0)")
        scale.append("warmup")
    if g.cosine_decay:
        body.append(f"decay = 0.5 * (1 + cos({_number(math.pi)} * (t - 1) / T))")
        scale.append("decay")
    reads_t = corrected_m or corrected_v or len(scale) > 1
    params = ["w"] * bool(g.weight_decay) + ["g", "lr"] + ["t"] * reads_t + ["T"] * (len(scale) > 1)
    state = ["m"] * reads_m + ["v"] * reads_v
    lines = [f"def train({', '.join(params + state)}):"]
    lines += [f"    {line}" for line in body]
    lines.append(f"    return {', '.join([' * '.join([*scale, 'update']), *state])}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- mutations


def _round(value: float) -> float:
    return round_significant(value, DIGITS)


def _log_odds_step(beta: float, rng: random.Random, sigma: float = 0.5) -> float:
    """``beta`` moved by a Gaussian step in log-odds (so it stays in (0, 1)), the distance to
    1 rounded to :data:`DIGITS` significant digits."""
    odds = math.log(beta / (1 - beta)) + rng.gauss(0.0, sigma)
    distance = _round(1 / (1 + math.exp(odds)))
    return min(max(1 - distance, 1e-6), 1 - 1e-6)


def _log_step(value: float, rng: random.Random, low: float, high: float) -> float:
    """``value`` times 10 to a Gaussian power (σ 0.5), kept in [low, high]."""
    return _round(min(max(value * 10 ** rng.gauss(0.0, 0.5), low), high))


def _random_alpha(rng: random.Random) -> float:
    """A new term's weight: uniform in [−1, 1] (not 0)."""
    alpha = 0.0
    while not alpha:
        alpha = _round(rng.uniform(-1.0, 1.0))
    return alpha


def _with_alpha(g: Genome, changes: Mapping[str, float]) -> Genome:
    alphas = tuple(changes.get(name, alpha) for name, alpha in zip(TERMS, g.alphas, strict=True))
    return replace(g, alphas=alphas)


def _absent(g: Genome, space: GenomeSpace) -> list[str]:
    """The space's terms the genome lacks."""
    return [name for name in space.terms if name not in g.terms]


def perturb_alpha(g: Genome, rng: random.Random, space: GenomeSpace) -> Genome:
    """One present term's weight times ``exp(N(0, alpha_sigma))`` (keeps its sign)."""
    name = rng.choice(list(g.terms))
    alpha = g.terms[name] * math.exp(rng.gauss(0.0, space.alpha_sigma))
    return _with_alpha(g, {name: _round(alpha) or g.terms[name]})


def add_term(g: Genome, rng: random.Random, space: GenomeSpace) -> Genome:
    """One absent term of the space gets a weight uniform in [−1, 1]."""
    return _with_alpha(g, {rng.choice(_absent(g, space)): _random_alpha(rng)})


def remove_term(g: Genome, rng: random.Random, space: GenomeSpace) -> Genome:
    """One present term's weight becomes 0."""
    return _with_alpha(g, {rng.choice(list(g.terms)): 0.0})


def move_term(g: Genome, rng: random.Random, space: GenomeSpace) -> Genome:
    """One present term's weight moves to an absent term of the space."""
    source, target = rng.choice(list(g.terms)), rng.choice(_absent(g, space))
    return _with_alpha(g, {source: 0.0, target: g.terms[source]})


def perturb_beta1(g: Genome, rng: random.Random, space: GenomeSpace) -> Genome:
    """β₁ moved in log-odds."""
    return replace(g, beta1=_log_odds_step(g.beta1, rng))


def perturb_beta2(g: Genome, rng: random.Random, space: GenomeSpace) -> Genome:
    """β₂ moved in log-odds."""
    return replace(g, beta2=_log_odds_step(g.beta2, rng))


def perturb_eps(g: Genome, rng: random.Random, space: GenomeSpace) -> Genome:
    """ε moved in log space, within [1e-12, 1e-2]."""
    return replace(g, eps=_log_step(g.eps, rng, 1e-12, 1e-2))


def perturb_weight_decay(g: Genome, rng: random.Random, space: GenomeSpace) -> Genome:
    """Weight decay moved in log space within [1e-6, 0.1]; one time in four it is switched
    off (or, when off, on at a log-uniform value in [1e-5, 1e-2])."""
    if not g.weight_decay:
        return replace(g, weight_decay=_round(10 ** rng.uniform(-5.0, -2.0)))
    if rng.random() < 0.25:
        return replace(g, weight_decay=0.0)
    return replace(g, weight_decay=_log_step(g.weight_decay, rng, 1e-6, 0.1))


def _flip(name: str) -> Callable[[Genome, random.Random, GenomeSpace], Genome]:
    def flip(g: Genome, rng: random.Random, space: GenomeSpace) -> Genome:
        return replace(g, **{name: not getattr(g, name)})

    flip.__doc__ = f"``{name}`` switched."
    return flip


Mutation = Callable[[Genome, random.Random, "GenomeSpace"], Genome]

MUTATIONS: dict[str, Mutation] = {
    "perturb_alpha": perturb_alpha,
    "add_term": add_term,
    "remove_term": remove_term,
    "move_term": move_term,
    "perturb_beta1": perturb_beta1,
    "perturb_beta2": perturb_beta2,
    "perturb_eps": perturb_eps,
    "perturb_weight_decay": perturb_weight_decay,
    "flip_bias_correction": _flip("bias_correction"),
    "flip_warmup": _flip("warmup"),
    "flip_cosine_decay": _flip("cosine_decay"),
}


def _uses(terms: Collection[str]) -> Callable[[Genome, GenomeSpace], bool]:
    return lambda g, space: bool(set(terms) & set(g.terms))


#: When a mutation changes the genome's program (the others may apply anyway, when no
#: weighted mutation does; the evolution then re-draws a child equal to its parent).
APPLIES: dict[str, Callable[[Genome, GenomeSpace], bool]] = {
    "add_term": lambda g, space: len(g.terms) < space.max_terms and bool(_absent(g, space)),
    "remove_term": lambda g, space: len(g.terms) > 1,
    "move_term": lambda g, space: bool(_absent(g, space)),
    "perturb_beta1": _uses(READS_M),
    "perturb_beta2": _uses(READS_V),
    "perturb_eps": _uses(READS_V),
    "flip_bias_correction": _uses(READS_MHAT | READS_V),
}


def crossover(a: Genome, b: Genome, rng: random.Random, max_terms: int = len(TERMS)) -> Genome:
    """Uniform crossover: each gene (each term's weight on its own) from ``a`` or ``b`` with
    equal chance; then present terms beyond ``max_terms`` are dropped at random, and a child
    without any term takes ``a``'s weights."""
    genes = {
        f.name: rng.choice((getattr(a, f.name), getattr(b, f.name)))
        for f in fields(a)
        if f.name != "alphas"
    }
    alphas = [rng.choice(pair) for pair in zip(a.alphas, b.alphas, strict=True)]
    present = [i for i, alpha in enumerate(alphas) if alpha]
    for i in rng.sample(present, max(0, len(present) - max_terms)):
        alphas[i] = 0.0
    genes["alphas"] = tuple(alphas) if any(alphas) else a.alphas
    return Genome(**genes)


# ------------------------------------------------------------------------------ the space


@dataclass(frozen=True)
class GenomeSpace:
    """The genome space (a campaign's ``[space]`` with ``kind = "genome"``: the fields
    declared with :func:`~evodisc.settings.setting`), behind the search-space interface
    (:mod:`search_spaces.interface`)."""

    terms: tuple[str, ...] = setting(
        list_of(TEXT, "term names", distinct=True),
        TERMS,
        "terms random genomes and mutations may use (gradient, momentum, rms, adam, "
        "sign_gradient, sign_momentum)",
        shown="all six",
    )
    max_terms: int = setting(int_between(1, len(TERMS)), 4, "most terms a genome may have")
    alpha_sigma: float = setting(
        POSITIVE, 0.3, "σ of perturb_alpha: a weight is multiplied by exp(N(0, σ))"
    )
    warmup_fraction: float = setting(
        number_between(0.001, 1), 0.1, "share of the run the warm-up flag's linear warm-up lasts"
    )

    kind: ClassVar[str] = "genome"
    genotype_is_program: ClassVar[bool] = False
    has_crossover: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_settings(self)
        check_known("terms", self.terms, TERMS, "term")

    def mutation_names(self) -> tuple[str, ...]:
        return tuple(MUTATIONS)

    def warm_start_names(self) -> Collection[str]:
        return [name for name, g in KNOWN.items() if set(g.terms) <= set(self.terms)]

    def warm_start(self, name: str) -> Genome:
        return KNOWN[name]

    def random(self, rng: random.Random) -> Genome:
        count = min(rng.randint(1, 3), self.max_terms, len(self.terms))
        chosen = rng.sample(self.terms, count)
        return Genome(
            tuple(_random_alpha(rng) if name in chosen else 0.0 for name in TERMS),
            beta1=_round(rng.uniform(0.5, 0.99)),
            beta2=_round(rng.uniform(0.9, 0.9999)),
            eps=_round(10 ** rng.uniform(-9.0, -6.0)),
            weight_decay=_round(10 ** rng.uniform(-5.0, -3.0)),
            bias_correction=rng.random() < 0.6,
            warmup=rng.random() < 0.3,
            cosine_decay=rng.random() < 0.3,
        )

    def mutation_table(
        self, genotype: Genome, weights: Mapping[str, float]
    ) -> tuple[list[str], list[float]]:
        weighted = [name for name in MUTATIONS if weights.get(name, 0.0) > 0]
        if not weighted:
            raise ValueError("at least one mutation needs a positive weight")
        applies = [n for n in weighted if APPLIES.get(n, _always)(genotype, self)] or weighted
        return applies, [weights[name] for name in applies]

    def mutate(self, name: str, genotype: Genome, rng: random.Random) -> Genome:
        if not APPLIES.get(name, _always)(genotype, self):
            return perturb_alpha(genotype, rng, self)  # always applies
        return MUTATIONS[name](genotype, rng, self)

    def crossover(self, a: Genome, b: Genome, rng: random.Random) -> Genome:
        return crossover(a, b, rng, self.max_terms)

    def to_program(self, genotype: Genome) -> Program:
        text = program_text(genotype, self.warmup_fraction)
        return parse_program(text, filename="<genome>")

    def check(self, program: Program) -> Validity:
        return check_candidate(program)

    def tune_variants(self, genotype: Genome) -> list[tuple[str, Genome]]:
        """For each of β₁, β₂, ε and weight decay that the genome's program reads, each of its
        other candidate values (roles ``beta``, ``beta``, ``eps``, ``weight_decay``), the other
        genes held."""
        used = {
            name: Constant(getattr(genotype, name), role)
            for name, role in _TUNED.items()
            if APPLIES.get(f"perturb_{name}", _always)(genotype, self)
        }
        return [
            (f"{name}={value!r}", replace(genotype, **{name: value}))
            for name, value in coordinate_step(used, distinct=False)
        ]

    def to_json(self, genotype: Genome) -> str:
        return genome_to_json(genotype)

    def from_json(self, text: str) -> Genome:
        return genome_from_json(text)


def _always(g: Genome, space: GenomeSpace) -> bool:
    return True


#: The genes :meth:`GenomeSpace.tune_variants` moves, with their roles
#: (:func:`~evodisc.constant_steps.candidates`).
_TUNED = {"beta1": "beta", "beta2": "beta", "eps": "eps", "weight_decay": "weight_decay"}


# ---------------------------------------------------------------------------------- JSON

_FLAGS = ("bias_correction", "warmup", "cosine_decay")
_NUMBERS = ("beta1", "beta2", "eps", "weight_decay")


def genome_to_json(g: Genome) -> str:
    """Canonical JSON (sorted keys, no whitespace): the weights by term name, then the genes."""
    doc = {"alphas": dict(zip(TERMS, g.alphas, strict=True))}
    doc |= {name: getattr(g, name) for name in _NUMBERS + _FLAGS}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def genome_from_json(text: str) -> Genome:
    """The genome :func:`genome_to_json` wrote; a :class:`ValueError` (one line) otherwise."""
    try:
        doc = json.loads(text)
        expected = {"alphas", *_NUMBERS, *_FLAGS}
        if not isinstance(doc, dict) or set(doc) != expected:
            raise ValueError(f"a genome has the keys {', '.join(sorted(expected))}")
        alphas = doc["alphas"]
        if not isinstance(alphas, dict) or set(alphas) != set(TERMS):
            raise ValueError(f"a genome's alphas are one weight per term: {', '.join(TERMS)}")
        genes = {name: doc[name] for name in _NUMBERS + _FLAGS}
        return Genome(tuple(alphas[name] for name in TERMS), **genes)
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"not a genome's JSON ({exc})") from None
