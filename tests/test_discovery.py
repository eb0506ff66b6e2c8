"""Rules up to constants (evodisc.inspect.rules), the report's top rules, and what counts as a
discovery (evodisc.app.discovery): a rule against the zoo with tuned constants, in the report and
in `evodisc simplify`."""

from __future__ import annotations

import json
import math

import pytest
from campaign_helpers import write_campaign

from evodisc.analysis import analyse
from evodisc.app.cli import main
from evodisc.app.discovery import Against, assess
from evodisc.app.report import reference_config, write_report
from evodisc.campaign import store
from evodisc.campaign.config import load_campaign
from evodisc.edit import replace_constants
from evodisc.hashing import functional_hash
from evodisc.inspect.rules import family, rule_key, structure_key
from evodisc.program import format_program, parse_program, program_to_json
from fitness.config import SuiteConfig
from fitness.suite import Fitness
from fitness.tuning import Tuned, cached_tune
from fitness.uncertainty import ratio_uncertainty
from search_spaces.zoo import load_known

#: A rule that no zoo optimizer has: momentum through tanh.
TANH_MOMENTUM = "def train(g, lr, m):\n    m = interp(g, m, 0.9)\n    return lr * tanh(m), m\n"


def momentum(beta: float):
    return replace_constants(load_known("momentum"), {0.9: beta})


def test_constant_variants_are_one_rule_and_zoo_structures_are_families():
    lion = load_known("lion")
    variant = replace_constants(lion, {0.9: 0.95, 0.99: 0.98})
    assert functional_hash(variant) != functional_hash(lion)
    assert structure_key(variant) == structure_key(lion)
    assert rule_key(variant) == rule_key(lion) == "family:lion" and family(variant) == "lion"
    # the same rule spelt otherwise (renamed, reordered) is the same rule
    spelt = parse_program(
        "def train(lr, g, buf):\n    new = interp(g, buf, 0.97)\n"
        "    step = sign(interp(g, buf, 0.8))\n    return step * lr, new\n"
    )
    assert rule_key(spelt) == "family:lion"
    # AdamW without weight decay is Adam's family; another structure is no family
    assert family(replace_constants(load_known("adamw"), {0.01: 0.0})) == "adam"
    tanh = parse_program(TANH_MOMENTUM)
    assert family(tanh) is None and rule_key(tanh).startswith("structure:")
    assert rule_key(replace_constants(tanh, {0.9: 0.5})) == rule_key(tanh)
    assert rule_key(tanh) != rule_key(replace_constants(lion, {0.99: 0.9}))  # β₁ = β₂: other


def _tuned(name: str, value: float, limit: float) -> Tuned:
    program = load_known(name)
    fitness = Fitness(value, {}, limit)
    return Tuned(program, {}, {}, fitness, fitness, 1)


def test_the_verdict_words():
    config = SuiteConfig(tasks=("ill_conditioned",))
    known = {"lion": _tuned("lion", 0.8, 0.04), "adamw": _tuned("adamw", 1.1, 0.05)}
    tanh = parse_program(TANH_MOMENTUM)
    # a new structure: better than the best tuned zoo optimizer by more than the uncertainty
    new = assess(tanh, 1.3, 0.05, config, known=known)
    assert new.verdict == "new" and [a.name for a in new.against] == ["adamw"]
    [against] = new.against
    assert against.ratio == pytest.approx(1.3 / 1.1)
    assert against.uncertainty == pytest.approx(ratio_uncertainty(1.3, 0.05, 1.1, 0.05))
    # ... within the uncertainty of the tuned best: no gain (beating Lion alone is not enough)
    assert assess(tanh, 1.12, 0.05, config, known=known).verdict == "no gain"
    # a zoo family with other constants is re-tuned, whatever its fitness; the zoo's own
    # program is no gain; the family's tuned result comes first
    lion = assess(
        replace_constants(load_known("lion"), {0.9: 0.95}), 2.0, 0.05, config, known=known
    )
    assert lion.verdict == "re-tuned" and [a.name for a in lion.against] == ["lion", "adamw"]
    assert lion.lines()[0] == "family: Lion up to constants (other constants)"
    own = assess(load_known("lion"), 0.8, 0.04, config, known=known)
    assert own.verdict == "no gain" and own.zoo_program
    # no tuned reference: no verdict for a new structure, and what to tune
    unknown = assess(tanh, 1.3, 0.05, config, closest="momentum", known={})
    assert unknown.verdict is None
    assert unknown.lines()[-1] == (
        "verdict: unknown, no tuned zoo optimizer known for this suite (tune momentum: "
        "report --tune, simplify --tuned)"
    )
    # the rule's fitness unknown (simplify without --tuned): the tuned references, no ratio
    bare = assess(tanh, None, math.nan, config, known=known)
    assert bare.verdict is None and math.isnan(bare.against[0].ratio)
    assert bare.lines()[1].endswith("this rule's fitness is not known")
    assert not Against("adamw", known["adamw"], 1.05, math.nan).better  # unknown: never better


