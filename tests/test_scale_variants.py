"""Scale variants are one rule: ``c·u`` and ``u`` (``c > 0``, ``u`` linear in ``lr``) share a
rule identity (:func:`evodisc.hashing.rule_identity`), and a screen that merges them trains one
and gives the others its result with each task's best learning rate mapped by the scales.

Equivalence claims are checked numerically with the torch interpreter (an independent path from
the NumPy one the identity uses): a variant at ``lr`` computes the same updates as the trained
program at the mapped learning rate."""

from __future__ import annotations

import json
import math
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from campaign_helpers import assert_complete, log_rows

import search_spaces.programs as programs_module
from evodisc.app.report import distinct_programs
from evodisc.campaign import store
from evodisc.campaign.config import ADDED_KEYS, ADDED_SECTIONS, EARLIER_VALUES, Campaign
from evodisc.campaign.fake_pool import LRS, TASKS, FakePool
from evodisc.campaign.run import run_campaign
from evodisc.fitness_cache import CachedFitness, FitnessCache, fitness_config_key
from evodisc.hashing import functional_hash, rule_identity
from evodisc.interpreter import compile_program, init_state, step
from evodisc.program import Call, Const, Program, parse_program
from evodisc.screen import Screen, Verdict
from evodisc.validity import check_candidate
from fitness.config import SuiteConfig
from fitness.evaluation import evaluate_cached
from search_spaces.zoo import load_known

#: Factors from 1e-3 to 1e3: round, odd and random ones.
FACTORS = (1e-3, 0.01, 0.37, 0.5, 2.0, 3.0, 7.77, 100.0, 1e3) + tuple(
    10 ** random.Random(7).uniform(-3, 3) for _ in range(12)
)

LR_STATE = parse_program(  # lr inside the state: the whole run scales with lr
    "def train(g, lr, m):\n    m = interp(lr * g, m, 0.9)\n    return m, m\n"
)
NORMALISED = parse_program("def train(g, lr):\n    return lr * g / norm(g)\n")  # a reduction
#: Rules linear in lr: sign-based (coarse: the fine probe), Adam-like, momentum (state),
#: AdamW (reads w), a reduction, lr inside the state.
LINEAR = {
    "signsgd": load_known("signsgd"),
    "lion": load_known("lion"),
    "adam": load_known("adam"),
    "adamw": load_known("adamw"),
    "momentum": load_known("momentum"),
    "lr_state": LR_STATE,
    "normalised": NORMALISED,
}
#: Rules whose update is not linear in lr: the sweep cannot absorb a factor.
NOT_LINEAR = {
    "sign without lr": parse_program("def train(g):\n    return sign(g)\n"),
    "sqrt(lr)": parse_program("def train(g, lr):\n    return sqrt(lr) * g\n"),
    "lr plus a tiny constant step": parse_program(
        "def train(g, lr):\n    return lr * g + 1e-7 * sign(g)\n"
    ),
}


def scaled(program: Program, factor: float) -> Program:
    """``program`` with its update multiplied by ``factor``."""
    update = Call("mul", (Const(factor), program.update))
    return Program(program.params, program.body, (update, *program.returns[1:]))


