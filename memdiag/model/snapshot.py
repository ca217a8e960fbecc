"""Snapshots: what a process held at one moment, and what grew between two moments."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from memdiag.model.files import SCHEMA_VERSION, load_model
from memdiag.model.schema import Frames, build


@dataclass(frozen=True)
class SiteStat:
    """The memory allocated at one line and still alive (as tracemalloc's `Statistic`).

    `traceback` is [[filename, lineno], ...] from the oldest frame to the allocating line;
    `count` is the number of live memory blocks allocated there; `small_bytes` and
    `small_count` the part of them in blocks of at most 512 bytes (pymalloc's, which a call
    traced in slices samples; larger blocks are traced whole), None when not told apart.
    """

    traceback: Frames
    size_bytes: int
    count: int
    small_bytes: int | None = None
    small_count: int | None = None

    @property
    def key(self) -> str:
        """Return `file:line` of the allocating line (the last frame)."""
        filename, lineno = self.traceback[-1]
        return f"{filename}:{lineno}"


@dataclass(frozen=True)
class TypeStat:
    """Live objects of one type: how many and their shallow size (`sys.getsizeof`)."""

    name: str
    count: int
    size_bytes: int


@dataclass(frozen=True)
class PeakSite:
    """Memory live at the process's high-water mark, by the job's line (memray's records).

    `site` is `file:line` of the innermost frame in the job's own code; `traceback` is
    [[filename, lineno], ...] from the oldest frame to the allocating one; `count` is the
    number of live allocations.
    """

    site: str
    traceback: Frames
    size_bytes: int
    count: int


@dataclass
class Snapshot:
    """What one process held at one moment: process memory, Python heap, sites, types.

    `heap_bytes` is tracemalloc's traced total (`heap_basis` "traced"), or in `memdiag
    leaks` the live objects' sizes (`heap_basis` "objects": most calls run untraced);
    `tracemalloc_bytes` is tracemalloc's own overhead. Both are None in a process-level view
    (`--pid`), which fills `processes` and `regions`. `frames` is 0 when the snapshot was
    taken without tracemalloc, and then `sites` is empty.
    """

    label: str
    time_s: float
    target: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    phase: str | None = None
    pid: int | None = None
    rss_bytes: int = 0
    uss_bytes: int | None = None
    pss_bytes: int | None = None
    swap_bytes: int | None = None
    heap_bytes: int | None = None
    tracemalloc_bytes: int | None = None
    frames: int = 0
    heap_basis: str = "traced"
    # After `memdiag leaks`'s traced call: the share of its time traced when tracing went to
    # slices (its sites are then a sample); None when traced whole.
    traced_share: float | None = None
    # After it: why it ran traced whole past that time (allocators that cannot be switched).
    traced_whole: str | None = None
    gc_counts: list[int] = field(default_factory=list)
    gc_collections: list[int] = field(default_factory=list)
    regions: dict[str, int] = field(default_factory=dict)
    processes: list[dict[str, Any]] = field(default_factory=list)
    sites: list[SiteStat] = field(default_factory=list)
    types: list[TypeStat] = field(default_factory=list)
    # On the last snapshot of `memdiag snapshot`: the heap's high-water mark during the call
    # (memray) and what was live there, largest first.
    peak_heap_bytes: int | None = None
    at_peak: list[PeakSite] = field(default_factory=list)
    # A V8 heap snapshot (`heap_basis` "v8", `types` by constructor with self sizes): the
    # constructors with retained sizes, the largest retainers with their paths as code, the
    # node count and the .heapsnapshot it was read from (docs/json.md).
    constructors: list[dict[str, Any]] = field(default_factory=list)
    retainers: list[dict[str, Any]] = field(default_factory=list)
    heap_nodes: int | None = None
    heapsnapshot: str | None = None
    # Of a running process (`--pid`, inside it): the module globals retaining the most,
    # largest first, each {expression, root, type, retained_bytes, retained_objects,
    # largest_types}; and how memdiag got in ({via, pause_s, python, trace_s}).
    owners: list[dict[str, Any]] = field(default_factory=list)
    attached: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form, with `schema_version` and `kind: "snapshot"` first."""
        return {"schema_version": SCHEMA_VERSION, "kind": "snapshot", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        """Build a Snapshot from its JSON form, every field checked."""
        return build(cls, data)


@dataclass(frozen=True)
class SiteDiff:
    """One allocation site between two snapshots (as tracemalloc's `StatisticDiff`)."""

    traceback: Frames
    size_bytes: int
    size_diff_bytes: int
    count: int
    count_diff: int

    @property
    def key(self) -> str:
        filename, lineno = self.traceback[-1]
        return f"{filename}:{lineno}"


@dataclass(frozen=True)
class TypeDiff:
    """One object type between two snapshots: counts and shallow sizes, and their change."""

    name: str
    count: int
    count_diff: int
    size_bytes: int
    size_diff_bytes: int


@dataclass
class SnapshotDiff:
    """What grew from snapshot `before` to `after`: sites and types, largest growth first."""

    before: str
    after: str
    elapsed_s: float
    rss_diff_bytes: int
    uss_diff_bytes: int | None
    heap_diff_bytes: int | None
    sites: list[SiteDiff] = field(default_factory=list)
    types: list[TypeDiff] = field(default_factory=list)
    # V8 snapshots: constructors by retained growth and retainers matched by V8 node id.
    constructors: list[dict[str, Any]] = field(default_factory=list)
    retainers: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (`kind: "snapshot-diff"`)."""
        return {"schema_version": SCHEMA_VERSION, "kind": "snapshot-diff", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SnapshotDiff:
        """Build a SnapshotDiff from its JSON form, every field checked."""
        return build(cls, data)


def load_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """Return the Snapshot saved at `path` (by `memdiag snapshot`)."""
    return load_model(path, "snapshot", Snapshot.from_dict)
