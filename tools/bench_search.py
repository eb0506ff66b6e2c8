"""Search quality (DESIGN §3): candidates, trained candidates, compute and wall time each search
arm needs to reach a target fitness, over several campaign seeds, with random search on the same
budget as the floor every arm must beat.

The suite is the quickstart's, kept cheap so that every arm runs on several seeds on a 2-core CPU:
``teacher_student`` and ``ill_conditioned``, one training seed, five learning rates (1e-3 … 0.1),
fitness relative to AdamW tuned on that grid. Three targets, computed on that suite by this tool
(kept in ``OUT/targets.json`` with the zoo's fitness at defaults and the tuned constants):

- ``momentum``: the fitness of the zoo's momentum (SGD with momentum 0.9) at its defaults, the
  target from random programs (rediscovering a momentum-class rule from scratch);
- ``signsgd``: the zoo's signSGD at its defaults, a harder target from random programs (on this
  grid plain SGD already scores about momentum's fitness);
- ``tuned best``: the best fitness among the ``--top`` zoo optimizers that score best at their
  defaults, each with its named constants tuned (:func:`fitness.tuning.tune`), the target from
  an AdamW warm start (DESIGN §4: a rule must beat the tuned best to be a discovery).

Each arm is a campaign built in code (:func:`arm_campaign`) from one base (:func:`base_document`:
population 16, tournaments of 4, batches of 8 with 8 in flight, in-process evaluation) with the
same budget in candidates (``random_search_4x`` four times it, to match RE's training) and the
run's seed; :data:`ARMS` lists what each arm changes. Arms run
interleaved (seed 0 of every arm, then seed 1, …) so that machine load affects all alike, each
into ``OUT/<arm>-s<seed>``; each finished run appends one JSON line to ``OUT/results.jsonl``
(:func:`run_record`: its totals and per-candidate :func:`trace`, from which the tables compute
any target), and a run already there is not run again (a long benchmark resumes).

For each run and target (:func:`first_reached`, in the log's id order, i.e. the order the
candidates were asked): the candidates up to the first whose full-protocol fitness reaches the
target (with the funnel, a screen result never counts), the trained ones among them (not a cache
hit, not invalid; a funnel's rejected candidate was trained at the screen), their summed
``eval_seconds`` (trained-equivalent compute) and the campaign's ``wall_time`` when it arrived.
Each run's best program (by its fitness on training seed 0, the best of many noisy values) is
evaluated again on :data:`RECHECK_SEEDS` (:func:`rechecks`, kept in ``OUT/recheck.json``).

    nice -n 10 python tools/bench_search.py [--seeds 5] [--budget 300] [--top 3] [--arms …]
    python tools/bench_search.py --tables-only      # the tables of what OUT holds, nothing run

Results, command and reading: docs/benchmarks.md, "Search quality".
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from evodisc.campaign.config import Campaign, check_tasks
from evodisc.campaign.run import run_campaign
from evodisc.campaign.store import CandidateLog
from evodisc.files import atomic_write
from evodisc.program import Program, program_from_json
from fitness.config import SuiteConfig
from fitness.suite import evaluate, suite_baselines
from fitness.tuning import tune
from search_spaces.zoo import load_known, zoo

#: The benchmark suite (a campaign file's ``[fitness]``): the quickstart's.
SUITE: dict = {
    "tasks": ["teacher_student", "ill_conditioned"],
    "lrs": [1e-3, 3e-3, 1e-2, 3e-2, 0.1],
    "seeds": [0],
    "dtype": "float32",
}

#: Training seeds each run's best program is evaluated again on (its search saw seed 0 only).
RECHECK_SEEDS = (1, 2, 3)

#: Log statuses of candidates that cost no training (besides cache hits).
UNTRAINED = ("invalid",)


def suite_config() -> SuiteConfig:
    """:data:`SUITE` as the fitness configuration."""
    return SuiteConfig(**{key: tuple(v) if isinstance(v, list) else v for key, v in SUITE.items()})


def base_document(budget: int, seed: int) -> dict:
    """The campaign every arm starts from, as a campaign file's sections: regularized evolution
    of random programs (the quickstart's space and population), ``budget`` candidates."""
    return {
        "campaign": {"name": "bench", "seed": seed},
        "space": {"state": ["m", "v"], "max_statements": 15, "max_state_slots": 3},
        "evolution": {
            "population": 16,
            "tournament": 4,
            "warm_start": [],
            "random_programs": 16,
        },
        "budget": {"evaluations": budget},
        "fitness": copy.deepcopy(SUITE),
        "resources": {"evaluators": 0, "batch_size": 8, "in_flight": 8},
    }


def _no_cache(document: dict) -> None:
    document["resources"]["reuse_results"] = False


def _funnel(document: dict) -> None:
    """Screen every candidate on the cheaper task (early stopping, the median bar)."""
    document["screen"] = {"enabled": True, "tasks": ["ill_conditioned"]}


def _no_merge(document: dict) -> None:
    document["evolution"]["merge_scale_variants"] = False


def _warm_adamw(document: dict) -> None:
    document["evolution"].update(warm_start=["adamw"], random_programs=0)


def _warm_tune(document: dict) -> None:
    """The AdamW warm start with the search's constant-tuning step (``tune_constants``)."""
    _warm_adamw(document)
    document["evolution"]["tune_constants"] = True


def _random_search(document: dict) -> None:
    """Every candidate a random seed of the initial population: best-of-N."""
    budget = document["budget"]["evaluations"]
    document["evolution"].update(population=budget, random_programs=budget)


def _random_search_4x(document: dict) -> None:
    """Random search on about the training RE spends: most random programs are invalid (not
    trained), so best-of-N on four times the candidates trains about as many as RE does."""
    document["budget"]["evaluations"] *= 4
    _random_search(document)


def _genome(document: dict) -> None:
    document["space"] = {"kind": "genome"}


def _genome_ga(document: dict) -> None:
    """The genome space with crossover for every child, as the paper's GA."""
    _genome(document)
    document["evolution"]["crossover"] = 1.0


def _random_genome(document: dict) -> None:
    _genome(document)
    _random_search(document)


#: Each arm: what it changes in :func:`base_document` (in place).
ARMS: dict[str, Callable[[dict], None]] = {
    "re": lambda document: None,
    "re_no_cache": _no_cache,
    "re_funnel": _funnel,
    "re_no_merge": _no_merge,
    "re_warm_adamw": _warm_adamw,
    "re_warm_tune": _warm_tune,
    "genome_ga": _genome_ga,
    "random_search": _random_search,
    "random_search_4x": _random_search_4x,
    "random_genome": _random_genome,
}

#: What each arm is, for the tables.
ARM_NOTES: dict[str, str] = {
    "re": "regularized evolution, random start",
    "re_no_cache": "RE, every candidate trained (`reuse_results = false`)",
    "re_funnel": "RE + funnel (screen on `ill_conditioned`, median bar)",
    "re_no_merge": "RE, scale variants not merged",
    "re_warm_adamw": "RE, warm start from AdamW",
    "re_warm_tune": "RE, warm start from AdamW, constant-tuning step on (`tune_constants`)",
    "genome_ga": "genome space GA, crossover 1.0, random start",
    "random_search": "random programs, best of N",
    "random_search_4x": "random programs, best of 4N (about RE's trained count)",
    "random_genome": "random genomes, best of N",
}


def arm_campaign(arm: str, budget: int, seed: int) -> Campaign:
    """The validated campaign of ``arm`` (:data:`ARMS`) with ``budget`` candidates and ``seed``."""
    document = base_document(budget, seed)
    ARMS[arm](document)
    document["campaign"]["name"] = f"bench-{arm}-s{seed}"
    return check_tasks(Campaign.from_dict(document, source=f"arm {arm}"), f"arm {arm}")


# ------------------------------------------------------------------------------ targets


def targets(out: Path, top: int = 3) -> dict[str, float]:
    """The targets on :data:`SUITE` (see the module docstring), kept in ``OUT/targets.json``
    with the zoo's fitness at defaults (evaluated again only when the suite differs) and the
    tuned constants (:func:`~fitness.tuning.tune` caches each search)."""
    path = out / "targets.json"
    config = suite_config()
    kept = json.loads(path.read_text()) if path.is_file() else {}
    at_default = kept.get("zoo_at_defaults") if kept.get("suite") == SUITE else None
    if at_default is None:
        names = sorted(zoo())
        programs = [load_known(n) for n in names]
        fitnesses = evaluate(programs, config, baselines=suite_baselines(config))
        at_default = {n: f.value for n, f in zip(names, fitnesses, strict=True)}
    best = sorted(at_default, key=lambda n: -at_default[n])[:top]
    tuned = {n: tune(load_known(n), config) for n in best}
    goals = {
        "momentum": at_default["momentum"],
        "signsgd": at_default["signsgd"],
        "tuned best": max(t.fitness.value for t in tuned.values()),
    }
    document = {
        "suite": SUITE,
        "top": top,
        "targets": goals,
        "zoo_at_defaults": at_default,
        "tuned": {n: {"fitness": t.fitness.value, "constants": t.tuned} for n, t in tuned.items()},
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(document, indent=1, sort_keys=True))
    return goals


# ------------------------------------------------------------------------------ one run


@dataclass(frozen=True)
class Reach:
    """Where a run first reached a target: candidates up to and including the first that did,
    the trained ones among them, their evaluation seconds, and the campaign's wall time then."""

    candidates: int
    trained: int
    compute: float
    wall: float


def is_trained(row: Mapping) -> bool:
    """Whether a log row cost training (not a cache hit, not invalid)."""
    return not row["cache_hit"] and row["status"] not in UNTRAINED


def full_fitness(row: Mapping) -> float:
    """A log row's full-protocol fitness (0 for a row whose result is the screen's, or not ok)."""
    full = row.get("stage") in (None, "full") and row["status"] == "ok"
    return row["fitness"] if full else 0.0


def trace(rows: Iterable[Mapping]) -> list[dict]:
    """A run's log rows as what the benchmark needs of each, in id order: its full-protocol
    ``fitness``, whether it was ``trained``, its evaluation ``seconds`` and ``wall`` time."""
    return [
        {
            "id": row["id"],
            "fitness": full_fitness(row),
            "trained": is_trained(row),
            "seconds": row["eval_seconds"],
            "wall": row["wall_time"],
        }
        for row in sorted(rows, key=lambda r: r["id"])
    ]


def first_reached(steps: Sequence[Mapping], target: float) -> Reach | None:
    """The :class:`Reach` of the first candidate of a :func:`trace` whose fitness is at least
    ``target``; None when none reaches it."""
    trained, compute = 0, 0.0
    for count, step in enumerate(steps, start=1):
        trained += step["trained"]
        compute += step["seconds"]
        if step["fitness"] >= target:
            return Reach(count, trained, compute, step["wall"])
    return None


def run_record(arm: str, seed: int, budget: int, rows: Sequence[Mapping]) -> dict:
    """One run's line of ``results.jsonl``: its totals, its best full fitness at the budget
    and its :func:`trace` (from which the tables compute the reach of any target)."""
    steps = trace(rows)
    return {
        "arm": arm,
        "seed": seed,
        "budget": budget,
        "candidates": len(steps),
        "trained": sum(s["trained"] for s in steps),
        "compute": sum(s["seconds"] for s in steps),
        "wall": max((s["wall"] for s in steps), default=0.0),
        "best": max((s["fitness"] for s in steps), default=0.0),
        "trace": steps,
    }


LOG_COLUMNS = ("id", "cache_hit", "status", "stage", "fitness", "eval_seconds", "wall_time")


def run_arm(arm: str, seed: int, budget: int, out: Path) -> dict:
    """Run ``arm`` on ``seed`` into ``OUT/<arm>-s<seed>`` (a leftover of an interrupted run is
    removed first) and return its :func:`run_record`."""
    directory = out / run_name({"arm": arm, "seed": seed})
    shutil.rmtree(directory, ignore_errors=True)
    run_campaign(arm_campaign(arm, budget, seed), directory)
    rows = CandidateLog(directory).read().select(list(LOG_COLUMNS)).to_pylist()
    return run_record(arm, seed, budget, rows)


def read_results(path: Path) -> list[dict]:
    """The records of ``results.jsonl`` (none when it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def best_program(directory: Path) -> Program:
    """The program of a campaign's log with the highest :func:`full_fitness` (the first such)."""
    rows = CandidateLog(directory).read().select([*LOG_COLUMNS, "program_json"]).to_pylist()
    best = max(sorted(rows, key=lambda r: r["id"]), key=full_fitness)
    return program_from_json(best["program_json"])


def rechecks(out: Path, records: Sequence[dict]) -> dict[str, float]:
    """The fitness of each run's best program on :data:`RECHECK_SEEDS` (the search selected it
    on seed 0: its fitness there is the best of many noisy values), by ``<arm>-s<seed>-b<budget>``;
    the runs not checked yet are trained together, and everything is kept in
    ``OUT/recheck.json``."""
    path = out / "recheck.json"
    kept = json.loads(path.read_text()) if path.is_file() else {}
    missing = [r for r in records if run_key(r) not in kept and (out / run_name(r)).is_dir()]
    if missing:
        config = replace(suite_config(), seeds=RECHECK_SEEDS)
        programs = [best_program(out / run_name(r)) for r in missing]
        fitnesses = evaluate(programs, config, baselines=suite_baselines(config))
        kept |= {run_key(r): f.value for r, f in zip(missing, fitnesses, strict=True)}
        atomic_write(path, json.dumps(kept, indent=1, sort_keys=True))
    return {run_key(r): kept[run_key(r)] for r in records if run_key(r) in kept}


def run_name(record: Mapping) -> str:
    """The directory (under OUT) of a run: its arm and seed (the latest run of those)."""
    return f"{record['arm']}-s{record['seed']}"


def run_key(record: Mapping) -> str:
    """A run's key in ``recheck.json``: its arm, seed and budget."""
    return f"{run_name(record)}-b{record['budget']}"


# ------------------------------------------------------------------------------ tables


def _spread(values: Sequence[float], spec: str) -> str:
    """``median [min–max]``, each formatted by ``spec``, or ``—`` for none."""
    if not values:
        return "—"
    median, low, high = statistics.median(values), min(values), max(values)
    return f"{median:{spec}} [{low:{spec}}–{high:{spec}}]"


def tables(
    records: Sequence[dict],
    goals: Mapping[str, float],
    arms: Sequence[str],
    budget: int,
    checked: Mapping[str, float] | None = None,
) -> str:
    """The arms' legend, then one Markdown table per target of ``goals`` — per arm, the seeds
    that reached it within ``budget`` candidates, and over those seeds median [min–max]
    candidates, trained candidates, compute and wall seconds to the target — and one of the
    runs at the budget: per arm over all seeds, trained candidates, compute and wall seconds,
    the best full fitness and that best program's fitness on other seeds (``checked``, from
    :func:`rechecks`)."""
    checked = checked or {}
    by_arm = {
        arm: [r for r in records if r["arm"] == arm and r["budget"] == budget] for arm in arms
    }
    by_arm = {arm: runs for arm, runs in by_arm.items() if runs}
    parts = [*(f"- `{arm}`: {ARM_NOTES[arm]}" for arm in by_arm), ""]
    for name, value in goals.items():
        parts += [
            f"Target **{name}** = {value:.3f}; budget {budget} candidates per run.\n",
            "| arm | reached | candidates to target | trained to target | compute to target (s) "
            "| wall to target (s) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for arm, runs in by_arm.items():
            hits = [first_reached(r["trace"], value) for r in runs]
            hits = [h for h in hits if h is not None]
            parts.append(
                _row(
                    arm,
                    f"{len(hits)}/{len(runs)}",
                    _spread([h.candidates for h in hits], "g"),
                    _spread([h.trained for h in hits], "g"),
                    _spread([h.compute for h in hits], ".1f"),
                    _spread([h.wall for h in hits], ".1f"),
                )
            )
        parts.append("")
    seeds = ", ".join(map(str, RECHECK_SEEDS))
    parts += [
        f"At the budget ({budget} candidates per run; median [min–max] over the seeds):\n",
        "| arm | trained | compute (s) | wall (s) | best fitness | the best's fitness on "
        f"seeds {seeds} |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for arm, runs in by_arm.items():
        parts.append(
            _row(
                arm,
                _spread([r["trained"] for r in runs], "g"),
                _spread([r["compute"] for r in runs], ".1f"),
                _spread([r["wall"] for r in runs], ".1f"),
                _spread([r["best"] for r in runs], ".3f"),
                _spread([checked[run_key(r)] for r in runs if run_key(r) in checked], ".3f"),
            )
        )
    return "\n".join(parts) + "\n"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


# ------------------------------------------------------------------------------ main


def _positive(text: str) -> int:
    """An argparse type: a positive integer."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=_positive, default=5, help="campaign seeds 0..N-1")
    parser.add_argument("--budget", type=_positive, default=300, help="candidates per run")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--top", type=_positive, default=3, help="zoo optimizers tuned")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_search"))
    parser.add_argument("--tables-only", action="store_true", help="print the tables, run nothing")
    args = parser.parse_args(argv)
    results = args.out / "results.jsonl"
    for arm in args.arms:  # every arm's campaign validates before anything runs
        arm_campaign(arm, args.budget, 0)
    start = time.monotonic()
    goals = targets(args.out, args.top)
    print(f"targets {goals} ({time.monotonic() - start:.0f} s)", flush=True)
    if not args.tables_only:
        done = {(r["arm"], r["seed"], r["budget"]) for r in read_results(results)}
        for seed in range(args.seeds):
            for arm in args.arms:
                if (arm, seed, args.budget) in done:
                    continue
                record = run_arm(arm, seed, args.budget, args.out)
                with results.open("a") as stream:
                    stream.write(json.dumps(record) + "\n")
                reached = {n: first_reached(record["trace"], v) for n, v in goals.items()}
                at = {n: r and r.candidates for n, r in reached.items()}
                print(
                    f"{arm} seed {seed}: best {record['best']:.3f}, wall {record['wall']:.0f} s, "
                    f"trained {record['trained']}, reached at {at}",
                    flush=True,
                )
    records = [r for r in read_results(results) if r["budget"] == args.budget]
    checked = rechecks(args.out, records)
    print(tables(records, goals, args.arms, args.budget, checked))


if __name__ == "__main__":
    main()
