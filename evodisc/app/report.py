"""``evodisc report DIR``: what a campaign found, as a self-contained page and a terminal summary.

Reads the campaign directory (``campaign.json`` and the candidate log; a campaign still running,
or cut by a crash, is reported as far as it is logged) and writes ``DIR/report/``:
``index.html`` (no network needed: plain HTML and CSS, the plots beside it as PNG files), the
plots (:mod:`evodisc.app.plots`), ``archive.csv``, every distinct program with its fitness, and
``best.py``, the campaign's best program (the selection stage's winner when it ran), simplified.
The top programs are distinct *rules* — one per program up to its constants
(:func:`evodisc.inspect.rules.rule_key`), shown by its fittest variant with how many variants
were seen — simplified (:func:`evodisc.inspect.simplify.simplify`: exact steps only, the raw
program beside it), with their math, the closest known optimizers, their family up to constants
and their fitness against the zoo with tuned constants (:mod:`evodisc.app.discovery`: from the
cache, or tuned when asked).
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import statistics
import string
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from evodisc.app import plots
from evodisc.app.discovery import Assessment, assess, tuned_zoo
from evodisc.campaign import store
from evodisc.campaign.selection import read_selection
from evodisc.files import DamagedFileWarning
from evodisc.inspect.rules import rule_key
from evodisc.inspect.simplify import Simplified, simplify
from evodisc.program import format_program, parse_program, program_from_json
from fitness.aggregate import pareto_ranks
from fitness.config import SuiteConfig

REPORT_DIR = "report"
#: The campaign's best program, simplified, in the report's folder (a file for replay, export…).
BEST_FILE = "best.py"


@dataclass(frozen=True)
class Program:
    """One distinct program (functional hash) of the campaign."""

    functional_hash: str
    first_id: int
    count: int  # candidates with this hash
    fitness: float
    status: str
    statements: int
    memory: int
    text: str
    details: dict
    program_json: str
    uncertainty: float | None = None  # the fitness's repeatability limit; None: unknown

    @property
    def fitness_text(self) -> str:
        """The fitness with its uncertainty, when known: ``0.8123 ± 0.0210``."""
        if self.uncertainty is None:
            return f"{self.fitness:.4f}"
        return f"{self.fitness:.4f} ± {self.uncertainty:.4f}"


@dataclass(frozen=True)
class Rule:
    """One rule of the campaign: its distinct programs (constant variants) that share a
    :func:`~evodisc.inspect.rules.rule_key`, fittest first."""

    key: str
    variants: tuple[Program, ...]

    @property
    def best(self) -> Program:
        return self.variants[0]

    @property
    def candidates(self) -> int:
        return sum(p.count for p in self.variants)


@dataclass(frozen=True)
class Report:
    """Where the report went, its summary lines, its top programs (the best variant of each of
    the top rules, fittest first) with their simplified forms, the top rules with their
    assessments against the zoo with tuned constants (None: no campaign file to say which
    suite the fitness is on), and the lines about the funnel's stages (also in the summary)."""

    directory: Path
    summary: list[str]
    top: list[tuple[Program, Simplified]] = field(default_factory=list)
    rules: list[tuple[Rule, Assessment | None]] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)  # the funnel's screen and selection


def distinct_programs(rows: list[dict]) -> list[Program]:
    """One entry per rule identity (scale variants are one rule), or per functional hash in
    logs without identities: its fittest candidate (the first among equals), fittest first."""
    by_rule: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["id"]):
        by_rule.setdefault(row.get("identity") or row["functional_hash"], []).append(row)
    best = [
        (max(group, key=lambda r: (r["fitness"], -r["id"])), group) for group in by_rule.values()
    ]
    programs = [
        Program(
            row["functional_hash"],
            row["id"],
            len(group),
            row["fitness"],
            row["status"],
            row["statements"],
            row["memory"],
            row["program"],
            json.loads(row["details"] or "{}"),
            row["program_json"],
            row.get("uncertainty"),
        )
        for row, group in best
    ]
    return sorted(programs, key=lambda p: (-p.fitness, p.first_id))


