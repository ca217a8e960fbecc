"""The sweep's progress bar: current configuration, runs done, elapsed time and ETA."""

from __future__ import annotations

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

from memdiag.model import Run
from memdiag.render.sweep_view import params_text


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
