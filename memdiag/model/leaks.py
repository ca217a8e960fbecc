"""What `memdiag leaks` concluded: growing sites, types and native memory (kind "leak-report").

Sizes per iteration are bytes (least-squares slopes, see analysis/leaks.py for the rule).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

from memdiag.model.files import SCHEMA_VERSION, load_model
from memdiag.model.schema import Frames, Shape, build


@dataclass(frozen=True)
class Hop:
    """One step of a chain from a root to a leaking object: how it is reached, its type."""

    via: str
    type: str
    items: int | None = None


@dataclass(frozen=True)
class Chain:
    """What keeps a leaking object alive: a root, the chain as code, and its steps."""

    root: str
    expression: str
    hops: list[Hop]
    where: str | None = None
    found_by: str | None = None
    png: str | None = None


@dataclass(frozen=True)
class TypeCount:
    """A type in an owner's path or largest types: how many objects (and their bytes)."""

    type: str
    count: int
    size_bytes: int | None = None


# The chain as saved (a dict, as the renderers read it), checked against Chain on load.
ChainDict = Annotated[dict[str, Any] | None, Shape(Chain)]
TypeCountDict = Annotated[dict[str, Any], Shape(TypeCount)]


@dataclass
class SiteLeak:
    """An allocation line whose live memory grows call after call."""

    site: str
    traceback: Frames
    bytes_per_iteration: float
    objects_per_iteration: float
    size_bytes: int
    count: int
    grew: int
    intervals: int
    type: str | None = None
    chain: ChainDict = None


@dataclass
class TypeLeak:
    """An object type whose live count grows call after call, and what keeps it alive."""

    name: str
    objects_per_iteration: float
    bytes_per_iteration: float
    count: int
    size_bytes: int
    grew: int
    intervals: int
    site: str | None = None
    chain: ChainDict = None


@dataclass
class Owner:
    """An object that was there before a call and holds what the call added: the growth of
    one call under it ("retained size"), and the leaking sites and types it holds.

    `expression` is the chain from a root to the owner, as code; `path` the types from the
    owner down to a leaking object, each with how many of them one call added under it;
    `largest_types` the types holding most of what it retains; `in_place` when the owner
    itself grew (a buffer), its growth then from its type's series. `table_site`: where the
    traced call grew the owner's own table (a list's items, a dict's keys), `stored_site`:
    where the first new object it holds directly was made; each a traceback, oldest frame
    first, or None: the lines a user changes (the `subscribe(...)` call).
    """

    expression: str
    root: str
    type: str
    retained_bytes_per_iteration: float
    retained_objects_per_iteration: int
    share: float
    groups: list[str] = field(default_factory=list)
    path: list[TypeCountDict] = field(default_factory=list)
    largest_types: list[TypeCountDict] = field(default_factory=list)
    in_place: bool = False
    truncated: bool = False
    table_site: list[list[Any]] | None = None
    stored_site: list[list[Any]] | None = None
    # How much the owner's own size (a set's or dict's table) grew per iteration, over the
    # snapshots: part of `retained_bytes_per_iteration`, 0 when it did not grow.
    table_bytes_per_iteration: float = 0.0
    # Node.js owners: the V8 node id, the path of one object added under the owner, and the
    # closures on both paths with their script lines (`onProgress job.js:11`).
    node_id: int | None = None
    sample: str | None = None
    closures: list[str] = field(default_factory=list)


@dataclass
class NativeGrowth:
    """RSS growing faster than the Python heap, per iteration, in bytes."""

    rss_per_iteration: float
    heap_per_iteration: float
    native_per_iteration: float
    grew: int
    intervals: int


@dataclass
class LeakReport:
    """What `find_leaks` concluded from a series of snapshots."""

    target: str
    params: dict[str, Any]
    snapshots: int
    warmup: int
    unit: str
    settings: dict[str, Any]
    rss_first_bytes: int
    rss_last_bytes: int
    heap_first_bytes: int | None
    heap_last_bytes: int | None
    sites: list[SiteLeak] = field(default_factory=list)
    types: list[TypeLeak] = field(default_factory=list)
    native: NativeGrowth | None = None
    # Who holds the growth, largest first, and one traced call's growth they share out.
    owners: list[Owner] = field(default_factory=list)
    growth_bytes_per_iteration: float | None = None
    # When the traced call was traced in slices: the share of its small allocations traced,
    # by which the sites' sizes and counts were scaled up. None when traced whole.
    traced_share: float | None = None
    # Why the traced call ran traced whole past the time it would have gone to slices
    # (allocators slicing cannot switch: PYTHONMALLOC=debug, -X dev, another tool's hooks).
    traced_whole: str | None = None
    # What memdiag changed in the job's environment, and why.
    notes: list[str] = field(default_factory=list)
    status: str = "ok"
    error: str | None = None
    # "v8" for a Node.js process: the heap is V8's (snapshots through its inspector), `pid`.
    heap_basis: str | None = None
    pid: int | None = None
    # The heap's own growth per iteration (least-squares slope), which the owners share out.
    heap_bytes_per_iteration: float | None = None
    # Seconds per stage of the run (docs/leaks.md, "Where the time goes"): the child's calls,
    # snapshot pauses and copies, the evidence; memdiag's own analysis and report.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        """True when anything leaks, in Python objects or natively."""
        return bool(self.sites or self.types or self.native)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (`kind: "leak-report"`), read by CI gates."""
        data = asdict(self)
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "leak-report",
            "found": self.found,
            **data,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LeakReport:
        """Build a LeakReport from its JSON form, every field checked (extra fields such as
        `partial` are left out)."""
        return build(cls, data)


def load_leak_report(path: str | os.PathLike[str]) -> LeakReport:
    """Return the LeakReport saved at `path` (by `memdiag leaks --json`)."""
    return load_model(path, "leak-report", LeakReport.from_dict)
