"""Benchmark the funnel (docs/campaigns.md): candidates per second that reach a decision
(rejected by the screen, or fully evaluated) with and without it, and how many candidates the
full protocol ranks in its top 10 % the funnel would have rejected or ranked lower.

Two campaigns from one campaign file run side by side for the same wall time, one process and
one thread each (so they share the machine's load alike): arm A is *the protocol without a
funnel* — the file's ``[fitness]`` with neither learning-rate halving (``keep_lrs``) nor early
stopping (``stop_stalled``), and no ``[screen]`` — and arm B the file as written with
``[screen] enabled``. ``--start random`` replaces the file's warm start by random programs
(the stream of a search from scratch). Then the funnel is replayed on arm A's log: every
trained candidate of A is screened (trained under the screen's configuration) and trained under
B's full protocol; A's island populations are rebuilt from its log (aging evolution: the last
``population`` told candidates of each island), and for each quantile and margin the screen's
decision is computed for every candidate as the controller would have made it (an
approximation: in A the candidates the screen would have rejected stay in the populations; with
a screen they never join). That gives, on the same candidates, the share the screen passes, the
speed-up it implies (from the evaluator seconds the two arms measured side by side), the share
of A's top 10 % (by full fitness) it would have rejected, and how B's full protocol (halving)
orders them against A's.

    python tools/bench_funnel.py --minutes 15
    python tools/bench_funnel.py --start random --quantiles 0.5 0.75

The baselines are computed first, once, into ``$EVODISC_CACHE`` (both arms read them).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tomllib
from collections import defaultdict, deque
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


from evodisc.campaign.config import Campaign  # noqa: E402
from evodisc.campaign.controller import (  # noqa: E402
    REJECTED,
    UNSCREENED,
    passes_screen,
    screen_bar,
)
from evodisc.campaign.run import run_campaign  # noqa: E402
from evodisc.campaign.store import CandidateLog  # noqa: E402
from evodisc.fitness_cache import FitnessCache  # noqa: E402
from evodisc.program import program_from_json  # noqa: E402
from fitness.evaluation import evaluate_cached  # noqa: E402
from fitness.quality import spearman  # noqa: E402
from fitness.suite import suite_baselines  # noqa: E402

#: Arm B's screen unless the campaign file sets one: one seed on the three cheaper tasks of the
#: default suite (markov_lm costs ~80 % of a full evaluation on a CPU: docs/benchmarks.md).
SCREEN = {
    "enabled": True,
    "tasks": ["teacher_student", "ill_conditioned", "digits_mlp"],
    "seeds": [0],
}


def arms(
    base: Path,
    minutes: float,
    population: int,
    quantile: float,
    start: str = "warm",
    margin: float | None = None,
) -> dict[str, dict]:
    """The two campaign documents (TOML-shaped): A without the funnel, B with it."""
    document = tomllib.loads(base.read_text())
    document.setdefault("budget", {}).update(wall_seconds=minutes * 60, evaluations=10**6)
    document["resources"] = {"evaluators": 0, "batch_size": 8, "in_flight": 16}
    evolution = document.setdefault("evolution", {})
    evolution["population"] = population
    evolution["tournament"] = max(2, population // 4)
    evolution.pop("restart_every", None)
    if start == "random":
        evolution.update(warm_start=[], random_programs=population)
    document.pop("selection", None)  # the end's re-evaluation is not a decision: not timed
    screen = {**SCREEN, **document.pop("screen", {}), "quantile": quantile}
    if margin is not None:
        screen["margin"] = margin
    funnel_keys = ("keep_lrs", "keep_lrs_after", "stop_stalled")
    fitness = {k: v for k, v in document.get("fitness", {}).items() if k not in funnel_keys}
    return {"A": {**document, "fitness": fitness}, "B": {**document, "screen": screen}}


def campaign_of(document: dict, name: str) -> Campaign:
    """The arm's campaign document, validated, under ``name``."""
    return Campaign.from_dict(
        {**document, "campaign": {**document.get("campaign", {}), "name": name}}
    )


def _run_arm(campaign: Campaign, directory: Path) -> None:
    run_campaign(campaign, directory, no_ray=True)


