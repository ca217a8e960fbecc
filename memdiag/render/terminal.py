"""Terminal rendering (rich): a run's compact summary, a sweep's tables, snapshots and diffs,
and a leak report."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from memdiag.analysis.phases import PhasePeak
from memdiag.model import LeakReport, Run, SiteDiff, Snapshot, SnapshotDiff, Sweep
from memdiag.model.snapshot import PeakSite
from memdiag.model.v8 import V8Stats
from memdiag.render.snapshot_view import MACHINERY, peak_label, signed_size, site_text
from memdiag.render.sweep_view import notes, summary, sweep_tables
from memdiag.render.tables import TableView, params_text
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
        if run.pss_unreadable:
            source += "  (smaps_rollup unreadable: the tree as its RSS sum, shared pages in each)"
        table.add_row("peak RSS", f"[bold]{format_size(run.peak_rss_bytes)}[/]{source}")
        if run.v8 is not None:
            for label, text in v8_lines(run.v8):
                table.add_row(label, text)
        elif run.peak_heap_bytes is not None:
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


def v8_lines(v8: V8Stats) -> list[tuple[str, str]]:
    """Return a Node run's V8 figures as (label, text) lines: heap against its limit,
    external memory, GCs by kind, the heap at a fatal error, and the processes."""
    share = v8.peak_heap_used_bytes / v8.heap_limit_bytes if v8.heap_limit_bytes else 0.0
    gc = ", ".join(
        f"{kind} {int(k['count'])} ({k['pause_s'] * 1000:.0f} ms)"
        for kind, k in sorted(v8.gc.by_kind.items())
    )
    share_text = f", {v8.gc_share:.0%} of the wall time" if v8.gc_share is not None else ""
    lines = [
        (
            "V8 heap",
            f"peak used {format_size(v8.peak_heap_used_bytes)} of its limit "
            f"{format_size(v8.heap_limit_bytes)} ({share:.0%})",
        ),
        (
            "external",
            f"{format_size(v8.peak_external_bytes)} at peak "
            f"(array buffers {format_size(v8.peak_array_buffers_bytes)})",
        ),
        ("V8 gc", f"{v8.gc.count} collections, {v8.gc.pause_s * 1000:.0f} ms paused{share_text}"),
    ]
    if gc:
        lines.append(("", gc))
    if v8.at_death is not None:
        d = v8.at_death
        lines.append(
            ("at death", f"heap used {format_size(d.heap_used_bytes)} of "
             f"{format_size(d.heap_limit_bytes)}, external {format_size(d.external_bytes)}")
        )  # fmt: skip
    if len(v8.processes) > 1:
        kinds = ", ".join(
            f"{p.kind} {p.pid}{f'/{p.thread}' if p.thread else ''} "
            f"{format_size(p.peak_heap_used_bytes)}"
            for p in v8.processes
        )
        lines.append(("processes", kinds))
    return lines


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


class LeakTerminalRenderer:
    """Prints a leak report to a rich console."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or make_console()

    def report(self, report: LeakReport, searched: str | None = None) -> None:
        """Print the report: summary, verdict, leaking sites and types, chains, native."""
        from memdiag.render.leaks_view import (
            OWNER_COLUMNS,
            SITE_COLUMNS,
            TYPE_COLUMNS,
            leak_view,
        )

        view = leak_view(report, searched=searched)
        for label, text in view.summary:
            self.console.print(f"[dim]{label:>12}[/]  {text}")
        style = "red" if report.found or report.error else "green"
        self.console.print(f"[bold {style}]{view.headline}[/]")
        if view.owners_headline and view.owner_rows and view.owner_details:
            self.console.print(view.owners_headline, markup=False)
            table = Table(title="owners of the growth", title_justify="left", pad_edge=False)
            for column in OWNER_COLUMNS:
                table.add_column(
                    column, justify="right" if column in ("per iteration", "share") else "left"
                )
            for row, held in zip(view.owner_rows, view.owner_details, strict=True):
                table.add_row(
                    escape(row[0]) + "".join(f"\n[dim]  {escape(h)}[/]" for h in held),
                    *[escape(c) for c in row[1:]],
                )
            self.console.print(table)
        if view.site_rows:
            table = Table(title="leaking allocation sites", title_justify="left", pad_edge=False)
            for column in SITE_COLUMNS:
                table.add_column(column, justify="left" if column in ("site", "type") else "right")
            for row, calls in zip(view.site_rows, view.site_details, strict=True):
                table.add_row(row[0] + "".join(f"\n[dim]  ← {c}[/]" for c in calls[1:]), *row[1:])
            self.console.print(table)
        if view.type_rows:
            table = Table(title="leaking types", title_justify="left", pad_edge=False)
            for column in TYPE_COLUMNS:
                table.add_column(
                    column, justify="left" if column in ("type", "allocated at") else "right"
                )
            for row in view.type_rows:
                table.add_row(*row)
            self.console.print(table)
        for chain in view.chains:
            self.console.print("\n".join(chain), markup=False)
        for line in view.native:
            self.console.print(f"[yellow]{line}[/]")

    def timings(self, report: LeakReport) -> None:
        """Print where the run's time went (`--verbose`)."""
        from memdiag.render.leaks_view import TIMING_COLUMNS, timing_rows

        rows = timing_rows(report.timings)
        if not rows:
            return
        table = Table(title="where the time went", title_justify="left", pad_edge=False)
        for column in TIMING_COLUMNS:
            table.add_column(column, justify="left" if column == "stage" else "right")
        for row in rows:
            table.add_row(*row)
        self.console.print(table)