def _row(i: int, program, fitness: float, ratios=(1.0, 1.0)) -> dict:
    info = analyse(program)
    tasks = {
        name: {"ratio": r, "metric": 0.1 / r, "best_lr": 0.01}
        for name, r in zip(("a", "b"), ratios, strict=True)
    }
    return {
        "id": i,
        "mutation": "random",
        "program": format_program(program),
        "program_json": program_to_json(program),
        "functional_hash": functional_hash(program),
        "cache_hit": False,
        "status": "ok",
        "fitness": fitness,
        "uncertainty": 0.05,
        "details": json.dumps({"tasks": tasks}),
        "statements": info.statements,
        "state_slots": len(program.state),
        "memory": info.memory,
        "wall_time": float(i),
    }


@pytest.fixture
def campaign_dir(tmp_path, short_task, fresh_cache):
    """A campaign log by hand: three momentum variants (the best first in fitness), a rule of
    no zoo family, AdamW itself, and an invalid program."""
    campaign = load_campaign(write_campaign(tmp_path, task=short_task))
    directory = tmp_path / "run"
    directory.mkdir()
    store.write_campaign(directory, campaign.to_dict(), campaign.digest())
    log = store.CandidateLog(directory, writer=True)
    log.append(
        [
            _row(0, momentum(0.5), 0.7),
            _row(1, momentum(0.8), 1.3, (1.5, 1.1)),
            _row(2, parse_program(TANH_MOMENTUM), 1.2, (1.0, 1.4)),
            _row(3, momentum(0.95), 0.9),
            _row(4, load_known("adamw"), 1.0),
            _row(5, momentum(0.8), 1.3, (1.5, 1.1)),  # the same program again
            {**_row(6, momentum(0.3), 0.0), "status": "invalid"},
        ]
    )
    log.flush()
    return directory, campaign.fitness


