"""Benchmark the search's constant-tuning step (``[evolution] tune_constants``): the same
warm-started campaign with and without it, over several campaign seeds and the same candidate
budget; the best fitness reached and the candidates it took.

The campaign is the quickstart's protocol (``teacher_student`` and ``ill_conditioned``, the
learning rates 1e-3 … 0.1, one training seed), in-process (``evaluators = 0``), warm-started
from AdamW with its β₁ set to ``--beta1`` (0.5 by default: deliberately bad; 0.9 is the plain
AdamW warm start). ``[evolution] warm_start`` takes zoo names only, so this script gives the
program space's ``adamw`` that β₁ in this process (the fitness's AdamW baseline is untouched).
The baselines are computed once, in a private ``EVODISC_CACHE``, before the timed runs.

For each run: the best fitness of a candidate trained on the full protocol, the candidates
logged until it was first reached and until ``--target`` was, and the candidates (of those
logged) that were tune variants. Fitness is measured on one training seed, so a best is
optimistic by about its uncertainty (shown).

    python tools/bench_tune_constants.py [--evaluations 150] [--seeds 0 1 2] [--beta1 0.5]
        [--target 1.25] [--out DIR [--measure-only]]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path


def campaign_document(seed: int, evaluations: int, tune: bool) -> dict:
    """The measured campaign: ``tools/bench_search.py``'s AdamW warm start (the quickstart's
    protocol), with or without its constant-tuning step, in batches of 16."""
    from bench_search import _warm_adamw, _warm_tune, base_document

    document = base_document(evaluations, seed)
    (_warm_tune if tune else _warm_adamw)(document)
    document["campaign"]["name"] = "bench-tune"
    document["resources"].update(batch_size=16, in_flight=16)
    return document


def measure(directory: Path, target: float) -> dict:
    """Best fitness, its uncertainty, the candidates until it was first reached and until
    ``target`` was (None: never), the tune variants among the candidates."""
    from evodisc.campaign.store import CandidateLog

    logged = CandidateLog(directory).read().to_pylist()
    best = max((r for r in logged if r["status"] == "ok"), key=lambda r: (r["fitness"], -r["id"]))
    reaching = [r["id"] + 1 for r in logged if r["status"] == "ok" and r["fitness"] >= target]
    return {
        "best": best["fitness"],
        "uncertainty": best["uncertainty"],
        "reached": best["id"] + 1,
        "target": min(reaching, default=None),
        "mutation": best["mutation"],
        "tune_rows": sum(r["mutation"].startswith("tune:") for r in logged),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=150)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--beta1", type=float, default=0.5)
    parser.add_argument("--target", type=float, default=1.25, help="fitness to reach")
    parser.add_argument("--out", type=Path, default=None, help="keep the campaigns here")
    parser.add_argument(
        "--measure-only", action="store_true", help="measure the campaigns already in --out"
    )
    args = parser.parse_args()
    if args.measure_only and args.out is None:
        parser.error("--measure-only needs --out")
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-tune-"))
    os.environ.setdefault("EVODISC_CACHE", str(out / "cache"))

    from evodisc.campaign.config import Campaign
    from evodisc.campaign.run import run_campaign
    from evodisc.edit import replace_constants
    from search_spaces import programs
    from search_spaces.zoo import load_known

    adamw = replace_constants(load_known("adamw"), {0.9: args.beta1})
    known = programs.load_known
    programs.load_known = lambda name: adamw if name == "adamw" else known(name)

    results: dict[bool, list[dict]] = {False: [], True: []}
    for seed in args.seeds:
        for tune in (False, True):  # interleaved
            campaign = Campaign.from_dict(campaign_document(seed, args.evaluations, tune))
            directory = out / f"seed{seed}-{'tune' if tune else 'plain'}"
            if not args.measure_only:
                run_campaign(campaign, directory)
            result = measure(directory, args.target)
            results[tune].append(result)
            print(
                f"seed {seed} tune_constants={str(tune).lower():5}  best {result['best']:.3f} "
                f"± {result['uncertainty'] or 0:.3f} at candidate {result['reached']} "
                f"({result['mutation']}); >= {args.target} at candidate {result['target']}; "
                f"tune variants {result['tune_rows']}",
                flush=True,
            )
    print(f"\nwarm start: AdamW with beta1 = {args.beta1}; {args.evaluations} candidates per run")
    print(
        "| tune_constants | best fitness per seed (median) | candidates to reach it | "
        f"candidates to reach {args.target} | tune variants |"
    )
    print("| --- | --- | --- | --- | --- |")
    for tune, runs in results.items():
        bests = ", ".join(f"{r['best']:.3f}" for r in runs)
        median = statistics.median(r["best"] for r in runs)
        columns = [", ".join(str(r[key]) for r in runs) for key in ("reached", "target")]
        tuned = ", ".join(str(r["tune_rows"]) for r in runs)
        print(f"| {str(tune).lower()} | {bests} ({median:.3f}) | {' | '.join(columns)} | {tuned} |")
    print(f"campaigns in {out}")


if __name__ == "__main__":
    main()