def torch_updates(program: Program, lr: float, steps: int = 12, seed: int = 0) -> torch.Tensor:
    """The updates of ``program`` at a constant ``lr`` on fresh inputs (float64, torch), the
    weight moving by its own updates and the gradient depending on it."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(50, generator=gen, dtype=torch.float64)
    target = torch.randn(50, generator=gen, dtype=torch.float64)
    compiled = compile_program(program)
    state, updates = init_state(program, w), []
    for t in range(1, steps + 1):
        g = (w - target) * (1 + torch.rand(50, generator=gen, dtype=torch.float64))
        update, state = step(compiled, w, g, lr, float(t), state)
        update = torch.broadcast_to(torch.as_tensor(update, dtype=torch.float64), w.shape)
        updates.append(update)
        w = w - update
    return torch.stack(updates)


@pytest.mark.parametrize("name", LINEAR)
def test_positive_multiples_of_an_lr_linear_rule_share_its_identity(name):
    program = LINEAR[name]
    rule = rule_identity(program)
    assert rule.lr_linear and rule.digest != functional_hash(program)
    for factor in FACTORS:
        variant = rule_identity(scaled(program, factor))
        assert variant.digest == rule.digest, factor
        assert variant.scale == pytest.approx(factor * rule.scale, rel=1e-9)
    assert rule_identity(scaled(program, -1.0)).digest != rule.digest  # -u: another rule


@pytest.mark.parametrize("name", ["signsgd", "adamw", "momentum", "lr_state", "normalised"])
def test_a_variant_at_lr_is_the_rule_at_the_lr_its_scale_maps_to(name):
    """What merging relies on, checked numerically: ``c·u`` at ``lr`` computes the same
    updates as ``u`` at ``lr · scale_variant / scale_rule``."""
    program = LINEAR[name]
    rule = rule_identity(program)
    for factor in (0.37, 2.0, 150.0):
        variant = scaled(program, factor)
        ratio = rule_identity(variant).scale / rule.scale
        for lr in (1e-3, 0.05):
            expected = torch_updates(program, lr * ratio)
            assert torch.allclose(torch_updates(variant, lr), expected, rtol=1e-9, atol=0)


@pytest.mark.parametrize("name", NOT_LINEAR)
def test_a_rule_not_linear_in_lr_is_its_own_rule(name):
    """``2·sign(g)`` and ``sign(g)`` differ: without lr scaling the step, no learning-rate sweep
    makes one the other (each trains at its own fixed step size whatever the grid)."""
    program = NOT_LINEAR[name]
    rule = rule_identity(program)
    assert not rule.lr_linear and rule.scale == 1.0
    assert rule.digest == functional_hash(program)
    assert rule_identity(scaled(program, 2.0)).digest != rule.digest


def test_different_rules_have_different_identities():
    programs = [*LINEAR.values(), load_known("sgd"), load_known("rmsprop")]
    tuned_lion = parse_program(
        "def train(g, lr, m):\n"
        "    update = sign(interp(g, m, 0.91))\n"
        "    m = interp(g, m, 0.99)\n"
        "    return lr * update, m\n"
    )
    digests = {rule_identity(p).digest for p in [*programs, tuned_lion]}
    assert len(digests) == len(programs) + 1
    # momentum is an EMA of g scaled by 10: the same rule (the sweep absorbs the factor)
    ema = parse_program("def train(g, lr, m):\n    m = interp(g, m, 0.9)\n    return lr * m, m\n")
    assert rule_identity(ema).digest == rule_identity(load_known("momentum")).digest


def test_validity_computes_the_rule_on_first_use_only():
    validity = check_candidate(scaled(load_known("adam"), 3.0))
    assert "rule" not in validity.__dict__  # not computed by the check itself
    assert validity.rule.digest == rule_identity(load_known("adam")).digest


def tasks_result(fitness: float, best_lrs: dict[str, float | None]) -> CachedFitness:
    tasks = {name: {"best_lr": lr, "ratio": fitness, "edge": None} for name, lr in best_lrs.items()}
    return CachedFitness(fitness, "ok", {"tasks": tasks}, 0.01)


def best_lrs(result: CachedFitness) -> dict[str, float | None]:
    return {name: task["best_lr"] for name, task in result.details["tasks"].items()}


def test_the_screen_trains_one_variant_and_maps_the_others_best_lr():
    cache, key = FitnessCache(), fitness_config_key({"task": "x"})
    screen = Screen(cache, key, merge_scale_variants=True)
    sgd = check_candidate(load_known("sgd"))
    double, third, negative = (
        check_candidate(scaled(load_known("sgd"), c)) for c in (2.0, 1 / 3, -1.0)
    )
    assert screen.screen(0, sgd).verdict is Verdict.NEW
    assert screen.screen(1, double).verdict is Verdict.WAITING
    assert screen.screen(2, negative).verdict is Verdict.NEW  # -u is another rule
    result = tasks_result(0.8, {"a": 0.01, "b": None})  # b: diverged everywhere
    [(waiter, mapped)] = screen.resolve(sgd, result)
    assert waiter == 1 and mapped.fitness == 0.8 and mapped.uncertainty == 0.01
    assert best_lrs(mapped) == {"a": pytest.approx(0.005, rel=1e-9), "b": None}
    cached = screen.screen(3, third)
    assert cached.verdict is Verdict.CACHED
    assert best_lrs(cached.result) == {"a": pytest.approx(0.03, rel=1e-9), "b": None}
    # without merging, each variant is a function of its own
    plain = Screen(FitnessCache(), key)
    assert [plain.screen(i, v).verdict for i, v in enumerate((sgd, double))] == [Verdict.NEW] * 2


def test_an_invalid_variant_does_not_decide_for_its_rule():
    """A limit on statements holds for the program, not for its rule: a variant over it is
    invalid, and neither gives its verdict to the rule nor takes the rule's result."""
    screen = Screen(FitnessCache(), "key", merge_scale_variants=True)
    too_long = check_candidate(scaled(load_known("adam"), 2.0), max_statements=0)
    assert screen.screen(0, too_long).verdict is Verdict.INVALID
    adam = check_candidate(load_known("adam"))
    assert screen.screen(1, adam).verdict is Verdict.NEW
    screen.resolve(adam, tasks_result(1.0, {"a": 1e-3}))
    assert screen.screen(2, too_long).verdict is Verdict.CACHED  # its own verdict, again
    assert screen.screen(2, too_long).result.status == "invalid"
    assert screen.rule(too_long) is None and screen.rule(adam) == adam.rule


