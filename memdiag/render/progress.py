"""Progress: the sweep's bar (configuration, runs done, ETA) and leaks' line per iteration."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from memdiag.model import Run, Snapshot
from memdiag.render.tables import params_text
from memdiag.units import format_size


class SweepProgress:
    """A listener for `run_sweep` that draws a rich progress bar and saves after every run.

    `on_run` is called with each finished run (the CLI saves results.json there); failures
    are printed above the bar so they are not lost when it redraws.
    """

    def __init__(self, total: int, on_run: Callable[[Run], None], quiet: bool = False) -> None:
        self.on_run = on_run
        self.running: list[str] = []
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("runs"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=quiet,
        )
        self.task = self.progress.add_task("starting", total=total)

    def __enter__(self) -> SweepProgress:
        self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def started(self, params: dict[str, Any]) -> None:
        self.running.append(params_text(params))
        self.progress.update(self.task, description=" | ".join(self.running))

    def finished(self, run: Run) -> None:
        label = params_text(run.params)
        if label in self.running:
            self.running.remove(label)
        self.on_run(run)
        if not run.ok:
            reason = f"  {run.error.type}: {run.error.message}" if run.error else ""
            self.progress.console.print(f"[red]{run.status}[/] {label}{reason[:160]}")
        self.progress.update(self.task, advance=1, description=" | ".join(self.running) or "done")


class LeakProgress:
    """One line per snapshot of `memdiag leaks` on stderr: the iteration, time taken, ETA
    and the growth since the first snapshot (RSS and Python heap). Plain lines, so a log
    of a CI job reads the same as a terminal."""

    def __init__(self, total: int, unit: str = "iteration", quiet: bool = False) -> None:
        self.total, self.unit, self.quiet = total, unit, quiet
        self.first: Snapshot | None = None
        self.done = 0

    def __call__(self, snap: Snapshot) -> None:
        if self.first is None:
            self.first = snap
            if not self.quiet:
                _say(
                    f"{self.unit} 0/{self.total}: RSS {format_size(snap.rss_bytes)}, "
                    f"Python heap {format_size(snap.heap_bytes)}"
                )
            return
        self.done += 1
        if not self.quiet:
            _say(self.line(snap))

    def line(self, snap: Snapshot) -> str:
        """Return the progress line for `snap` (the n-th after the first)."""
        assert self.first is not None
        done = self.done
        # The child's own clock: the time between the snapshots, not between two polls.
        elapsed = snap.time_s - self.first.time_s
        each = elapsed / max(done, 1)
        left = max(self.total - done, 0)
        eta = f"ETA {_duration(each * left)}" if left else "analysing"
        if left and self.unit == "iteration":
            eta += " + the last call's tracing"  # only the last call runs traced, slower
        rss = snap.rss_bytes - self.first.rss_bytes
        growth = f"RSS {_signed(rss)}"
        if snap.heap_bytes is not None and self.first.heap_bytes is not None:
            growth += f", Python heap {_signed(snap.heap_bytes - self.first.heap_bytes)}"
        return (
            f"{self.unit} {done}/{self.total}  {_duration(elapsed)} ({_duration(each)} each)  "
            f"{eta}  growth so far: {growth}"
        )


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def _signed(size: int) -> str:
    return ("+" if size > 0 else "-" if size < 0 else "") + format_size(abs(size))