def distinct_rules(programs: list[Program], key: Callable[..., str] = rule_key) -> list[Rule]:
    """The rules of ``programs`` (fittest first), grouped by ``key`` (a function of the parsed
    program), fittest rule first; each rule's variants fittest first."""
    groups: dict[str, list[Program]] = {}
    for program in programs:
        groups.setdefault(key(program_from_json(program.program_json)), []).append(program)
    return sorted(
        (Rule(k, tuple(group)) for k, group in groups.items()),
        key=lambda r: (-r.best.fitness, r.best.first_id),
    )


def write_report(directory: str | Path, top: int = 5, tune: bool = False) -> Report:
    """Write ``DIR/report/`` for the campaign in ``directory``; see the module docstring.
    ``tune`` tunes the zoo optimizer each top rule is compared with when its tuned result is
    not cached (:func:`evodisc.app.discovery.assess`): that trains."""
    directory = Path(directory)
    log = store.CandidateLog(directory)
    try:
        campaign = store.read_campaign(directory)["campaign"]
    except store.StoreError as exc:  # the log alone is enough for a report
        if not log.path.is_dir():
            raise
        warnings.warn(
            f"{exc}; the report is written from the log alone", DamagedFileWarning, stacklevel=2
        )
        campaign = {"campaign": {"name": directory.name}}
    rows = log.read().to_pylist()
    out = directory / REPORT_DIR
    out.mkdir(exist_ok=True)
    rows.sort(key=lambda r: (r["wall_time"], r["id"]))  # the order results arrived in
    programs = distinct_programs(rows)
    figures = _plots(rows, programs, out) if rows else []
    _write_archive(programs, out / "archive.csv")
    rules = distinct_rules([p for p in programs if p.status == "ok"])[:top]
    best = [r.best for r in rules]
    simplified = [simplify(program_from_json(p.program_json)) for p in best]
    assessments = _assessments(campaign, rules, simplified, tune)
    fronts = _pareto_fronts(rules)
    notes = [_rule_lines(r, a, f) for r, a, f in zip(rules, assessments, fronts, strict=True)]
    selection = read_selection(directory)
    stages = funnel_lines(rows) + selection_lines(selection)
    name = campaign["campaign"]["name"]
    summary = _summary(name, rows, programs, best, simplified, notes) + stages
    winner = _write_best(name, selection, best[:1], simplified[:1], out / BEST_FILE)
    if winner:
        summary.append(f"best: {out / BEST_FILE} ({winner})")
    page = _page(campaign, summary, figures, best, simplified, notes)
    (out / "index.html").write_text(page)
    return Report(
        out,
        summary,
        list(zip(best, simplified, strict=True)),
        list(zip(rules, assessments, strict=True)),
        stages,
    )


def _write_best(
    name: str,
    selection: dict | None,
    top: list[Program],
    simplified: list[Simplified],
    path: Path,
) -> str | None:
    """Write the campaign's best program, simplified (the same functional hash), to ``path``
    with a docstring saying where it came from: the selection stage's first when it ran, else
    the top rule's fittest. Returns which it was (None: no program, nothing written)."""
    ok = [e for e in (selection or {}).get("candidates", []) if e["selection_fitness"] is not None]
    if ok:
        entry = ok[0]
        program = simplify(parse_program(entry["program"])).program
        seeds = len(selection["suite"]["seeds"])
        error = entry["selection_uncertainty"]
        spread = "" if error is None else f" ± {error:.4f}"
        what = f"the selection's #1, candidate {entry['id']}"
        fitness = (
            f"selection fitness {entry['selection_fitness']:.4f}{spread} on {seeds} seeds "
            f"(search fitness {entry['fitness']:.4f})"
        )
    elif top:
        program = simplified[0].program
        what = f"the top rule's fittest, candidate {top[0].first_id}"
        fitness = f"search fitness {top[0].fitness_text}"
    else:
        return None
    doc = textwrap.fill(
        f"The best of campaign {name}: {what}; {fitness}. Simplified from the program as found "
        "(the same functional hash) by evodisc report.",
        width=96,
    )
    path.write_text(f'"""{doc}\n"""\n\n\n' + format_program(program))
    return what


