"""Markdown tables from ``evodisc replay --json FILE``: per metric (anytime, final), the program's
ratio against each baseline on each task with its repeatability limit, and the geometric mean
over the tasks (as docs/discoveries.md shows them).

    python tools/replay_tables.py replay.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _cell(value: float | None, limit: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" ± {limit:.3f}" if limit is not None else "")


def tables(data: dict) -> str:
    """Both metrics' tables."""
    names = list(data["rows"][0]["anytime"]["ratios"]) if data["rows"] else []
    lines = []
    for kind in ("anytime", "final"):
        lines += [
            f"{kind} metric, {len(data['seeds'])} seeds (> 1: the program is better):",
            "",
            "| task | program @ lr | " + " | ".join(f"vs {n}" for n in names) + " |",
            "| --- | ---: |" + " ---: |" * len(names),
        ]
        for row in data["rows"]:
            standing = row[kind]
            metric, lr = standing["metric"], standing["best_lr"]
            own = "diverged" if metric is None else f"{metric:.4g} @ {lr:g}"
            cells = [_cell(standing["ratios"][n], standing["uncertainties"][n]) for n in names]
            lines.append(f"| {row['task']} | {own} | " + " | ".join(cells) + " |")
        summary = data["summary"][kind]
        cells = [_cell(*summary[n]) for n in names]
        lines += ["| **geometric mean** | | " + " | ".join(cells) + " |", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="written by evodisc replay --json")
    print(tables(json.loads(parser.parse_args().json.read_text())))


if __name__ == "__main__":
    main()