def test_the_report_lists_rules_and_their_tuned_comparison(campaign_dir, capsys):
    directory, config = campaign_dir
    report = write_report(directory, top=3)
    rules = [rule for rule, _ in report.rules]
    assert [r.key.split(":")[0] for r in rules] == ["family", "structure", "family"]
    lion_free = rules[0]
    assert lion_free.key == "family:momentum" and len(lion_free.variants) == 3  # not the invalid
    assert lion_free.best.fitness == 1.3 and lion_free.candidates == 4
    assert [p.first_id for p in lion_free.variants] == [1, 3, 0]  # fittest first
    assert [p.fitness for p, _ in report.top] == [1.3, 1.2, 1.0]  # one entry per rule
    # nothing tuned yet: the family and the verdict, no comparison
    momentum_lines = report.rules[0][1].lines()
    assert momentum_lines == [
        "family: Momentum up to constants (other constants)",
        "verdict: re-tuned",
    ]
    assert report.rules[2][1].verdict == "no gain"  # AdamW at its own constants
    assert report.rules[1][1].verdict is None  # a new structure, no tuned reference
    summary = "\n".join(report.summary)
    assert "rule of 3 variant(s) up to constants, 4 candidate(s)" in summary
    # Pareto ranks across the tasks among the top rules: AdamW's (1, 1) is below momentum's
    fronts = [line.split(": ")[1] for line in report.summary if "Pareto rank" in line]
    assert fronts == ["1", "1", "2"]

    # `report --tune` tunes the family of the top rule (cheap here), then it is in the cache
    assert cached_tune(load_known("momentum"), config) is None
    assert main(["report", str(directory), "--top", "1", "--tune"]) == 0
    tuned = cached_tune(load_known("momentum"), config)
    assert tuned is not None
    out = capsys.readouterr().out
    ratio = 1.3 / tuned.fitness.value
    limit = ratio_uncertainty(1.3, 0.05, tuned.fitness.value, tuned.fitness.uncertainty)
    assert f"this rule {ratio:.3f} ± {limit:.3f} of it" in out
    assert f"against Momentum with tuned constants (beta = {tuned.tuned['beta']!r}" in out

    # a report without --tune reads it from the cache: every top rule is compared with it
    report = write_report(directory, top=3)
    [against] = report.rules[0][1].against
    assert against.name == "momentum" and against.ratio == pytest.approx(ratio)
    new = report.rules[1][1]
    assert new.verdict == ("new" if new.against[0].better else "no gain")
    assert new.against[0].ratio == pytest.approx(1.2 / tuned.fitness.value)
    page = (report.directory / "index.html").read_text()
    assert "family: Momentum up to constants (other constants)" in page
    assert f"this rule {ratio:.3f} ± {limit:.3f} of it" in page and "verdict: re-tuned" in page


def test_the_report_compares_with_the_zoo_tuned_without_the_funnels_shortcuts(campaign_dir):
    """Halving and early stopping make a search cheaper; the zoo is tuned (evodisc tune,
    tools/tune_zoo.py) on the protocol without them, and the report looks its results up
    there: the same suite, the same cache key."""
    directory, config = campaign_dir
    document = store.read_campaign(directory)["campaign"]
    plain = reference_config(document).cache_key("cpu")
    assert plain == config.cache_key("cpu")
    document["fitness"] |= {"keep_lrs": 2, "keep_lrs_after": 0.5, "stop_stalled": 0.25}
    assert SuiteConfig.from_dict(document["fitness"]).cache_key("cpu") != plain
    assert reference_config(document).cache_key("cpu") == plain


def test_a_report_without_its_campaign_file_names_no_suite(campaign_dir):
    directory, _ = campaign_dir
    (directory / store.CAMPAIGN_FILE).unlink()
    with pytest.warns(UserWarning):
        report = write_report(directory, top=2)
    assert [assessment for _, assessment in report.rules] == [None, None]
    assert "no campaign file, no suite to say" in (report.directory / "index.html").read_text()


def test_simplify_shows_the_family_and_with_tuned_the_comparison(
    tmp_path, short_task, fresh_cache, capsys
):
    path = tmp_path / "found.py"
    path.write_text(format_program(momentum(0.8)))
    args = ["simplify", str(path), "--task", short_task, "--seeds", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    block = out.split("against the zoo with tuned constants (1.0 = tuned AdamW):\n")[1]
    assert block.startswith(
        "  family: Momentum up to constants (other constants)\n  verdict: re-tuned\n\nsteps:"
    )
    assert main([*args, "--tuned"]) == 0  # scores the program and tunes momentum
    out = capsys.readouterr().out
    config = SuiteConfig(tasks=(short_task,), seeds=(0,))
    tuned = cached_tune(load_known("momentum"), config)
    assert tuned is not None
    import fitness

    [own] = fitness.evaluate([momentum(0.8)], config, "cpu")
    ratio = own.value / tuned.fitness.value
    assert f"  fitness: {own.value:.4f}" in out
    assert "of it\n  verdict: re-tuned\n" in out and f"this rule {ratio:.3f}" in out
    assert main(args) == 0  # without --tuned, from the cache: the reference, not the ratio
    out = capsys.readouterr().out
    assert "Momentum with tuned constants" in out and "this rule's fitness is not known" in out
    assert main([*args[:2], "--seeds", "0"]) == 2  # a bad suite is one line
    assert capsys.readouterr().err.startswith("evodisc: error: --seeds must be between 1 and")