def reference_config(campaign: dict) -> SuiteConfig:
    """The suite a campaign's rules are compared with the tuned zoo on: its fitness protocol
    without the funnel's shortcuts (learning-rate halving, early stopping), as ``evodisc tune``
    and ``tools/tune_zoo.py`` tune on it (a campaign written before there was a choice of
    aggregate was scored by the geometric mean)."""
    config = SuiteConfig.from_dict({"aggregate": "geomean", **campaign["fitness"]})
    return dataclasses.replace(config, keep_lrs=0, stop_stalled=0.0)


def _assessments(
    campaign: dict, rules: list[Rule], simplified: list[Simplified], tune: bool
) -> list[Assessment | None]:
    """Each top rule against the zoo with tuned constants on the campaign's suite (None for
    every rule when the campaign file is missing)."""
    if "fitness" not in campaign:
        return [None] * len(rules)
    config = reference_config(campaign)
    known = tuned_zoo(config)
    return [
        assess(
            program_from_json(rule.best.program_json),
            rule.best.fitness,
            math.nan if rule.best.uncertainty is None else rule.best.uncertainty,
            config,
            closest=s.closest.name if s.closest else None,
            tune_now=tune,
            known=known,
        )
        for rule, s in zip(rules, simplified, strict=True)
    ]


def _pareto_fronts(rules: list[Rule]) -> list[int | None]:
    """Each top rule's Pareto rank across the tasks' ratios among the top rules (1: no other
    top rule is better on every task); None when the rules do not have the same two or more
    tasks. Information only: as a ranking it follows the held-out tasks less than any
    aggregate does (docs/fitness.md, *Aggregates*)."""
    tasks = [b.details.get("tasks", {}) for b in (r.best for r in rules)]
    if not tasks or len(tasks[0]) < 2 or any(t.keys() != tasks[0].keys() for t in tasks):
        return [None] * len(rules)
    return pareto_ranks([[t[name]["ratio"] for name in tasks[0]] for t in tasks])


def _rule_lines(rule: Rule, assessment: Assessment | None, front: int | None) -> list[str]:
    """A top rule's variants, Pareto rank and assessment (lines under its summary line)."""
    lines = [_variants_text(rule)]
    if front is not None:
        lines.append(f"Pareto rank across the tasks among the top rules: {front}")
    if assessment is None:
        lines.append("against the zoo with tuned constants: no campaign file, no suite to say")
    else:
        lines += assessment.lines()
    return [f"   {line}" for line in lines]


def _variants_text(rule: Rule) -> str:
    return (
        f"rule of {len(rule.variants)} variant(s) up to constants, "
        f"{rule.candidates} candidate(s); the fittest shown"
    )


def _plots(rows: list[dict], programs: list[Program], out: Path) -> list[tuple[str, str]]:
    fitness = np.array([r["fitness"] for r in rows], dtype=float)
    trained = [p for p in programs if p.status in ("ok", "diverged")]
    fit = np.array([p.fitness for p in trained], dtype=float)
    made = [
        (plots.fitness_over_time(fitness, out / "fitness.png"), "Best and median fitness"),
        (
            plots.shares_over_time(
                np.array([r["cache_hit"] for r in rows], dtype=float),
                np.array([r["status"] == "invalid" for r in rows], dtype=float),
                out / "shares.png",
            ),
            "Cache hits and invalid candidates",
        ),
        (
            plots.fitness_against(
                np.array([p.statements for p in trained], dtype=float),
                fit,
                "statements",
                "Fitness against program size",
                out / "pareto_size.png",
            ),
            "Fitness against size, Pareto front",
        ),
        (
            plots.fitness_against(
                np.array([p.memory for p in trained], dtype=float),
                fit,
                "state tensors per parameter (memory)",
                "Fitness against memory",
                out / "pareto_memory.png",
            ),
            "Fitness against memory, Pareto front",
        ),
        (
            plots.rate_over_time(
                np.array([r["wall_time"] for r in rows], dtype=float), out / "rate.png"
            ),
            "Candidates per second",
        ),
    ]
    return [(path.name, caption) for path, caption in made]