def run_arms(documents: dict[str, dict], out: Path) -> dict[str, Path]:
    """Run the arms as concurrent processes (in-process evaluators each); their directories."""
    context = multiprocessing.get_context("spawn")
    directories = {arm: out / arm for arm in documents}
    processes = [
        context.Process(target=_run_arm, args=(campaign_of(document, arm), directories[arm]))
        for arm, document in documents.items()
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise SystemExit(f"an arm failed: {process.name} (exit code {process.exitcode})")
    return directories


def throughput(directory: Path) -> dict:
    """Decisions, seconds, decisions per second and evaluator seconds per decision of a run."""
    rows = CandidateLog(directory).read().to_pylist()
    seconds = max(r["wall_time"] for r in rows)
    return {
        "decisions": len(rows),
        "seconds": seconds,
        "per_second": len(rows) / seconds,
        "evaluator_seconds": sum(r["eval_seconds"] for r in rows) / len(rows),
        "rejected": sum(r["status"] == REJECTED for r in rows),
        "best": max(r["fitness"] for r in rows if r["status"] == "ok"),
    }


def stage_seconds(directory: Path) -> tuple[float, float]:
    """Median evaluator seconds of a screen that ended a candidate and of a full evaluation
    (a trained row's seconds less that screen's) in a funnel run's log."""
    rows = [r for r in CandidateLog(directory).read().to_pylist() if not r["cache_hit"]]
    screened = [r["eval_seconds"] for r in rows if r["stage"] == "screen" and r["eval_seconds"]]
    screen = statistics.median(screened) if screened else 0.0
    full = [r["eval_seconds"] - screen for r in rows if r["stage"] == "full"]
    return screen, statistics.median(full)


def replay_funnel(
    directory: Path,
    campaign: Campaign,
    quantiles: list[float],
    margins: list[float],
    costs: tuple[float, float, float],
) -> tuple[list[dict], dict]:
    """The funnel's decisions on the candidates of a run without it (module docstring), with
    ``costs`` = evaluator seconds of a screen, of B's full protocol and of A's."""
    rows = sorted(CandidateLog(directory).read().to_pylist(), key=lambda r: r["wall_time"])
    trained = [r for r in rows if r["status"] in ("ok", "diverged")]
    trained_ids = {r["id"] for r in trained}
    distinct = {r["functional_hash"]: r for r in trained}
    programs = [program_from_json(r["program_json"]) for r in distinct.values()]
    screened = evaluate_cached(programs, FitnessCache(), campaign.stage_config("screen"))
    halved = evaluate_cached(programs, FitnessCache(), campaign.stage_config("full"))
    results = {digest: e.result for digest, e in zip(distinct, screened, strict=True)}
    in_b = {digest: e.result.fitness for digest, e in zip(distinct, halved, strict=True)}
    ok = [r for r in trained if r["status"] == "ok"]
    ranked = sorted((r["fitness"] for r in ok), reverse=True)
    top = ranked[max(0, len(ranked) // 10 - 1)] if ranked else float("inf")
    top_hashes = {r["functional_hash"] for r in ok if r["fitness"] >= top}
    screen_s, full_b, full_a = costs
    population = campaign.evolution.population
    table = []
    for quantile, margin in [(q, m) for m in margins for q in quantiles]:
        islands: dict[int, deque] = defaultdict(lambda: deque(maxlen=population))
        passed = rejected = top_rejected = top_count = 0
        for row in rows:
            result = results.get(row["functional_hash"])
            members = islands[row["island"]]
            if row["id"] in trained_ids and not row["mutation"].startswith(UNSCREENED):
                known = [s for s in members if s is not None]
                bar = screen_bar(known, quantile)
                passes = passes_screen(result, bar, margin)
                passed += passes
                rejected += not passes
                if row["functional_hash"] in top_hashes:
                    top_count += 1
                    top_rejected += not passes
            known_ok = result is not None and result.status == "ok"
            members.append(result.fitness if known_ok else None)  # as the controller keeps them
        decided = passed + rejected
        cost = decided * screen_s + passed * full_b
        table.append(
            {
                "quantile": quantile,
                "margin": margin,
                "screened": decided,
                "pass_share": passed / decided,
                "speedup": decided * full_a / cost,
                "top10_rejected": f"{top_rejected}/{top_count}",
            }
        )
    hashes = [h for h in distinct if distinct[h]["status"] == "ok"]
    a_fit = [distinct[h]["fitness"] for h in hashes]
    b_fit = [in_b[h] for h in hashes]
    b_top = sorted(b_fit, reverse=True)[max(0, len(b_fit) // 10 - 1)] if b_fit else 0.0
    kept = sum(in_b[h] >= b_top for h in top_hashes if h in in_b)
    changes = sorted(abs(b - a) for a, b in zip(a_fit, b_fit, strict=True))
    halving = {
        "candidates": len(hashes),
        "spearman": spearman(a_fit, b_fit) if len(hashes) > 2 else float("nan"),
        "top10_kept": f"{kept}/{len(top_hashes)}",
        "unchanged": sum(c < 1e-9 for c in changes) / max(len(changes), 1),
        "median_change": statistics.median(changes) if changes else 0.0,
        "largest_change": changes[-1] if changes else 0.0,
    }
    return table, halving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--campaign", default="experiments/lion_search.toml")
    parser.add_argument("--start", choices=("warm", "random"), default="warm")
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--population", type=int, default=24)
    parser.add_argument("--quantile", type=float, default=0.5, help="arm B's screen quantile")
    parser.add_argument("--margin", type=float, default=None, help="arm B's (default: the file's)")
    parser.add_argument("--quantiles", type=float, nargs="+", default=[0.25, 0.5, 0.75, 0.9])
    parser.add_argument("--margins", type=float, nargs="+", default=[1.0, 0.0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-funnel"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=False)
    documents = arms(
        Path(args.campaign), args.minutes, args.population, args.quantile, args.start, args.margin
    )
    campaign = campaign_of(documents["B"], "B")
    suite_baselines(replace(campaign.suite_config(), tasks=campaign.baseline_tasks()))
    directories = run_arms(documents, args.out)
    a, b = throughput(directories["A"]), throughput(directories["B"])
    print(
        f"campaign {args.campaign} ({args.start} start), population {args.population}, "
        f"{args.minutes:g} min per arm"
    )
    margin = documents["B"]["screen"].get("margin", 1.0)
    funnel = f"B (funnel, quantile {args.quantile}, margin {margin:g})"
    for arm, numbers in (("A (no funnel)", a), (funnel, b)):
        print(
            f"{arm}: {numbers['decisions']} decisions in {numbers['seconds']:.0f} s = "
            f"{numbers['per_second']:.3f}/s, {numbers['evaluator_seconds']:.2f} evaluator-s "
            f"per decision, {numbers['rejected']} rejected, best {numbers['best']:.4f}"
        )
    print(f"B/A decisions per second: {b['per_second'] / a['per_second']:.2f}x")
    screen_s, full_b = stage_seconds(directories["B"])
    full_a = stage_seconds(directories["A"])[1]
    print(
        f"evaluator seconds: a screen {screen_s:.2f}, B's full protocol {full_b:.2f}, "
        f"A's {full_a:.2f}"
    )
    table, halving = replay_funnel(
        directories["A"], campaign, args.quantiles, args.margins, (screen_s, full_b, full_a)
    )
    print("the funnel replayed on A's candidates:")
    print("| quantile | margin | screened | pass | est. speed-up | A's top 10 % rejected |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for line in table:
        print(
            f"| {line['quantile']} | {line['margin']:g} | {line['screened']} | "
            f"{line['pass_share']:.0%} | {line['speedup']:.1f}x | {line['top10_rejected']} |"
        )
    print(
        f"B's full protocol on A's {halving['candidates']} distinct candidates: Spearman "
        f"{halving['spearman']:.3f} with A's fitness, A's top 10 % still in B's top 10 %: "
        f"{halving['top10_kept']}, fitness unchanged for {halving['unchanged']:.0%}, change "
        f"median {halving['median_change']:.4f}, largest {halving['largest_change']:.4f}"
    )


if __name__ == "__main__":
    main()
