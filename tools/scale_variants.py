"""How many trainings merging scale variants saves in campaign logs, computed offline.

For each campaign directory: the rule identity (:func:`evodisc.hashing.rule_identity`) of every
logged program, then among the trained candidates (not cache hits, status ``ok`` or
``diverged``) the distinct functional hashes (what was trained) against the distinct identities
(what a campaign that merges would have trained), the share of lr-linear programs, and the
cost of an identity against a functional hash. A log written with merging on says how many of
its cache hits were scale variants (identity seen before under another functional hash).

    python tools/scale_variants.py runs/quickstart runs/lion ...
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from evodisc.campaign.store import CandidateLog
from evodisc.hashing import functional_hash, rule_identity
from evodisc.program import program_from_json

TRAINED = ("ok", "diverged")


def summarise(directory: Path) -> list[str]:
    """The lines printed for one campaign directory."""
    rows = CandidateLog(directory).read().to_pylist()
    programs = {r["functional_hash"]: program_from_json(r["program_json"]) for r in rows}
    start = time.perf_counter()
    rules = {digest: rule_identity(p, digest) for digest, p in programs.items()}
    rule_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for program in programs.values():
        functional_hash(program)
    hash_seconds = time.perf_counter() - start
    trained = [r for r in rows if not r["cache_hit"] and r["status"] in TRAINED]
    hashes = {r["functional_hash"] for r in trained}
    identities = {rules[h].digest for h in hashes}
    linear = sum(rule.lr_linear for rule in rules.values())
    merged_hits = _merged_hits(rows)
    lines = [
        f"{directory}: {len(rows)} candidates, {len(programs)} distinct functions "
        f"({linear} lr-linear), {len(trained)} trained",
        f"  trained: {len(hashes)} distinct functional hashes, {len(identities)} distinct "
        f"identities: merging removes {len(hashes) - len(identities)} "
        f"({(len(hashes) - len(identities)) / max(len(hashes), 1):.1%}) of the trainings",
        f"  identity {1e6 * rule_seconds / max(len(programs), 1):.0f} µs/program, "
        f"functional hash {1e6 * hash_seconds / max(len(programs), 1):.0f} µs/program",
    ]
    if merged_hits is not None:
        lines.append(
            f"  logged with merging: {merged_hits} of {len(rows)} candidates "
            f"({merged_hits / max(len(rows), 1):.1%}) were scale variants answered by the cache"
        )
    return lines


def _merged_hits(rows: list[dict]) -> int | None:
    """Cache hits whose identity was first seen under another functional hash (None: the log
    has no identities)."""
    if not any(r["identity"] for r in rows):
        return None
    first: dict[str, str] = {}
    hits = 0
    for row in sorted(rows, key=lambda r: r["id"]):
        seen = first.setdefault(row["identity"], row["functional_hash"])
        hits += row["cache_hit"] and seen != row["functional_hash"]
    return hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", nargs="+", type=Path)
    for directory in parser.parse_args().directories:
        print("\n".join(summarise(directory)))


if __name__ == "__main__":
    main()
