"""The ``evodisc`` command line: one small function per subcommand over the public API.

Errors are reported as one sentence on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

from rich.console import Console
from rich.table import Table

from evodisc.analysis import analyse
from evodisc.files import DamagedFileWarning
from evodisc.primitives import PRIMITIVES
from evodisc.program import ProgramError, format_constant, format_program
from evodisc.validity import check_candidate
from search_spaces.zoo import UnknownOptimizer, resolve_program


class UsageError(Exception):
    """A bad argument, reported on one line."""


def cmd_show(args: argparse.Namespace, out: Console) -> None:
    program = resolve_program(args.program)
    info, validity = analyse(program), check_candidate(program)
    out.print(format_program(program), highlight=False, end="")
    out.print(f"functional hash: {validity.functional_hash}")
    out.print(f"state slots: {', '.join(program.state) or 'none'}")
    out.print(f"memory: {info.memory} tensor(s) per parameter")
    out.print(f"statements: {info.statements} ({info.live_statements} live)")
    out.print(f"validity: {'valid' if validity.valid else 'invalid: ' + validity.reason}")


def cmd_primitives(args: argparse.Namespace, out: Console) -> None:
    table = Table("name", "arity", "written", "meaning", box=None)
    for prim in PRIMITIVES.values():
        written = prim.infix or f"{prim.name}({', '.join('abc'[: prim.arity])})"
        table.add_row(prim.name, str(prim.arity), written, prim.doc)
    out.print(table)


def cmd_zoo(args: argparse.Namespace, out: Console) -> None:
    from search_spaces.zoo import discovered, zoo

    for title, entries in (
        ("published optimizers", zoo()),
        ("discovered by evodisc's campaigns (docs/discoveries.md)", discovered()),
    ):
        if not entries:
            continue
        table = Table("name", "memory", "statements", "description", box=None, title=title)
        for entry in entries.values():
            info = analyse(entry.load())
            table.add_row(entry.name, str(info.memory), str(info.statements), entry.description)
        out.print(table)


def cmd_export(args: argparse.Namespace, out: Console) -> None:
    from evodisc.export import class_name_from_path, torch_source
    from evodisc.files import atomic_write

    program = resolve_program(args.program)
    name = args.name if args.name is not None else class_name_from_path(args.program)
    try:
        if args.to == "latex":  # the simplified rule's math lines
            from evodisc.inspect.simplify import simplify

            text = simplify(program, recognise=False).latex + "\n"
        else:
            text = torch_source(program, class_name=name)
    except ValueError as exc:
        raise UsageError(f"--name: {exc}") from None
    if args.output is not None:
        try:
            atomic_write(args.output, text)  # whole or not at all: never a truncated file
        except OSError as exc:
            raise UsageError(f"cannot write {args.output} ({exc.strerror or exc})") from None
        out.print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)


def cmd_simplify(args: argparse.Namespace, out: Console) -> None:
    from evodisc.inspect.simplify import simplify

    program = resolve_program(args.program)
    if not args.tolerance >= 0:
        raise UsageError(f"--tolerance must be a number ≥ 0, not {args.tolerance}")
    if not args.deadline > 0:
        raise UsageError(f"--deadline must be a positive number of seconds, not {args.deadline}")
    config = _suite_config(args)
    result = simplify(
        program, approximate=args.approximate, tolerance=args.tolerance, deadline=args.deadline
    )
    closest = result.closest.name if result.closest else None
    against = _against_tuned(program, closest, config, args)
    sys.stdout.write(result.report(latex=args.latex, against=against))


def _against_tuned(program, closest: str | None, config, args: argparse.Namespace) -> list[str]:
    """``simplify``'s assessment of ``program`` against the zoo with tuned constants: from the
    cache, or (``--tuned``) with the program evaluated and its reference tuned now."""
    from evodisc.app.discovery import assess
    from fitness.device import DeviceError
    from fitness.suite import evaluate
    from fitness.tasks import TaskError

    try:
        fitness = evaluate([program], config, args.device)[0] if args.tuned else None
        assessment = assess(
            program,
            None if fitness is None else fitness.value,
            math.nan if fitness is None else fitness.uncertainty,
            config,
            closest=closest,
            device=args.device,
            tune_now=args.tuned,
        )
    except (TaskError, DeviceError) as exc:
        raise UsageError(str(exc)) from None
    lines = [] if fitness is None else [f"fitness: {_fitness_text(fitness)}"]
    return lines + assessment.lines()


def cmd_hash(args: argparse.Namespace, out: Console) -> None:
    from evodisc.hashing import functional_hash

    programs = [(spec, resolve_program(spec)) for spec in args.programs]
    for spec, program in programs:
        sys.stdout.write(f"{functional_hash(program)}  {spec}\n")


def cmd_tasks(args: argparse.Namespace, out: Console) -> None:
    from fitness.tasks import describe, heldout_task_names, load_task, task_names

    table = Table(box=None)
    columns = ("name", "set", "params", "train", "val", "steps", "batch", "metric", "better")
    for column in columns:
        table.add_column(column, no_wrap=True)
    table.add_column("model")
    heldout = heldout_task_names()
    for name in task_names() + heldout:
        i = describe(load_task(name))
        table.add_row(
            i.name,
            "held out" if name in heldout else "suite",
            f"{i.parameters:,}",
            str(i.train_examples),
            str(i.val_examples),
            str(i.steps),
            str(i.batch_size),
            i.metric,
            i.better,
            i.description,
        )
    out.print(table)


def _floats(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{text!r}: expected comma-separated numbers") from None
    if not values:
        raise UsageError(f"--lrs {text!r}: expected comma-separated learning rates, got none")
    if not values or not all(v > 0 and v < float("inf") for v in values):
        raise UsageError(f"{text!r}: learning rates must be positive finite numbers")
    return values


def cmd_replay(args: argparse.Namespace, out: Console) -> None:
    from evodisc.app.replay import KINDS, baseline_labels, replay
    from evodisc.files import atomic_write
    from fitness.config import MAX_SEEDS
    from fitness.device import DeviceError
    from fitness.tasks import TaskError

    program = resolve_program(args.program)
    lrs = _floats(args.lrs) if args.lrs is not None else None
    if not 1 <= args.seeds <= MAX_SEEDS:
        raise UsageError(f"--seeds must be between 1 and {MAX_SEEDS}, not {args.seeds}")
    seeds = list(range(args.seeds))
    try:
        baseline_labels(args.baseline or [])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        kwargs = {"lrs": lrs} if lrs else {}
        result = replay(
            program,
            args.task,
            args.baseline or ["adamw"],
            seeds=seeds,
            device=args.device,
            extend=not args.fixed_grid,
            **kwargs,
        )
    except (TaskError, DeviceError) as exc:
        raise UsageError(str(exc)) from None
    for kind in KINDS:
        out.print(result.table(kind))
        if len(result.rows) > 1:
            for name, (value, limit) in result.summary(kind).items():
                spread = f" ± {limit:.3f}" if math.isfinite(limit) else ""
                out.print(f"  vs {name}: geometric mean over the tasks {value:.3f}{spread}")
    if args.json:
        atomic_write(args.json, json.dumps(result.to_dict(), indent=1) + "\n")
    for warning in result.warnings:
        print(f"evodisc: warning: {warning}", file=sys.stderr)


def cmd_tune(args: argparse.Namespace, out: Console) -> None:
    from evodisc.export import named_constants
    from evodisc.files import atomic_write
    from fitness.device import DeviceError
    from fitness.tasks import TaskError
    from fitness.tuning import tune

    program = resolve_program(args.program)
    config = _suite_config(args)
    if args.rounds < 1:
        raise UsageError(f"--rounds must be at least 1, not {args.rounds}")
    if not named_constants(program):
        out.print(f"{args.program}: no named constants to tune (whole numbers stay in the code)")
        return
    try:
        result = tune(program, config, args.device, rounds=args.rounds)
    except (TaskError, DeviceError) as exc:
        raise UsageError(str(exc)) from None
    table = Table("constant", "default", "tuned", box=None)
    for name, value in result.default.items():
        table.add_row(name, format_constant(value), format_constant(result.tuned[name]))
    out.print(table)
    how = " (from the cache: nothing trained now)" if result.cached else ""
    out.print(f"fitness (1.0 = tuned AdamW), {result.variants} variants trained{how}:")
    out.print(f"  default {_fitness_text(result.default_fitness)}")
    out.print(f"  tuned   {_fitness_text(result.fitness)}")
    if args.output is not None:
        try:
            atomic_write(args.output, format_program(result.program))
        except OSError as exc:
            raise UsageError(f"cannot write {args.output} ({exc.strerror or exc})") from None
        out.print(f"wrote {args.output}")


def _suite_config(args: argparse.Namespace):
    """The suite of ``--task`` (default: the search suite) and ``--seeds`` (default: the
    suite's), as ``tune`` and ``simplify`` take them."""
    from fitness.config import MAX_SEEDS, SuiteConfig

    if args.seeds is not None and not 1 <= args.seeds <= MAX_SEEDS:
        raise UsageError(f"--seeds must be between 1 and {MAX_SEEDS}, not {args.seeds}")
    overrides = {"seeds": tuple(range(args.seeds))} if args.seeds is not None else {}
    return SuiteConfig(**({"tasks": tuple(args.task)} if args.task else {}), **overrides)


def _fitness_text(fitness) -> str:
    """``0.9876 ± 0.0210`` (the uncertainty only when it is known)."""
    if fitness.uncertainty == fitness.uncertainty:  # not NaN
        return f"{fitness.value:.4f} ± {fitness.uncertainty:.4f}"
    return f"{fitness.value:.4f}"


def cmd_run(args: argparse.Namespace, out: Console) -> None:
    import time

    from evodisc.campaign.config import CampaignError, check_tasks, load_campaign
    from evodisc.campaign.evaluators import EvaluatorError, HeadLostError
    from evodisc.campaign.progress import Progress
    from evodisc.campaign.run import run_campaign
    from evodisc.campaign.store import CAMPAIGN_FILE, StoreError
    from fitness.device import DeviceError
    from fitness.tasks import TaskError

    directory = args.out or "DIR"
    try:
        campaign = check_tasks(load_campaign(args.campaign), source=args.campaign)
        if args.resume and not args.out:
            raise UsageError("--resume needs --out DIR, the directory of the run to continue")
        directory = args.out or f"runs/{campaign.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        progress = Progress(Console(stderr=True), quiet=args.quiet)
        out.print(f"campaign {campaign.name} → {directory}")
        summary = run_campaign(
            campaign,
            directory,
            resume=args.resume,
            force=args.force,
            address=args.address,
            no_ray=args.no_ray,
            progress=progress,
        )
    except HeadLostError as exc:
        again = f"evodisc run {args.campaign} --out {directory} --resume"
        if args.address:  # the user's cluster: a head must run again first
            again = f"Once a Ray head runs again: {again} --address {args.address}"
        else:  # the embedded Ray: --resume starts another
            again = f"Continue with: {again}"
        raise UsageError(f"{exc}; what finished is logged. {again}") from None
    except (CampaignError, StoreError, EvaluatorError, TaskError, DeviceError) as exc:
        raise UsageError(str(exc)) from None
    except KeyboardInterrupt:
        if not (Path(directory) / CAMPAIGN_FILE).is_file():
            raise UsageError(
                "interrupted before the campaign started; nothing to resume: run it again"
            ) from None
        raise UsageError(
            f"interrupted; what finished is logged. Continue with: evodisc run {args.campaign} "
            f"--out {directory} --resume"
        ) from None
    out.print(
        f"{summary.candidates} candidates in {summary.seconds:.0f} s (the campaign's time; this "
        f"run spent {summary.overhead:.0f} s more starting and stopping evaluators, on baselines "
        f"and selection); log: {directory}/log"
    )
    from evodisc.app.report import write_report

    report = write_report(directory)  # reads the log once and simplifies its top programs
    if report.top:
        best, simplified = report.top[0]
        closest = f"; {simplified.closest.describe()}" if simplified.closest else ""
        out.print(
            f"best: candidate {best.first_id}, fitness {best.fitness_text} (1.0 = tuned AdamW)"
            f"{closest}"
        )
        out.print("simplified (same functional hash; the log keeps it as found):")
        out.print(format_program(simplified.program), end="")
    for line in report.stages:
        out.print(line)
    out.print(f"report: {report.directory / 'index.html'}")


def cmd_report(args: argparse.Namespace, out: Console) -> None:
    from evodisc.app.report import write_report
    from evodisc.campaign.store import StoreError
    from fitness.device import DeviceError
    from fitness.tasks import TaskError

    try:
        report = write_report(args.directory, top=args.top, tune=args.tune)
    except (StoreError, TaskError, DeviceError) as exc:
        raise UsageError(str(exc)) from None
    for line in report.summary:
        out.print(line)
    out.print(f"report: {report.directory / 'index.html'}")


def _task_argument(parser: argparse.ArgumentParser) -> None:
    """``--task T`` (repeatable), as replay, tune and simplify take it."""
    parser.add_argument(
        "--task",
        action="append",
        metavar="T",
        help="task name or FILE.py:FACTORY (repeatable; default: the search suite)",
    )


def _suite_arguments(parser: argparse.ArgumentParser) -> None:
    """``--task``, ``--seeds`` and ``--device``: the suite a program is tuned or scored on."""
    _task_argument(parser)
    parser.add_argument(
        "--seeds", type=int, default=None, help="seeds per learning rate (default: the suite's, 3)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: auto)")


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
    export.add_argument(
        "--to",
        choices=["torch", "latex"],
        default="torch",
        help="torch: an optimizer class; latex: the simplified update rule",
    )
    export.add_argument("--name", default=None, help="class name (default: from the file name)")
    export.add_argument("-o", "--output", default=None, help="write here instead of stdout")
    export.set_defaults(run=cmd_export)

    simplify = sub.add_parser(
        "simplify", help="simplified program, math, closest known optimizers, what was removed"
    )
    simplify.add_argument("program", help="program file, or the name of a known optimizer")
    simplify.add_argument("--latex", action="store_true", help="also print the math as LaTeX")
    simplify.add_argument(
        "--approximate",
        action="store_true",
        help="also round constants and drop small terms (labelled approximate)",
    )
    simplify.add_argument(
        "--tolerance",
        type=float,
        default=0.05,
        help="approximate steps: largest relative change of the updates (default 0.05)",
    )
    simplify.add_argument(
        "--deadline", type=float, default=10.0, help="seconds SymPy may take (default 10)"
    )
    simplify.add_argument(
        "--tuned",
        action="store_true",
        help="score the program and tune its family (or closest optimizer) if not cached (trains)",
    )
    _suite_arguments(simplify)
    simplify.set_defaults(run=cmd_simplify)

    hash_ = sub.add_parser("hash", help="functional hash per program (equal for equivalent ones)")
    hash_.add_argument("programs", nargs="+", metavar="PROGRAM", help="program files or names")
    hash_.set_defaults(run=cmd_hash)

    tasks = sub.add_parser("tasks", help="list the proxy tasks: the suite, then the held-out ones")
    tasks.set_defaults(run=cmd_tasks)

    replay = sub.add_parser("replay", help="train with a learning-rate sweep, against baselines")
    replay.add_argument("program", help="program file, or the name of a known optimizer")
    _task_argument(replay)
    replay.add_argument(
        "--baseline",
        action="append",
        metavar="NAME",
        help="known optimizer or program file, e.g. one from 'evodisc tune -o' (default: adamw)",
    )
    replay.add_argument("--lrs", default=None, help="comma-separated learning rates")
    replay.add_argument("--seeds", type=int, default=1, help="seeds per learning rate")
    replay.add_argument(
        "--fixed-grid",
        action="store_true",
        help="never extend the grid when a best learning rate is on its edge",
    )
    replay.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: auto)")
    replay.add_argument("--json", default=None, metavar="FILE", help="also write the result here")
    replay.set_defaults(run=cmd_replay)

    tune = sub.add_parser(
        "tune", help="tune a program's named constants (β, ε, weight decay, …) on the suite"
    )
    tune.add_argument("program", help="program file, or the name of a known optimizer")
    _suite_arguments(tune)
    tune.add_argument("--rounds", type=int, default=2, help="passes over the constants (2)")
    tune.add_argument("-o", "--output", default=None, help="write the tuned program here")
    tune.set_defaults(run=cmd_tune)

    run = sub.add_parser("run", help="run a discovery campaign (embedded local Ray by default)")
    run.add_argument("campaign", help="campaign file (experiments/*.toml)")
    run.add_argument("--out", default=None, help="campaign directory (default: runs/NAME-TIME)")
    run.add_argument("--resume", action="store_true", help="continue the run in --out")
    run.add_argument("--force", action="store_true", help="resume although the file changed")
    run.add_argument(
        "--address", default=None, help="Ray cluster HOST:PORT (default: $RAY_ADDRESS or local)"
    )
    run.add_argument("--no-ray", action="store_true", help="evaluate in this process, no Ray")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.set_defaults(run=cmd_run)

    report = sub.add_parser("report", help="plots, top programs and an archive of a campaign")
    report.add_argument("directory", help="campaign directory (evodisc run --out DIR)")
    report.add_argument("--top", type=int, default=5, help="rules shown (default 5)")
    report.add_argument(
        "--tune",
        action="store_true",
        help="tune the zoo optimizer each top rule is compared with, when not cached (trains)",
    )
    report.set_defaults(run=cmd_report)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A damaged file set aside (:class:`evodisc.files.DamagedFileWarning`) is one line on
    stderr; other warnings keep Python's format."""
    if issubclass(category, DamagedFileWarning):
        print(f"evodisc: warning: {message}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``evodisc`` console script."""
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            # A pipe has no width: don't let rich wrap or drop table columns at its default of 80.
            width = None if sys.stdout.isatty() else 1000
            args.run(args, Console(highlight=False, width=width))
        except (ProgramError, UsageError, UnknownOptimizer) as exc:
            print(f"evodisc: error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
