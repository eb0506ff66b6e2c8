"""Benchmark functional hashing: programs hashed per second (one core), and the share of
duplicates caught in 10,000-candidate streams by exact text, text after dead-code elimination,
and the functional hash, measured side by side in one run.

    OMP_NUM_THREADS=1 taskset -c 0 python tools/bench_hashing.py [--stream 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import time
from collections.abc import Callable, Iterator

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from evodisc.analysis import eliminate_dead_code  # noqa: E402
from evodisc.hashing import functional_hash_info  # noqa: E402
from evodisc.program import Program, format_program, program_to_json  # noqa: E402
from search_spaces.mutations import mutate  # noqa: E402
from search_spaces.space import random_program  # noqa: E402
from search_spaces.zoo import load_known  # noqa: E402


def text_digest(program: Program) -> str:
    """Exact-text dedup key: a digest of the canonical JSON."""
    return hashlib.blake2b(program_to_json(program).encode(), digest_size=16).hexdigest()


def dce_text_digest(program: Program) -> str:
    """Text dedup after dead-code elimination."""
    return text_digest(eliminate_dead_code(program))


def rate(fn: Callable[[Program], object], programs: list[Program], repeat: int = 3) -> float:
    """Best-of-``repeat`` programs per second."""
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for program in programs:
            fn(program)
        best = max(best, len(programs) / (time.perf_counter() - start))
    return best


def independent_mutations(parent: Program, rng: random.Random, n: int) -> Iterator[Program]:
    """``n`` single mutations of ``parent``."""
    for _ in range(n):
        yield mutate(parent, rng)


def evolution_stream(seeds: list[Program], rng: random.Random, n: int) -> Iterator[Program]:
    """Each candidate mutates a random member of the last 100 candidates (a population of 100,
    as in regularized evolution, without selection)."""
    population = list(seeds)
    for _ in range(n):
        child = mutate(rng.choice(population[-100:]), rng)
        population.append(child)
        yield child


def duplicate_shares(programs: list[Program]) -> dict[str, float]:
    """Share of candidates already seen, by each dedup key; and the non-finite share."""
    infos = [functional_hash_info(p) for p in programs]
    keys = {
        "exact text": [text_digest(p) for p in programs],
        "text after DCE": [dce_text_digest(p) for p in programs],
        "functional hash": [info.digest for info in infos],
    }
    shares = {name: 1 - len(set(values)) / len(values) for name, values in keys.items()}
    shares["non-finite"] = sum(not info.finite for info in infos) / len(infos)
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream", type=int, default=10_000, help="candidates per stream")
    parser.add_argument("--programs", type=int, default=2_000, help="programs for the rate")
    args = parser.parse_args()
    rng = random.Random(0)

    print("## Throughput (one process, best of 3)")
    corpora = {
        "random programs, 5-15 statements": [random_program(rng) for _ in range(args.programs)],
        "AdamW mutants": list(independent_mutations(load_known("adamw"), rng, args.programs)),
        "AdamW (zoo)": [load_known("adamw")] * args.programs,
        "Lion (zoo)": [load_known("lion")] * args.programs,
    }
    print("| programs | functional hash /s | exact-text digest /s | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, programs in corpora.items():
        functional = rate(functional_hash_info, programs)
        text = rate(text_digest, programs)
        print(f"| {name} | {functional:,.0f} | {text:,.0f} | {text / functional:.1f}x |")

    print(f"\n## Duplicates caught in streams of {args.stream:,} candidates")
    adamw = load_known("adamw")
    streams = {
        "single mutations of AdamW": list(independent_mutations(adamw, rng, args.stream)),
        "evolution-like stream from AdamW": list(evolution_stream([adamw], rng, args.stream)),
        "random programs": [random_program(rng) for _ in range(args.stream)],
        "evolution-like stream from random programs": list(
            evolution_stream([random_program(rng) for _ in range(100)], rng, args.stream)
        ),
    }
    print("| stream | exact text | text after DCE | functional hash | non-finite |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, programs in streams.items():
        s = duplicate_shares(programs)
        cells = " | ".join(
            f"{100 * s[k]:.1f} %"
            for k in ("exact text", "text after DCE", "functional hash", "non-finite")
        )
        print(f"| {name} | {cells} |")
    example = streams["single mutations of AdamW"][0]
    print(f"\n(one AdamW mutant, for the record)\n{format_program(example)}")


if __name__ == "__main__":
    main()