def test_the_screen_rebuilt_from_a_log_maps_the_best_lr():
    """The resume path: a log's rows (identity, scale, the program's own best_lr) feed a new
    screen, which answers another variant at its scale."""
    key = fitness_config_key({"task": "x"})
    double = check_candidate(scaled(load_known("adam"), 2.0))
    row = {
        "functional_hash": double.functional_hash,
        "identity": double.rule.digest,
        "scale": double.rule.scale,
        "config_key": key,
        "fitness": 0.9,
        "status": "ok",
        "details": json.dumps(tasks_result(0.9, {"a": 0.004}).details),
        "uncertainty": 0.02,
    }
    ignores_g = check_candidate(parse_program("def train(w, lr):\n    return lr * w\n"))
    invalid = {  # an invalid row has no identity: keyed by its functional hash
        **row,
        "functional_hash": ignores_g.functional_hash,
        "identity": None,
        "scale": None,
        "status": "invalid",
        "fitness": 0.0,
        "details": json.dumps({"reason": ignores_g.reason}),
    }
    older = {**row, "identity": None}  # a row logged without merging: skipped
    screen = Screen(FitnessCache(), key, merge_scale_variants=True)
    assert screen.ingest(pa.Table.from_pylist([row, older, invalid])) == 2
    screened = screen.screen(0, check_candidate(load_known("adam")))
    assert screened.verdict is Verdict.CACHED and screened.result.fitness == 0.9
    assert best_lrs(screened.result) == {"a": pytest.approx(0.008, rel=1e-9)}
    assert screen.screen(1, ignores_g).result.status == "invalid"


CONFIG = SuiteConfig(
    tasks=("ill_conditioned",), lrs=(1e-2, 0.1), seeds=(0,), dtype="float64", baseline_seeds=(0,)
)


@pytest.mark.usefixtures("fresh_cache")
def test_evaluate_cached_trains_one_variant_and_its_mapped_lr_scores_the_same(tmp_path):
    sgd, double = load_known("sgd"), scaled(load_known("sgd"), 2.0)
    cache = FitnessCache(tmp_path / "cache")
    first, second = evaluate_cached([sgd, double], cache, CONFIG, merge_scale_variants=True)
    assert [first.cache_hit, second.cache_hit] == [False, True] and len(cache) == 1
    assert second.result.fitness == first.result.fitness
    [(lr, mapped)] = [
        (t["best_lr"], second.result.details["tasks"][name]["best_lr"])
        for name, t in first.result.details["tasks"].items()
    ]
    assert mapped == pytest.approx(lr / 2, rel=1e-12)
    # trained directly at the mapped learning rate, the variant scores what the merge gave it
    at_mapped = SuiteConfig(**{**CONFIG.to_dict(), "lrs": (mapped,)})
    [direct] = evaluate_cached([double], FitnessCache(), at_mapped)
    task = next(iter(first.result.details["tasks"]))
    assert direct.result.details["tasks"][task]["metric"] == pytest.approx(
        first.result.details["tasks"][task]["metric"], rel=1e-9
    )
    # without merging, the variant is trained on the grid, where it scores otherwise
    [plain] = evaluate_cached([double], cache, CONFIG)
    ratio = plain.result.details["tasks"][task]["ratio"]
    assert not plain.cache_hit and ratio != first.result.details["tasks"][task]["ratio"]


# Campaigns ---------------------------------------------------------------------------------------

SGD, SIGN = load_known("sgd"), parse_program("def train(g):\n    return sign(g)\n")
#: The random programs of the campaigns below, in order: sgd, two positive multiples, its
#: negative, and a rule without lr with its double.
SCRIPTED = [SGD, scaled(SGD, 2.0), scaled(SGD, 0.37), scaled(SGD, -1.0), SIGN, scaled(SIGN, 2.0)]


@pytest.fixture
def scripted(monkeypatch):
    """The evolution's random programs are :data:`SCRIPTED`, in order (then random again)."""
    programs, real = iter(SCRIPTED), programs_module.random_program
    monkeypatch.setattr(
        programs_module,
        "random_program",
        lambda rng, space: next(programs, None) or real(rng, space),
    )


def fake_campaign(in_flight: int, merge: bool | None = True, evaluations: int = 6) -> Campaign:
    evolution = {"population": 6, "tournament": 2, "warm_start": [], "random_programs": 6}
    if merge is not None:
        evolution["merge_scale_variants"] = merge
    return Campaign.from_dict(
        {
            "campaign": {"name": "scale", "seed": 0},
            "evolution": evolution,
            "budget": {"evaluations": evaluations},
            "fitness": {"tasks": list(TASKS), "lrs": list(LRS)},
            "resources": {"evaluators": 1, "batch_size": 1, "in_flight": in_flight},
        }
    )


