"""What grew between two V8 heap snapshots: constructors by retained size, retainers by V8 id.

V8's node ids are stable within one process, so an object in both snapshots is the same
object; a retainer found only in the later one counts from zero.
"""

from __future__ import annotations

from typing import Any

from memdiag.analysis.diff import compare_snapshots
from memdiag.model import Snapshot, SnapshotDiff


def compare_heap_snapshots(
    before: Snapshot, after: Snapshot, min_growth_bytes: int = 0, top: int | None = None
) -> SnapshotDiff:
    """Return `compare_snapshots` (types by self size) with the retained growth added."""
    diff = compare_snapshots(before, after, min_growth_bytes, top)
    diff.constructors = _grown(before.constructors, after.constructors, "name", min_growth_bytes)
    diff.retainers = _grown(before.retainers, after.retainers, "id", min_growth_bytes)
    if top:
        diff.constructors, diff.retainers = diff.constructors[:top], diff.retainers[:top]
    return diff


def _grown(
    old: list[dict[str, Any]], new: list[dict[str, Any]], key: str, min_growth: int
) -> list[dict[str, Any]]:
    """Return the entries of `new` whose retained bytes grew by at least `min_growth`."""
    before = {entry[key]: entry for entry in old}
    grown = []
    for entry in new:
        prev = before.get(entry[key])
        growth = entry["retained_bytes"] - (prev["retained_bytes"] if prev else 0)
        if growth > 0 and growth >= min_growth:
            count_diff = entry.get("count", 0) - (prev.get("count", 0) if prev else 0)
            grown.append({**entry, "retained_diff_bytes": growth, "count_diff": count_diff})
    return sorted(grown, key=lambda e: -e["retained_diff_bytes"])
