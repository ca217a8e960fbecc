"""Terminal rendering of snapshots and diffs: what grew, where, what was live at the peak,
and the process-level view."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from memdiag.model import SiteDiff, Snapshot, SnapshotDiff
from memdiag.model.snapshot import PeakSite
from memdiag.render.terminal import make_console
from memdiag.units import format_size

# memdiag's own child calls the target: its frames explain nothing about the job.
MACHINERY = ("memdiag/measure/",)


def short_path(filename: str) -> str:
    """Return `filename` as a reader knows it: relative to the current directory, else from
    its top-level package (`memdiag_plugins/player_sync.py`), else as it is."""
    if filename.startswith(os.getcwd() + os.sep):
        return filename[len(os.getcwd()) + 1 :]
    path, top = Path(filename), None
    parent = path.parent
    while (parent / "__init__.py").is_file():
        top, parent = parent, parent.parent
    return str(path.relative_to(top.parent)) if top is not None else filename


def site_text(traceback: list[list[Any]]) -> str:
    """Return `file:line` of the allocating frame, shortened."""
    filename, lineno = traceback[-1]
    return f"{short_path(str(filename))}:{lineno}"


def _signed(size: int | float | None) -> str:
    if size is None:
        return "-"
    return ("+" if size > 0 else "") + format_size(size)


def _peak_label(p: PeakSite, frames: int) -> str:
    """Return the site and, dimmed, the frames that called it and the ones it called."""
    filename, _, line = p.site.rpartition(":")
    label = f"{short_path(filename)}:{line}"
    keys = [f"{f}:{n}" for f, n in p.traceback]
    at = max((i for i, k in enumerate(keys) if k == p.site), default=len(keys) - 1)
    inner = [site_text([f]) for f in p.traceback[at + 1 :][-1:]]
    callers = [site_text([f]) for f in reversed(p.traceback[max(at - frames + 1, 0) : at])]
    callers = [c for c in callers if not c.startswith(MACHINERY)]
    here = site_text([[filename, line]])
    callers = [c for i, c in enumerate(callers) if c != ([here, *callers][i])]
    if inner:
        label += f"\n[dim]  → allocates in {inner[0]}[/]"
    if callers:
        label += f"\n[dim]  ← {' ← '.join(callers)}[/]"
    return label


class SnapshotRenderer:
    """Prints a diff and a process view to a rich console (stdout unless given)."""

    def __init__(self, console: Console | None = None, frames: int = 3) -> None:
        self.console = console or make_console()
        self.frames = frames

    def diff(self, diff: SnapshotDiff) -> None:
        parts = [f"RSS {_signed(diff.rss_diff_bytes)}"]
        if diff.uss_diff_bytes is not None:
            parts.append(f"USS {_signed(diff.uss_diff_bytes)}")
        if diff.heap_diff_bytes is not None:
            parts.append(f"Python heap {_signed(diff.heap_diff_bytes)}")
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
                    _signed(t.size_diff_bytes),
                    f"{t.count:,}",
                    f"{t.count_diff:+,}",
                )
            self.console.print(table)
        if not diff.sites and not diff.types:
            self.console.print("nothing grew above the threshold")

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
                _signed(s.size_diff_bytes),
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
                _peak_label(p, self.frames),
                format_size(p.size_bytes),
                f"{p.size_bytes / peak_bytes:.0%}" if peak_bytes else "-",
                f"{p.count:,}",
            )
        self.console.print(table)

    def snapshot(self, snap: Snapshot, top: int = 15) -> None:
        """Print one saved snapshot: its process view, or its largest sites and types."""
        if snap.processes:
            self.process(snap)
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
