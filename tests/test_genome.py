"""The genome space of "Evolving Deep Learning Optimizers": genomes, their programs (equal to the
zoo's where the genome expresses a known optimizer), mutations, crossover, JSON, determinism."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from evodisc.hashing import functional_hash
from evodisc.interpreter import compile_program, init_state, step
from evodisc.program import Program
from search_spaces.genome import (
    KNOWN,
    MUTATIONS,
    TERMS,
    Genome,
    GenomeSpace,
    crossover,
    genome,
    genome_from_json,
    genome_to_json,
)
from search_spaces.zoo import load_known

SPACE = GenomeSpace()


def updates(program: Program, seed: int = 3, steps: int = 25) -> np.ndarray:
    """The program's updates, by the torch interpreter in float64, on a fixed random gradient
    stream (w follows the updates)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(57, generator=gen, dtype=torch.float64)
    compiled, state, rows = compile_program(program), init_state(program, w), []
    for t in range(1, steps + 1):
        g = torch.randn(57, generator=gen, dtype=torch.float64) * 10 ** (t % 3 - 1)
        update, state = step(compiled, w, g, 0.01, t, state, T=steps)
        rows.append(update.numpy().copy())
        w = w - update
    return np.array(rows)


def randoms(count: int, seed: int = 0) -> list[Genome]:
    rng = random.Random(seed)
    return [SPACE.random(rng) for _ in range(count)]


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_known_genomes_compute_the_zoo_programs(name):
    program, known = SPACE.to_program(SPACE.warm_start(name)), load_known(name)
    np.testing.assert_allclose(updates(program), updates(known), rtol=1e-12, atol=1e-15)
    assert functional_hash(program) == functional_hash(known)


def test_the_adam_genome_reads_like_the_zoo():
    assert str(SPACE.to_program(KNOWN["adamw"])) == (
        "def train(w, g, lr, t, m, v):\n"
        "    m = interp(g, m, 0.9)\n"
        "    v = interp(square(g), v, 0.999)\n"
        "    mhat = m / (1 - 0.9 ** t)\n"
        "    vhat = v / (1 - 0.999 ** t)\n"
        "    update = mhat / (sqrt(vhat) + 1e-08) + 0.01 * w\n"
        "    return lr * update, m, v\n"
    )


def test_the_program_leaves_out_what_no_present_term_uses():
    program = SPACE.to_program(genome({"sign_gradient": 0.5, "gradient": -2.0}, eps=1e-3))
    assert program.params == ("g", "lr")  # no state, no t, no w
    assert [s.target for s in program.body] == ["update"]
    # genes that no present term reads do not change the function
    same = genome({"sign_gradient": 0.5, "gradient": -2.0}, beta1=0.5, bias_correction=False)
    assert functional_hash(SPACE.to_program(same)) == functional_hash(program)
    rms_and_adam = SPACE.to_program(genome({"rms": 1.0, "adam": 0.5}, bias_correction=False))
    assert rms_and_adam.params == ("g", "lr", "m", "v")
    assert "denom" in {s.target for s in rms_and_adam.body}


def test_the_program_is_the_weighted_sum_of_the_terms():
    """Each term alone, then a weighted sum: the sum's updates are the weighted sum of the
    single-term updates (all terms read the same state, driven by the same gradients)."""
    genes = dict(beta1=0.8, beta2=0.95, eps=1e-6, bias_correction=True)
    weights = dict(zip(TERMS, [0.3, -1.0, 2.5, 1.0, -0.25, 0.125], strict=True))
    total = updates(SPACE.to_program(genome(weights, weight_decay=0.0, **genes)))
    alone = sum(
        a * updates(SPACE.to_program(genome({n: 1.0}, **genes))) for n, a in weights.items()
    )
    np.testing.assert_allclose(total, alone, rtol=1e-10, atol=1e-14)