def _write_archive(programs: list[Program], path: Path) -> None:
    columns = (
        "functional_hash",
        "first_id",
        "count",
        "fitness",
        "uncertainty",
        "status",
        "statements",
        "memory",
    )
    table = pa.table(
        {
            **{c: [getattr(p, c) for p in programs] for c in columns},
            "program": [p.text for p in programs],
        }
    )
    pacsv.write_csv(table, path)


def _summary(
    name: str,
    rows: list[dict],
    programs: list[Program],
    best: list[Program],
    simplified: list[Simplified],
    notes: list[list[str]],
) -> list[str]:
    n = len(rows)
    if not n:
        return [f"campaign {name}: no candidate logged yet"]
    hits = sum(r["cache_hit"] for r in rows)
    invalid = sum(r["status"] == "invalid" for r in rows)
    lines = [
        f"campaign {name}: {n} candidates, {len(programs)} distinct programs, "
        f"{hits / n:.0%} cache hits, {invalid / n:.0%} invalid",
    ]
    for rank, (p, s, note) in enumerate(zip(best, simplified, notes, strict=True), 1):
        closest = f"; {s.closest.describe()}" if s.closest else ""
        lines.append(
            f"#{rank} fitness {p.fitness_text} (candidate {p.first_id}, {p.count}×){closest}"
        )
        lines += note
    return lines


def funnel_lines(rows: list[dict]) -> list[str]:
    """What the funnel's screen did (nothing when the campaign had none): how many candidates
    it stopped, and the evaluator time that saved, estimated from the median times of a
    screening and of a full evaluation (a full row's time includes its screen)."""
    screened = [
        r for r in rows if r.get("stage") == "screen" or r.get("screen_fitness") is not None
    ]
    if not screened:
        return []
    rejected = [r for r in screened if r["status"] == "rejected"]
    full = [r for r in screened if r.get("stage") == "full"]
    line = (
        f"screen: {len(screened)} candidates screened, {len(rejected)} rejected "
        f"({len(rejected) / len(screened):.0%}), {len(full)} went on to the full protocol"
    )
    trained = [r["eval_seconds"] for r in rejected if not r["cache_hit"]]
    complete = [r["eval_seconds"] for r in full if not r["cache_hit"]]
    if trained and complete:
        screen_cost, full_cost = statistics.median(trained), statistics.median(complete)
        saved = len(trained) * max(full_cost - screen_cost, 0.0)
        line += (
            f"; a screen took a median {screen_cost:.2f} s, a full evaluation {full_cost:.2f} s: "
            f"the rejections saved about {saved:.0f} evaluator-seconds"
        )
    return [line]


def selection_lines(document: dict | None, top: int = 3) -> list[str]:
    """The selection stage's ranking (its best first), when the campaign ran one."""
    if not document:
        return []
    seeds = len(document["suite"]["seeds"])
    lines = [f"selection ({seeds} seeds, {', '.join(document['suite']['tasks'])}):"]
    for rank, entry in enumerate(document["candidates"][:top], 1):
        value = entry["selection_fitness"]
        error = entry["selection_uncertainty"]
        shown = (
            "-" if value is None else f"{value:.4f}" + ("" if error is None else f" ± {error:.4f}")
        )
        lines.append(
            f"  #{rank} candidate {entry['id']}: {shown} ({entry['status']}; in the search "
            f"{entry['fitness']:.4f})"
        )
    return lines


