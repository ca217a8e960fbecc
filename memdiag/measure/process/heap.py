"""Reads the heap figures of a memray capture made in the measured child (`--heap`, `--memray`,
`memdiag snapshot`).

memray, not tracemalloc, backs `--heap`: on an allocation-heavy job tracemalloc costs 14x
the job's time even with one frame, memray's aggregated capture about 1.4x. The figure is
every byte the child allocated through the allocator (Python objects and native buffers),
at its high-water mark. memray also keeps what was live at that mark, by stack: the sites
that held memory at the peak, even when they freed it before the job returned.
"""

from __future__ import annotations

import functools
import os
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The sites kept at the peak; the rest is summed into the total.
PEAK_SITES = 15
# The sites kept of what was live at the end.
LIVE_SITES = 500

# A stack's site and traceback (None: memdiag's own work), by stack: the peak's records and
# the end's share most of their stacks.
_SiteCache = dict[tuple[Any, ...], tuple[str, list[list[Any]]] | None]


@dataclass
class HeapCapture:
    """The heap's peak in bytes, its timeline as (epoch seconds, heap bytes), and the
    sites live at the peak ([{site, traceback, size_bytes, count}], largest first)."""

    peak_bytes: int | None
    timeline: list[tuple[float, int]] = field(default_factory=list)
    at_peak: list[dict[str, Any]] = field(default_factory=list)
    # With `read_capture(at_end=True)`: what was still live when the capture ended.
    at_end: list[dict[str, Any]] = field(default_factory=list)
    at_end_bytes: int = 0


def read_capture(path: str | Path, at_end: bool = False) -> HeapCapture:
    """Return the peak, heap timeline and sites at the peak of a memray capture; with
    `at_end`, also the sites still live when it ended (memray's "leaked" records: `at_end`,
    the LIVE_SITES largest, and their total `at_end_bytes`), from the same read, the sites of
    the stacks both share worked out once. Empty if it was never written."""
    if not _written(path):
        return HeapCapture(None)
    from memray import FileReader

    reader = FileReader(str(path))
    sites: _SiteCache = {}
    try:
        peak = int(reader.metadata.peak_memory)
        timeline = [(snap.time / 1000, int(snap.heap)) for snap in reader.get_memory_snapshots()]
        records = reader.get_high_watermark_allocation_records(merge_threads=True)
        capture = HeapCapture(peak, timeline, _sites(records, sites=sites))
        if at_end:
            leaked = reader.get_leaked_allocation_records(merge_threads=True)
            rows = _sites(leaked, None, sites)
            capture.at_end = rows[:LIVE_SITES]
            capture.at_end_bytes = sum(r["size_bytes"] for r in rows)
    finally:
        reader.close()
    return capture


def _written(path: str | Path) -> bool:
    return Path(path).is_file() and Path(path).stat().st_size > 0


def _site_of(stack: list[Any]) -> tuple[str, list[list[Any]]] | None:
    """Return the job's line for `stack` (innermost first) and its traceback, oldest first;
    None for memdiag's own work in the child (its snapshots)."""
    inner, caller = _inside_machinery(stack)
    if caller is not None and caller not in _CALLS_TARGET:
        return None
    frames = [[filename, line] for _, filename, line in reversed(stack)]
    job = next((f for _, f, n in inner if _is_job(f)), None)
    line = next((n for _, f, n in inner if f == job), stack[0][2])
    return f"{job or stack[0][1]}:{line}", frames


def _sites(
    records: Any, top: int | None = PEAK_SITES, sites: _SiteCache | None = None
) -> list[dict[str, Any]]:
    """Group memray's records by the job's own line: the innermost frame outside the
    standard library, installed packages and memdiag (a line in SQLAlchemy says less than
    the job's call into it); the allocating frames stay in the traceback."""
    sites = {} if sites is None else sites
    merged: dict[str, dict[str, Any]] = {}
    for record in records:
        stack = record.stack_trace()  # innermost first: (function, file, line)
        if not stack:
            continue
        key = tuple(stack)
        if key not in sites:
            sites[key] = _site_of(stack)
        found = sites[key]
        if found is None:
            continue  # memdiag's own work in the child (its snapshots), not the job's memory
        site, frames = found
        entry = merged.get(site)
        if entry is None:
            merged[site] = {"site": site, "traceback": frames, "size_bytes": 0, "count": 0}
            entry = merged[site]
        elif record.size > entry.get("_largest", 0):
            entry["traceback"] = frames  # the call path holding the most of it
        entry["_largest"] = max(entry.get("_largest", 0), record.size)
        entry["size_bytes"] += int(record.size)
        entry["count"] += int(record.n_allocations)
    rows = sorted(merged.values(), key=lambda e: -e["size_bytes"])[:top]
    for row in rows:
        row.pop("_largest", None)
    return rows


_LIBRARY_DIRS = tuple(
    os.path.realpath(p) + os.sep
    for p in {sysconfig.get_path(n) for n in ("stdlib", "platstdlib", "purelib", "platlib")}
    if p
)
_MEMDIAG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_MACHINERY = os.path.dirname(os.path.abspath(__file__)) + os.sep


# The functions of memdiag's children that call the target: what is allocated under them
# is the job's; under any other of memdiag's frames, it is memdiag's.
_CALLS_TARGET = {"call_once", "run_snapshot", "run_leaks", "run_every"}


def _inside_machinery(stack: Any) -> tuple[list[Any], str | None]:
    """Return the frames inside the innermost frame of memdiag's child code, and that
    frame's function (None when there is none, as on the job's own threads)."""
    inner: list[Any] = []
    for frame in stack:
        if frame[1].startswith(_MACHINERY):
            return inner, frame[0]
        inner.append(frame)
    return inner, None


@functools.lru_cache(maxsize=4096)
def _is_job(filename: str) -> bool:
    if not filename or filename.startswith("<") or filename.startswith(_MEMDIAG_DIR):
        return False
    real = os.path.realpath(filename)
    return not real.startswith(_LIBRARY_DIRS) and "site-packages" not in real


__all__ = ["LIVE_SITES", "PEAK_SITES", "HeapCapture", "read_capture"]