def test_warm_up_and_cosine_decay_scale_the_update_over_the_horizon():
    space, terms = GenomeSpace(warmup_fraction=0.2), {"adam": 1.0, "sign_gradient": 0.5}
    plain = compile_program(space.to_program(genome(terms, weight_decay=0.01)))
    program = space.to_program(genome(terms, weight_decay=0.01, warmup=True, cosine_decay=True))
    assert {"t", "T"} <= set(program.params)
    scheduled, horizon = compile_program(program), 40
    gen = torch.Generator().manual_seed(0)
    w, g = (torch.randn(33, generator=gen, dtype=torch.float64) for _ in range(2))
    state = init_state(program, w)
    for t in range(1, horizon + 1):  # the same inputs at every step t of a run of 40
        factor = min(t / (0.2 * horizon), 1) * (1 + np.cos(np.pi * (t - 1) / horizon)) / 2
        expected = step(plain, w, g, 0.01, t, state)[0] * factor
        update = step(scheduled, w, g, 0.01, t, state, T=horizon)[0]
        torch.testing.assert_close(update, expected, rtol=1e-12, atol=1e-15)


def test_random_genomes_are_seeded_valid_and_varied():
    genomes = randoms(200)
    assert genomes == randoms(200) and genomes != randoms(200, seed=1)
    assert all(1 <= len(g.terms) <= 3 for g in genomes)
    assert {name for g in genomes for name in g.terms} == set(TERMS)
    assert all(0.5 <= g.beta1 <= 0.99 and 0.9 <= g.beta2 <= 0.9999 for g in genomes)
    assert all(SPACE.check(SPACE.to_program(g)).functional_hash for g in genomes)
    narrow = GenomeSpace(terms=("adam", "sign_gradient"), max_terms=1)
    assert {tuple(g.terms) for g in (narrow.random(random.Random(s)) for s in range(50))} == {
        ("adam",),
        ("sign_gradient",),
    }


def test_json_round_trips_exactly_and_bad_json_is_one_line():
    for g in [*randoms(50), *KNOWN.values()]:
        text = genome_to_json(g)
        assert genome_from_json(text) == g and SPACE.from_json(SPACE.to_json(g)) == g
        assert json.loads(text)["alphas"] == dict(zip(TERMS, g.alphas, strict=True))
    good = json.loads(genome_to_json(KNOWN["adam"]))
    for bad in [
        "[1]",
        "{",
        json.dumps({**good, "beta1": 1.5}),
        json.dumps({**good, "alphas": {**good["alphas"], "nesterov": 1.0}}),
        json.dumps({**good, "alphas": dict.fromkeys(TERMS, 0.0)}),
        json.dumps({**good, "warmup": "yes"}),
        json.dumps({key: value for key, value in good.items() if key != "eps"}),
    ]:
        with pytest.raises(ValueError) as error:
            genome_from_json(bad)
        assert "\n" not in str(error.value)


def changed_genes(a: Genome, b: Genome) -> set[str]:
    genes = {f"alpha:{n}" for n, x, y in zip(TERMS, a.alphas, b.alphas, strict=True) if x != y}
    fields = ("beta1", "beta2", "eps", "weight_decay", "bias_correction", "warmup", "cosine_decay")
    return genes | {f for f in fields if getattr(a, f) != getattr(b, f)}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_each_mutation_changes_what_it_names(name):
    rng = random.Random(name)
    weights = {"perturb_alpha": 1.0, name: 1.0}  # perturb_alpha always applies: no fallback
    parents = [g for g in randoms(60) if name in SPACE.mutation_table(g, weights)[0]]
    assert len(parents) >= 10
    for parent in parents[:15]:
        child = SPACE.mutate(name, parent, rng)
        changed = changed_genes(parent, child)
        assert changed and 1 <= len(child.terms) <= SPACE.max_terms
        if name.startswith("perturb_") and name != "perturb_alpha":
            assert changed == {name.removeprefix("perturb_")}
        elif name == "perturb_alpha":
            (gene,) = changed
            term = gene.removeprefix("alpha:")
            assert np.sign(child.terms[term]) == np.sign(parent.terms[term])
        elif name == "add_term":
            assert len(child.terms) == len(parent.terms) + 1
        elif name == "remove_term":
            assert len(child.terms) == len(parent.terms) - 1
        elif name == "move_term":
            assert sorted(child.terms.values()) == sorted(parent.terms.values())
            assert set(child.terms) != set(parent.terms)
        else:
            assert changed == {name.removeprefix("flip_")}
        # a different function (compared by its updates: the functional hash does not tell
        # every β₁ of sign(m) + wd·w apart, see the report of this change)
        child_updates = updates(SPACE.to_program(child), steps=12)
        assert not np.array_equal(child_updates, updates(SPACE.to_program(parent), steps=12))


