"""Progress of a running campaign: a live rich panel on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live
from rich.table import Table


@dataclass(frozen=True)
class Stats:
    """What the controller reports after each round."""

    done: int  # candidates logged
    budget: int | None  # evaluation budget, if any
    rate: float  # candidates logged per second (this run)
    best: float | None
    median: float | None  # of the current population
    cache_hit_share: float
    invalid_share: float
    in_flight: int
    eta_seconds: float | None
    rejected_share: float = 0.0  # stopped by the funnel's screening stage

    def line(self) -> str:
        """One plain line (logs, pipes, the final summary)."""
        budget = f"/{self.budget}" if self.budget else ""
        best = "-" if self.best is None else f"{self.best:.4f}"
        median = "-" if self.median is None else f"{self.median:.4f}"
        eta = "-" if self.eta_seconds is None else f"{self.eta_seconds:.0f}s"
        return (
            f"{self.done}{budget} candidates  {self.rate:.1f}/s  best {best}  median {median}  "
            f"cache hits {self.cache_hit_share:.0%}  invalid {self.invalid_share:.0%}  "
            f"{f'screened out {self.rejected_share:.0%}  ' if self.rejected_share else ''}"
            f"in flight {self.in_flight}  eta {eta}"
        )

    def table(self) -> Table:
        table = Table(box=None, show_header=False)
        table.add_row("candidates", f"{self.done}" + (f" / {self.budget}" if self.budget else ""))
        table.add_row("candidates/s", f"{self.rate:.1f}")
        table.add_row("best fitness", "-" if self.best is None else f"{self.best:.4f}")
        table.add_row("median (population)", "-" if self.median is None else f"{self.median:.4f}")
        table.add_row("cache hits", f"{self.cache_hit_share:.0%}")
        table.add_row("invalid", f"{self.invalid_share:.0%}")
        if self.rejected_share:
            table.add_row("screened out", f"{self.rejected_share:.0%}")
        table.add_row("in flight", str(self.in_flight))
        table.add_row("eta", "-" if self.eta_seconds is None else f"{self.eta_seconds:.0f} s")
        return table


class Progress:
    """Shows :class:`Stats`: a live panel on a terminal; else a line every ``every`` seconds."""

    def __init__(self, console: Console | None = None, every: float = 5.0, quiet: bool = False):
        self.console = console or Console(stderr=True)
        self.every = every
        self.quiet = quiet
        self._live: Live | None = None
        self._last = 0.0

    def __enter__(self) -> Progress:
        if not self.quiet and self.console.is_terminal:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def note(self, text: str) -> None:
        """One line about what the run does (shown unless quiet)."""
        if not self.quiet:
            self.console.print(text, highlight=False, soft_wrap=True)

    def update(self, stats: Stats, force: bool = False) -> None:
        if self.quiet:
            return
        if self._live is not None:
            self._live.update(stats.table())
        elif force or time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            self.console.print(stats.line(), highlight=False, soft_wrap=True)
