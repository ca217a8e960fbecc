"""Reads the heap figures of a memray capture made in the measured child (`--heap`, `--memray`).

memray, not tracemalloc, backs `--heap`: on an allocation-heavy job tracemalloc costs 14x
the job's time even with one frame, memray's aggregated capture about 1.4x. The figure is
every byte the child allocated through the allocator (Python objects and native buffers),
at its high-water mark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class HeapCapture:
    """The heap's peak in bytes and its timeline as (epoch seconds, heap bytes)."""

    peak_bytes: int | None
    timeline: list[tuple[float, int]] = field(default_factory=list)


def read_capture(path: str | Path) -> HeapCapture:
    """Return the peak and heap timeline of a memray capture; empty if it was never written."""
    if not Path(path).is_file() or Path(path).stat().st_size == 0:
        return HeapCapture(None)
    from memray import FileReader

    reader = FileReader(str(path))
    try:
        peak = int(reader.metadata.peak_memory)
        timeline = [(snap.time / 1000, int(snap.heap)) for snap in reader.get_memory_snapshots()]
    finally:
        reader.close()
    return HeapCapture(peak, timeline)