@pytest.mark.usefixtures("scripted")
@pytest.mark.parametrize("in_flight", [1, 8])  # 1: answered by the cache; 8: waiting in flight
def test_a_campaign_trains_one_variant_of_a_rule(tmp_path, in_flight):
    run_campaign(fake_campaign(in_flight), tmp_path / "run", pool=FakePool(1))
    rows = log_rows(tmp_path / "run")
    assert_complete(rows, 6)
    assert [r["cache_hit"] for r in rows] == [False, True, True, False, False, False]
    sgd, double, smaller = rows[:3]
    # the variants got sgd's result (a fake fitness is a function of the program: trained,
    # they would score otherwise), their best learning rates mapped by the scales
    for row, factor in ((double, 2.0), (smaller, 0.37)):
        assert row["fitness"] == sgd["fitness"] and row["identity"] == sgd["identity"]
        assert row["scale"] == pytest.approx(factor * sgd["scale"], rel=1e-9)
        for task, value in json.loads(row["details"])["tasks"].items():
            trained = json.loads(sgd["details"])["tasks"][task]["best_lr"]
            assert value["best_lr"] == pytest.approx(trained / factor, rel=1e-9)
    assert [r["identity"] == r["functional_hash"] for r in rows] == [False] * 4 + [True] * 2
    # the report lists one entry per rule
    assert len(distinct_programs(rows)) == 4


@pytest.mark.usefixtures("scripted")
def test_without_merging_every_variant_is_trained(tmp_path):
    run_campaign(fake_campaign(1, merge=False), tmp_path / "run", pool=FakePool(1))
    rows = log_rows(tmp_path / "run")
    assert not any(r["cache_hit"] for r in rows)
    assert all(r["identity"] is None and r["scale"] is None for r in rows)
    assert len(distinct_programs(rows)) == 6


class InterruptedPool(FakePool):
    """A :class:`FakePool` whose ``submits``-th batch is a Ctrl-C."""

    def __init__(self, submits: int):
        super().__init__(1)
        self.submits = submits

    def submit(self, batch) -> None:
        self.submits -= 1
        if self.submits == 0:
            raise KeyboardInterrupt
        super().submit(batch)


def make_old(directory) -> None:
    """Make ``directory`` look written before rule identities: no key in the campaign file
    (with the digest then computed), no identity or scale column in the log."""
    stored = store.read_campaign(directory)
    for section, key in EARLIER_VALUES:  # merge_scale_variants, and any key added since
        del stored["campaign"][section][key]
    for (section, key), old in ADDED_KEYS.items():  # nor the keys that came later still
        assert stored["campaign"][section].pop(key) == old
    for section in ADDED_SECTIONS:
        del stored["campaign"][section]
    document = json.loads(json.dumps(stored["campaign"]))
    del document["campaign"]["name"]
    store.write_campaign(directory, stored["campaign"], fitness_config_key(document))
    for part in (directory / store.LOG_DIR).glob("part-*.parquet"):
        pq.write_table(pq.read_table(part).drop_columns(["identity", "scale"]), part)


@pytest.mark.usefixtures("scripted")
def test_a_directory_written_before_rule_identities_resumes_unchanged(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):  # one candidate in flight: 0 and 1 are logged
        run_campaign(fake_campaign(1, merge=False), out, pool=InterruptedPool(submits=3))
    before = log_rows(out)
    assert [r["id"] for r in before] == [0, 1]
    make_old(out)
    # the same file, which leaves the key at its default (true): resumed with merging off
    run_campaign(fake_campaign(1, merge=None), out, resume=True, pool=FakePool(1))
    rows = log_rows(out)
    assert_complete(rows, 6)
    assert rows[:2] == before
    assert not any(r["cache_hit"] for r in rows)  # 0.37·sgd (id 2) trained: no merging
    assert all(r["identity"] is None and r["scale"] is None for r in rows)
    assert "merge_scale_variants" not in store.read_campaign(out)["campaign"]["evolution"]


@pytest.mark.usefixtures("scripted")
def test_a_resumed_campaign_answers_variants_from_its_log(tmp_path):
    out = tmp_path / "run"
    run_campaign(fake_campaign(1, evaluations=1), out, pool=FakePool(1))  # sgd alone
    # continued with a larger budget (--force): the cache is rebuilt from the log
    run_campaign(fake_campaign(1), out, resume=True, force=True, pool=FakePool(1))
    rows = log_rows(out)
    assert_complete(rows, 6)
    assert [r["cache_hit"] for r in rows] == [False, True, True, False, False, False]
    assert math.isclose(rows[1]["scale"] / rows[0]["scale"], 2.0, rel_tol=1e-9)
    assert rows[1]["fitness"] == rows[0]["fitness"]
