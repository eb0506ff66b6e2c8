"""Hash-collision study: hash many random programs, then check every same-hash group numerically
on fresh inputs (false positives), and re-hash equivalent rewrites (false negatives).

    python tools/hash_collisions.py [--programs 100000] [--workers 2]

False positives: programs with equal digests but different updates on fresh inputs (another seed,
another tensor size, eight steps with t = 1..6, 50, 5000). Within each group the distinct
(dead-code-eliminated) programs are clustered by numerical agreement (same non-finite pattern,
finite values within rtol 1e-6); every same-hash pair falling in different clusters is a false
positive. False negatives: each valid program is rewritten by three random equivalence-preserving
rewrites, exact in real arithmetic but not in float (a / b = a * (1 / b), expanded interp,
associativity, distributivity, sqrt = ** 0.5, plus renames, reorders, dead code); a changed
digest whose rewrite agrees numerically on the fresh inputs is a false negative.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict
from multiprocessing import Pool

import numpy as np

from evodisc.analysis import eliminate_dead_code, ignores_gradient
from evodisc.hashing import functional_hash_info, make_probe, run_updates
from evodisc.interpreter import compile_program
from evodisc.program import Program, program_to_json
from search_spaces.rewrites import equivalent_rewrite
from search_spaces.space import random_program

BASE_SEED = 1_000_000
FRESH = make_probe(random.Random(99), 50, (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 50.0, 5000.0))


def program_for(index: int) -> Program:
    return random_program(random.Random(BASE_SEED + index))


def fresh_updates(program: Program) -> np.ndarray:
    return run_updates(compile_program(program, backend="numpy"), FRESH)


def agree(a: np.ndarray, b: np.ndarray) -> bool:
    """Same non-finite pattern and finite values within rtol 1e-6 (atol relative to the scale)."""
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(fa, fb):
        return False
    if not fa.any():
        return True
    scale = np.abs(a[fa]).max()
    return bool(np.allclose(a[fa], b[fa], rtol=1e-6, atol=1e-10 * scale))


def hash_chunk(indices: range) -> list[tuple[int, str, bool, str]]:
    """(index, digest, valid, text after dead-code elimination) per program; valid: finite on
    the probe and reading the gradient (what the search would evaluate)."""
    out = []
    for i in indices:
        program = program_for(i)
        info = functional_hash_info(program)
        valid = info.finite and not ignores_gradient(program)
        out.append((i, info.digest, valid, program_to_json(eliminate_dead_code(program))))
    return out


def check_group(members: list[tuple[int, bool]]) -> tuple[int, int, int, int]:
    """(pairs, false-positive pairs, valid pairs, valid false-positive pairs) of one group of
    distinct programs (index, valid) sharing a digest."""
    clusters: list[tuple[np.ndarray, int]] = []
    sizes: list[int] = []
    labels: list[int] = []
    for index, _ in members:
        updates = fresh_updates(program_for(index))
        for k, (rep, _) in enumerate(clusters):
            if agree(rep, updates):
                sizes[k] += 1
                labels.append(k)
                break
        else:
            clusters.append((updates, index))
            sizes.append(1)
            labels.append(len(sizes) - 1)
    k = len(members)
    pairs = k * (k - 1) // 2
    false = pairs - sum(s * (s - 1) // 2 for s in sizes)
    valid = [v for _, v in members]
    valid_members = sum(valid)
    valid_pairs = valid_members * (valid_members - 1) // 2
    valid_sizes: dict[int, int] = defaultdict(int)
    for (_, v), cluster in zip(members, labels, strict=True):
        valid_sizes[cluster] += v
    valid_false = valid_pairs - sum(s * (s - 1) // 2 for s in valid_sizes.values())
    return pairs, false, valid_pairs, valid_false


def rewrite_check(index: int) -> tuple[bool, bool]:
    """(digest changed, digest changed although the rewrite agrees on fresh inputs)."""
    program = program_for(index)
    rng = random.Random(index)
    rewritten = program
    for _ in range(3):
        rewritten = equivalent_rewrite(rewritten, rng, exact=False)
    changed = functional_hash_info(rewritten).digest != functional_hash_info(program).digest
    confirmed = changed and agree(fresh_updates(program), fresh_updates(rewritten))
    return changed, confirmed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", type=int, default=100_000)
    parser.add_argument("--rewrites", type=int, default=20_000, help="programs to rewrite")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    start = time.perf_counter()
    chunk = 1000
    chunks = [range(i, min(i + chunk, args.programs)) for i in range(0, args.programs, chunk)]
    with Pool(args.workers) as pool:
        rows = [row for part in pool.imap_unordered(hash_chunk, chunks) for row in part]
        hashed = time.perf_counter() - start

        groups: dict[str, dict[str, tuple[int, bool]]] = defaultdict(dict)
        for index, digest, finite, text in rows:
            groups[digest].setdefault(text, (index, finite))
        shared = [list(g.values()) for g in groups.values() if len(g) > 1]
        results = pool.map(check_group, shared, chunksize=16)
        pairs, false, valid_pairs, valid_false = (sum(col) for col in zip(*results, strict=True))

        valid_indices = [i for i, _, valid, _ in rows if valid][: args.rewrites]
        checks = pool.map(rewrite_check, valid_indices, chunksize=200)
    changed = sum(c for c, _ in checks)
    confirmed = sum(c for _, c in checks)

    n = len(rows)
    distinct_texts = sum(len(g) for g in groups.values())
    print(f"programs hashed: {n:,} in {hashed:.1f} s with {args.workers} workers")
    valid = sum(r[2] for r in rows)
    print(f"valid (finite, read g): {valid:,}; distinct after DCE: {distinct_texts:,}")
    print(
        f"distinct digests: {len(groups):,}; digests shared by >1 distinct program: {len(shared):,}"
    )
    print(f"same-hash pairs of distinct programs: {pairs:,}")
    print(f"  false positives: {false:,} ({100 * false / max(pairs, 1):.4f} %)")
    print(
        f"  among valid programs: {valid_false:,} of {valid_pairs:,} pairs "
        f"({100 * valid_false / max(valid_pairs, 1):.4f} %)"
    )
    print(f"rewritten valid programs (3 inexact rewrites each): {len(checks):,}")
    print(f"  digest changed: {changed:,} ({100 * changed / max(len(checks), 1):.3f} %)")
    print(
        f"  of which numerically equal on fresh inputs (false negatives): {confirmed:,} "
        f"({100 * confirmed / max(len(checks), 1):.3f} %)"
    )
    print(f"total time: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
