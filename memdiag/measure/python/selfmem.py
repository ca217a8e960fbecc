"""Measuring the current process from inside: RSS high-water mark, heap peak, peak sites.

Used where the code under test runs in this process (the pytest plugin). Linux lets a
process reset its own RSS high-water mark (`/proc/self/clear_refs`, value 5), so a test's
peak RSS can be read after it as VmHWM; elsewhere the RSS figures are None.
"""

from __future__ import annotations

import gc
import os
import re
import tempfile
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memdiag.model import SiteStat, Snapshot

PAGE = os.sysconf("SC_PAGE_SIZE")
TOP_SITES = 5
# Frames of the measuring machinery itself, never the answer to "what allocated this".
_INTERNAL = re.compile(r"[/\\](_pytest|pluggy|memdiag[/\\](measure|pytest_plugin)|tracemalloc)")


def reset_rss_peak() -> int | None:
    """Reset this process's RSS high-water mark; return the current RSS in bytes, or None."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * PAGE
    except OSError:
        return None


def rss_peak() -> int | None:
    """Return the RSS high-water mark (VmHWM) in bytes since the last reset, or None."""
    try:
        with open("/proc/self/status") as handle:
            match = re.search(r"^VmHWM:\s+(\d+) kB", handle.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


@dataclass
class HeapPeak:
    """The heap's peak above its level at the start, in bytes (None when not measured)."""

    peak_bytes: int | None = None


@contextmanager
def heap_peak(enabled: bool = True) -> Iterator[HeapPeak]:
    """Measure the tracemalloc peak of the block above its starting level."""
    result = HeapPeak()
    if not enabled:
        yield result
        return
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    try:
        yield result
    finally:
        result.peak_bytes = max(0, tracemalloc.get_traced_memory()[1] - start)
        if started_here:
            tracemalloc.stop()


@dataclass(frozen=True)
class Site:
    """An allocation site: `file:line (function)`, bytes and blocks it held."""

    location: str
    size_bytes: int
    count: int


class PeakSites:
    """Records a call with memray and keeps the top sites at its heap high-water mark.

    `start()` and `stop()` are called in the frame that makes the call: memray follows the
    Python stack from the tracker's start, and frames that return through a generator-based
    context manager after it started leave it with empty stacks. Best effort: with memray
    missing or another tracker active, there are no sites.
    """

    def __init__(self) -> None:
        self.sites: list[Site] = []
        self._tracker: Any = None
        self._tmp = tempfile.TemporaryDirectory(prefix="memdiag-sites-")
        self._path = Path(self._tmp.name) / "peak.memray"

    def start(self) -> None:
        try:
            import memray

            tracker = memray.Tracker(
                str(self._path), file_format=memray.FileFormat.AGGREGATED_ALLOCATIONS
            )
            tracker.__enter__()
        except (ImportError, RuntimeError):
            return
        self._tracker = tracker

    def stop(self) -> None:
        try:
            if self._tracker is not None:
                self._tracker.__exit__(None, None, None)
                self.sites = _read_sites(self._path)
        finally:
            self._tracker = None
            self._tmp.cleanup()


def _read_sites(path: Path) -> list[Site]:
    """Return the top sites at the high-water mark, merged by line, the machinery left out."""
    from memray import FileReader

    reader = FileReader(str(path))
    merged: dict[str, list[int]] = {}
    try:
        for record in reader.get_high_watermark_allocation_records(merge_threads=True):
            location = _location(record.stack_trace())
            if location is not None:
                entry = merged.setdefault(location, [0, 0])
                entry[0] += record.size
                entry[1] += record.n_allocations
    finally:
        reader.close()
    total = sum(size for size, _ in merged.values())
    sites = [Site(loc, size, count) for loc, (size, count) in merged.items()]
    # Sites under 1% of the peak are noise in a failure message.
    sites = [s for s in sites if s.size_bytes >= total / 100]
    sites.sort(key=lambda s: s.size_bytes, reverse=True)
    return sites[:TOP_SITES]


def _location(stack: list[tuple[str, str, int]]) -> str | None:
    """Return `file:line (function)` of the innermost frame outside the machinery."""
    for function, filename, line in stack:
        if not _INTERNAL.search(filename):
            return f"{_short(filename)}:{line} ({function})"
    return None


def _short(filename: str) -> str:
    try:
        return os.path.relpath(filename) if filename.startswith(os.getcwd()) else filename
    except ValueError:
        return filename


class IterationTracker:
    """Snapshots the live heap by allocation line after each run of a block.

    `snapshots` holds one `Snapshot` per `record()`, its sites keyed `file:line`, for the
    leak rule (`memdiag.analysis.leaks.site_leaks`).
    """

    def __init__(self, frames: int = 1) -> None:
        self.frames = frames
        self.snapshots: list[Snapshot] = []
        self._started_here = False

    def __enter__(self) -> IterationTracker:
        self._started_here = not tracemalloc.is_tracing()
        if self._started_here:
            tracemalloc.start(self.frames)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started_here:
            tracemalloc.stop()

    def record(self) -> None:
        """Collect garbage, then record every line's live bytes and blocks."""
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        sites = []
        for stat in snapshot.statistics("lineno"):
            frame = stat.traceback[0]
            if not _INTERNAL.search(frame.filename):
                sites.append(SiteStat([[frame.filename, frame.lineno]], stat.size, stat.count))
        del snapshot
        index = len(self.snapshots)
        self.snapshots.append(Snapshot(f"run {index}", float(index), sites=sites))