def test_mutations_are_deterministic_and_keep_to_the_space():
    space = GenomeSpace(terms=("adam", "rms", "sign_momentum"), max_terms=2)
    for seed in range(40):
        g = space.random(random.Random(seed))
        for name in MUTATIONS:
            a = space.mutate(name, g, random.Random(seed))
            assert a == space.mutate(name, g, random.Random(seed))
            assert set(a.terms) - set(g.terms) <= set(space.terms)
            assert len(a.terms) <= 2


def test_a_mutation_that_cannot_apply_perturbs_a_weight():
    single = genome({"adam": 1.0})
    child = SPACE.mutate("remove_term", single, random.Random(0))
    assert set(child.terms) == {"adam"} and child.terms["adam"] != 1.0
    assert SPACE.mutation_table(single, {"remove_term": 1.0, "perturb_eps": 2.0}) == (
        ["perturb_eps"],
        [2.0],
    )
    assert SPACE.mutation_table(single, {"remove_term": 1.0}) == (["remove_term"], [1.0])
    with pytest.raises(ValueError, match="positive weight"):
        SPACE.mutation_table(single, {"remove_term": 0.0})


def test_crossover_takes_each_gene_from_a_parent():
    a = genome({"adam": 1.0, "sign_gradient": 0.5}, beta1=0.8, eps=1e-6, bias_correction=True)
    b = genome(
        {"gradient": -1.0, "rms": 2.0, "sign_momentum": 0.25},
        beta1=0.95,
        beta2=0.9,
        weight_decay=0.01,
        bias_correction=False,
        warmup=True,
    )
    children = [crossover(a, b, random.Random(seed)) for seed in range(300)]
    assert children == [crossover(a, b, random.Random(seed)) for seed in range(300)]
    for child in children:
        for name in ("beta1", "beta2", "eps", "weight_decay", "bias_correction", "warmup"):
            assert getattr(child, name) in (getattr(a, name), getattr(b, name))
        for x, y, z in zip(child.alphas, a.alphas, b.alphas, strict=True):
            assert x in (y, z, 0.0)
        assert len(child.terms) >= 1
    assert {c.beta1 for c in children} == {0.8, 0.95}
    assert {frozenset(c.terms) for c in children} > {frozenset(a.terms), frozenset(b.terms)}
    capped = [crossover(a, b, random.Random(seed), max_terms=2) for seed in range(100)]
    assert max(len(c.terms) for c in capped) == 2
    # a child that drew no term (a quarter of these) takes the first parent's
    lonely = [
        crossover(genome({"adam": 1.0}), genome({"rms": 2.0}), random.Random(s)) for s in range(60)
    ]
    assert {frozenset(c.terms.items()) for c in lonely} == {
        frozenset({("adam", 1.0)}),
        frozenset({("rms", 2.0)}),
        frozenset({("adam", 1.0), ("rms", 2.0)}),
    }


def test_genome_settings_are_checked():
    with pytest.raises(ValueError, match="unknown term 'nesterov'"):
        GenomeSpace(terms=("adam", "nesterov"))
    with pytest.raises(ValueError, match="max_terms"):
        GenomeSpace(max_terms=7)
    with pytest.raises(ValueError, match="at least one term"):
        Genome((0.0,) * len(TERMS))
    assert SPACE.warm_start_names() == list(KNOWN)
    assert GenomeSpace(terms=("adam", "gradient")).warm_start_names() == ["sgd", "adam", "adamw"]
    assert replace(KNOWN["adam"], eps=1e-6) != KNOWN["adam"]
