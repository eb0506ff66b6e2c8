"""The ``evodisc`` command line: one small function per subcommand over the public API.

Errors are reported as one sentence on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from evodisc.analysis import analyse
from evodisc.primitives import PRIMITIVES
from evodisc.program import Program, ProgramError, format_program, load_program


class UsageError(Exception):
    """A bad argument, reported on one line."""


def resolve_program(spec: str) -> Program:
    """A program from a file path, or the name of a known optimizer (``adamw``)."""
    from search_spaces.zoo import zoo

    path = Path(spec)
    if path.exists():
        return load_program(path)
    known = zoo()
    if spec in known:
        return known[spec].load()
    raise UsageError(f"{spec}: no such file, and not a known optimizer (see 'evodisc zoo')")


def cmd_show(args: argparse.Namespace, out: Console) -> None:
    program = resolve_program(args.program)
    info = analyse(program)
    out.print(format_program(program), highlight=False, end="")
    out.print(f"state slots: {', '.join(program.state) or 'none'}")
    out.print(f"memory: {info.memory} tensor(s) per parameter")
    out.print(f"statements: {info.statements} ({info.live_statements} live)")
    verdict = "valid" if info.valid else "invalid: the update never depends on the gradient g"
    out.print(f"validity: {verdict}")


def cmd_primitives(args: argparse.Namespace, out: Console) -> None:
    table = Table("name", "arity", "written", "meaning", box=None)
    for prim in PRIMITIVES.values():
        written = prim.infix or f"{prim.name}({', '.join('abc'[: prim.arity])})"
        table.add_row(prim.name, str(prim.arity), written, prim.doc)
    out.print(table)


def cmd_zoo(args: argparse.Namespace, out: Console) -> None:
    from search_spaces.zoo import zoo

    table = Table("name", "memory", "statements", "description", box=None)
    for entry in zoo().values():
        info = analyse(entry.load())
        table.add_row(entry.name, str(info.memory), str(info.statements), entry.description)
    out.print(table)


def cmd_export(args: argparse.Namespace, out: Console) -> None:
    from evodisc.export import torch_source

    program = resolve_program(args.program)
    text = torch_source(program, class_name=args.name)
    if args.output:
        Path(args.output).write_text(text)
        out.print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evodisc", description="Discover optimization algorithms by evolution."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    show = sub.add_parser("show", help="normalised listing, state slots, memory, validity")
    show.add_argument("program", help="program file, or the name of a known optimizer")
    show.set_defaults(run=cmd_show)

    sub.add_parser("primitives", help="list the primitives").set_defaults(run=cmd_primitives)
    sub.add_parser("zoo", help="list the known optimizers").set_defaults(run=cmd_zoo)

    export = sub.add_parser("export", help="write a ready torch.optim.Optimizer")
    export.add_argument("program", help="program file, or the name of a known optimizer")
    export.add_argument("--to", choices=["torch"], default="torch", help="target format")
    export.add_argument("--name", default=None, help="class name (default: from the file name)")
    export.add_argument("-o", "--output", default=None, help="write here instead of stdout")
    export.set_defaults(run=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``evodisc`` console script."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args, Console(highlight=False))
    except (ProgramError, UsageError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) else str(exc)
        print(f"evodisc: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