class SnapshotRenderer:
    """Prints a diff and a process view to a rich console (stdout unless given)."""

    def __init__(self, console: Console | None = None, frames: int = 3) -> None:
        self.console = console or make_console()
        self.frames = frames

    def diff(self, diff: SnapshotDiff) -> None:
        parts = [f"RSS {signed_size(diff.rss_diff_bytes)}"]
        if diff.uss_diff_bytes is not None:
            parts.append(f"USS {signed_size(diff.uss_diff_bytes)}")
        if diff.heap_diff_bytes is not None:
            parts.append(f"Python heap {signed_size(diff.heap_diff_bytes)}")
        self.console.print(
            f"[bold]{diff.before} → {diff.after}[/] ({diff.elapsed_s:.2f} s): " + ", ".join(parts)
        )
        if diff.sites:
            self.console.print(self._sites(diff.sites))
        if diff.types:
            table = Table(title="types that grew", title_justify="left", pad_edge=False)
            for column in ("type", "size", "growth", "objects", "new objects"):
                table.add_column(column, justify="left" if column == "type" else "right")
            for t in diff.types:
                table.add_row(
                    t.name,
                    format_size(t.size_bytes),
                    signed_size(t.size_diff_bytes),
                    f"{t.count:,}",
                    f"{t.count_diff:+,}",
                )
            self.console.print(table)
        if diff.retainers:
            self.console.print(self._retainers(diff.retainers))
        if not diff.sites and not diff.types:
            self.console.print("nothing grew above the threshold")

    def _retainers(self, retainers: list[dict[str, Any]]) -> Table:
        """Return the V8 retainers whose retained size grew, with their paths as code."""
        table = Table(title="retainers that grew", title_justify="left", pad_edge=False)
        for column in ("path", "constructor", "retained", "growth"):
            table.add_column(
                column, justify="left" if column in ("path", "constructor") else "right"
            )
        for r in retainers:
            closures = f" ({', '.join(r['closures'])})" if r.get("closures") else ""
            table.add_row(
                r["expression"] + closures,
                r["name"],
                format_size(r["retained_bytes"]),
                signed_size(r["retained_diff_bytes"]),
            )
        return table

    def _sites(self, sites: list[SiteDiff]) -> Table:
        table = Table(title="allocation sites that grew", title_justify="left", pad_edge=False)
        for column in ("site", "size", "growth", "blocks", "new blocks"):
            table.add_column(column, justify="left" if column == "site" else "right")
        for s in sites:
            callers = [site_text([f]) for f in reversed(s.traceback[-self.frames : -1])]
            calls = " ← ".join(c for c in callers if not c.startswith(MACHINERY))
            label = site_text(s.traceback) + (f"\n[dim]  ← {calls}[/]" if calls else "")
            table.add_row(
                label,
                format_size(s.size_bytes),
                signed_size(s.size_diff_bytes),
                f"{s.count:,}",
                f"{s.count_diff:+,}",
            )
        return table

    def peak(self, peak_bytes: int | None, sites: list[PeakSite], top: int = 15) -> None:
        """Print what was live at the heap's high-water mark, by the job's line."""
        if peak_bytes is None:
            return
        shown = sites[:top]
        self.console.print(
            f"[bold]at the peak[/]: heap {format_size(peak_bytes)} (memray's high-water mark)"
        )
        if not shown:
            return
        table = Table(title="live at the peak", title_justify="left", pad_edge=False)
        for column in ("site", "size", "share", "blocks"):
            table.add_column(column, justify="left" if column == "site" else "right")
        for p in shown:
            table.add_row(
                peak_label(p, self.frames),
                format_size(p.size_bytes),
                f"{p.size_bytes / peak_bytes:.0%}" if peak_bytes else "-",
                f"{p.count:,}",
            )
        self.console.print(table)

    def snapshot(self, snap: Snapshot, top: int = 15) -> None:
        """Print one saved snapshot: its process view (of a pid), then what was seen inside
        the process (its largest sites, types and owners) when memdiag looked inside."""
        if snap.processes:
            self.process(snap)
            if not (snap.types or snap.sites or snap.owners):
                return
        if snap.heap_basis == "v8":
            self.heap(snap, top)
            return
        parts = [f"RSS {format_size(snap.rss_bytes)}"]
        if snap.heap_bytes is not None:
            parts.append(f"Python heap {format_size(snap.heap_bytes)}")
        self.console.print(f"[bold]{snap.label}[/] {snap.target}: " + ", ".join(parts))
        sites = sorted(snap.sites, key=lambda s: s.size_bytes, reverse=True)[:top]
        rows = [[site_text(s.traceback), format_size(s.size_bytes), f"{s.count:,}"] for s in sites]
        self._largest("largest allocation sites", ("site", "size", "blocks"), rows)
        types = sorted(snap.types, key=lambda t: t.size_bytes, reverse=True)[:top]
        rows = [[t.name, format_size(t.size_bytes), f"{t.count:,}"] for t in types]
        self._largest("largest types", ("type", "size", "objects"), rows)
        if snap.at_peak:
            self.peak(snap.peak_heap_bytes, snap.at_peak, top)
        rows = [
            [
                o["expression"],
                o["type"],
                format_size(o["retained_bytes"]),
                f"{o['retained_objects']:,}",
            ]
            for o in snap.owners[:top]
        ]
        self._largest(
            "largest owners (module globals)", ("owner", "type", "retains", "objects"), rows
        )
        if snap.attached:
            a = snap.attached
            pause = f", stopped at most {a['pause_s']:.2f} s" if a.get("pause_s") else ""
            self.console.print(
                f"taken inside pid {snap.pid} (Python {a.get('python')}) via {a.get('via')}{pause}"
            )

    def heap(self, snap: Snapshot, top: int = 15) -> None:
        """Print a V8 heap snapshot's summary: constructors by retained size, the largest
        retainers with their paths as JavaScript and the closures on them."""
        where = f" {snap.target}" if snap.target else ""
        rss = f"RSS {format_size(snap.rss_bytes)}, " if snap.rss_bytes else ""
        self.console.print(
            f"[bold]{snap.label}[/]{where}: {rss}V8 heap {format_size(snap.heap_bytes)} "
            f"in {snap.heap_nodes or 0:,} nodes"
        )
        constructors = sorted(snap.constructors, key=lambda c: -c["retained_bytes"])[:top]
        rows = [
            [
                c["name"],
                format_size(c["retained_bytes"]),
                format_size(c["self_bytes"]),
                f"{c['count']:,}",
            ]
            for c in constructors
        ]
        self._largest(
            "constructors by retained size", ("constructor", "retained", "self", "objects"), rows
        )
        rows = [
            [
                r["expression"] + (f" ({', '.join(r['closures'])})" if r.get("closures") else ""),
                r["name"],
                format_size(r["retained_bytes"]),
            ]
            for r in snap.retainers[:top]
        ]
        self._largest("largest retainers", ("path", "constructor", "retained"), rows)

    def _largest(self, title: str, columns: tuple[str, ...], rows: list[list[str]]) -> None:
        """Print a table whose first column names and the others count (none without rows)."""
        if not rows:
            return
        table = Table(title=title, title_justify="left", pad_edge=False)
        for index, column in enumerate(columns):
            table.add_column(column, justify="left" if index == 0 else "right")
        for row in rows:
            table.add_row(*row)
        self.console.print(table)

    def process(self, snap: Snapshot) -> None:
        """Print a process-level view: totals, regions, and one row per process."""
        self.console.print(
            f"[bold]pid {snap.pid}[/] and {max(len(snap.processes) - 1, 0)} descendants: "
            f"RSS {format_size(snap.rss_bytes)}, USS {format_size(snap.uss_bytes)}, "
            f"PSS {format_size(snap.pss_bytes)}, swap {format_size(snap.swap_bytes)}"
        )
        regions = ", ".join(f"{name} {format_size(size)}" for name, size in snap.regions.items())
        self.console.print(f"resident by region: {regions}")
        table = Table(pad_edge=False)
        for column in ("pid", "RSS", "USS", "PSS", "swap", "heap", "anonymous", "file", "command"):
            table.add_column(column, justify="left" if column in ("pid", "command") else "right")
        for p in snap.processes:
            r = p["regions"]
            table.add_row(
                str(p["pid"]),
                *(format_size(p[k]) for k in ("rss_bytes", "uss_bytes", "pss_bytes", "swap_bytes")),
                *(format_size(r.get(k, 0)) for k in ("heap", "anonymous", "file")),
                p["command"][:60],
            )
        self.console.print(table)
