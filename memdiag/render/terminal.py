"""Terminal rendering of a run: a compact summary an engineer reads at a glance."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from memdiag.analysis.phases import PhasePeak
from memdiag.model import Run, Sweep
from memdiag.render.sweep_view import TableView, notes, params_text, summary, sweep_tables
from memdiag.units import format_size

STATUS_STYLE = {
    "ok": "green",
    "error": "red",
    "oom": "red",
    "timeout": "yellow",
    "killed": "yellow",
}


# A log or a CI job is not a terminal: tables there are not folded at 80 columns.
LOG_WIDTH = 160


def make_console() -> Console:
    """Return the console every terminal renderer prints to: stdout, wide when not a TTY."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, LOG_WIDTH)
    return console


class TerminalRenderer:
    """Prints runs to a rich console (stdout unless given)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or make_console()

    def run(self, run: Run, phases: list[PhasePeak]) -> None:
        style = STATUS_STYLE.get(run.status, "white")
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("target", f"{run.target}  {params_text(run.params)}")
        table.add_row("status", f"[{style}]{run.status}[/]" + _error_text(run))
        source = "" if run.peak_rss_source == "kernel" else "  (sum of the process tree, sampled)"
        table.add_row("peak RSS", f"[bold]{format_size(run.peak_rss_bytes)}[/]{source}")
        if run.peak_heap_bytes is not None:
            table.add_row("peak heap", format_size(run.peak_heap_bytes))
        if run.limit_bytes:
            share = run.peak_rss_bytes / run.limit_bytes
            table.add_row("limit", f"{format_size(run.limit_bytes)} ({share:.0%} used)")
        table.add_row("wall", f"{run.wall_s:.2f} s   cpu {run.cpu_s:.2f} s")
        if run.records is not None:
            rate = f"{run.records_per_s:,.0f}/s" if run.records_per_s else "-"
            table.add_row("records", f"{run.records:,}  ({rate})")
        if run.gc is not None:
            g = run.gc
            table.add_row(
                "gc",
                f"{'/'.join(map(str, g.collections))} collections (gen 0/1/2), "
                f"{g.pause_s * 1000:.0f} ms paused",
            )
        self.console.print(table)
        if phases:
            self.console.print(_phase_table(phases))
        if run.error and run.error.traceback and run.status == "error":
            last = run.error.traceback.strip().splitlines()[-3:]
            self.console.print("[dim]" + "\n".join(last) + "[/]", markup=True)

    def sweep(self, sweep: Sweep, full: bool = True) -> None:
        """Print the report; `full=False` prints only the decision matrix and the caveats."""
        if full:
            for label, text in summary(sweep):
                self.console.print(f"[dim]{label:>16}[/]  {text}")
        for note in notes(sweep):
            self.console.print(f"[yellow]note:[/] {note}")
        for view in sweep_tables(sweep):
            if full or view.key == "matrix":
                self.console.print(sweep_table(view))


def _error_text(run: Run) -> str:
    if run.error is None:
        return ""
    return f"  {run.error.type}: {run.error.message}"


def _phase_table(phases: list[PhasePeak]) -> Table:
    table = Table(title="by phase (sampled)", title_justify="left", box=None, pad_edge=False)
    table.add_column("phase")
    table.add_column("from", justify="right")
    table.add_column("to", justify="right")
    table.add_column("peak RSS", justify="right")
    show_heap = any(p.peak_heap_bytes is not None for p in phases)
    if show_heap:
        table.add_column("peak heap", justify="right")
    for p in phases:
        row = [p.phase, f"{p.start_s:.1f}s", f"{p.end_s:.1f}s", format_size(p.peak_rss_bytes)]
        if show_heap:
            row.append(format_size(p.peak_heap_bytes))
        table.add_row(*row)
    return table


def sweep_table(view: TableView) -> Table:
    """Return one of the sweep's tables for the terminal, failures in red, choices in green."""
    table = Table(title=view.title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD)
    for column in view.columns:
        table.add_column(column, overflow="fold")
    tones = view.tones or [""] * len(view.rows)
    for row, tone in zip(view.rows, tones, strict=True):
        table.add_row(*row, style={"good": "green", "bad": "red"}.get(tone, ""))
    return table