_PAGE = string.Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>evodisc report: $name</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; color: #222; }
pre { background: #f6f6f6; padding: .8rem; overflow-x: auto; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; flex: 1 1 45%; } figure img { max-width: 100%; }
figcaption { font-size: .9rem; color: #555; } .missing { color: #b00; }
table { border-collapse: collapse; } td, th { padding: .2rem .6rem; border-bottom: 1px solid #ddd; }
</style></head><body>
<h1>Campaign <code>$name</code></h1>
<p>$summary</p>
<div class="figures">$figures</div>
<h2>Top programs</h2>
$programs
<p><a href="archive.csv">archive.csv</a>: every distinct program with its fitness.</p>
<details><summary>Campaign file (resolved)</summary><pre>$campaign</pre></details>
<script>
// Say so on the page when a plot is missing (and let a test read how many loaded).
window.addEventListener("load", () => {
  const images = [...document.images];
  images.filter(i => !(i.complete && i.naturalWidth > 0)).forEach(i => {
    i.insertAdjacentHTML("afterend", `<p class="missing">missing: $${i.getAttribute("src")}</p>`);
  });
  document.body.dataset.imagesLoaded =
    `$${images.filter(i => i.complete && i.naturalWidth > 0).length}/$${images.length}`;
});
</script>
</body></html>
""")


def _page(
    campaign: dict,
    summary: list[str],
    figures,
    best: list[Program],
    simplified: list,
    notes: list[list[str]],
) -> str:
    figure_html = "".join(
        f'<figure><img src="{html.escape(name)}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for name, caption in figures
    )
    return _PAGE.substitute(
        name=html.escape(campaign["campaign"]["name"]),
        summary="<br>".join(html.escape(line) for line in summary),
        figures=figure_html,
        programs="".join(
            _program_html(rank, p, s) + _rule_html(note)
            for rank, (p, s, note) in enumerate(zip(best, simplified, notes, strict=True), 1)
        )
        or "<p>none</p>",
        campaign=html.escape(json.dumps(campaign, indent=1)),
    )


def _program_html(rank: int, program: Program, simplified: Simplified) -> str:
    tasks = program.details.get("tasks", {})
    closest = "; ".join(m.describe() for m in simplified.matches) or "none"
    verdict = "exact, same functional hash" if simplified.exact else "approximate"
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{t['ratio']:.3f}</td>"
        f"<td>{_metric(t['metric'])}</td><td>{t['best_lr']}</td></tr>"
        for name, t in tasks.items()
    )
    return (
        f"<h3>#{rank}: fitness {html.escape(program.fitness_text)}</h3>"
        f"<p>first as candidate {program.first_id}; candidates with this function: "
        f"{program.count}; {program.statements} statements as found, memory {program.memory}</p>"
        f"<p>Closest known optimizers: {html.escape(closest)}</p>"
        f"<p>Simplified ({html.escape(verdict)}):</p>"
        f"<pre>{html.escape(format_program(simplified.program))}</pre>"
        f"<pre>{html.escape(chr(10).join(simplified.math))}</pre>"
        "<details><summary>As found (raw)</summary>"
        f"<pre>{html.escape(program.text)}</pre></details>"
        "<table><tr><th>task</th><th>vs AdamW</th><th>metric</th><th>best lr</th></tr>"
        f"{rows}</table>"
    )


def _rule_html(note: list[str]) -> str:
    """A top rule's lines of the summary (:func:`_rule_lines`) as a list."""
    items = "".join(f"<li>{html.escape(line.strip())}</li>" for line in note)
    return f'<ul class="rule">{items}</ul>'


def _metric(value: float | None) -> str:
    return "diverged" if value is None else f"{value:.4g}"
