"""What `memdiag leaks` concluded: growing sites, types and native memory (kind "leak-report").

Sizes per iteration are bytes (least-squares slopes, see analysis/leaks.py for the rule).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from memdiag.model.files import SCHEMA_VERSION, load_model


@dataclass
class SiteLeak:
    """An allocation line whose live memory grows call after call."""

    site: str
    traceback: list[list[Any]]
    bytes_per_iteration: float
    objects_per_iteration: float
    size_bytes: int
    count: int
    grew: int
    intervals: int
    type: str | None = None
    chain: dict[str, Any] | None = None


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
    chain: dict[str, Any] | None = None


@dataclass
class Owner:
    """An object that was there before a call and holds what the call added: the growth of
    one call under it ("retained size"), and the leaking sites and types it holds.

    `expression` is the chain from a root to the owner, as code; `path` the types from the
    owner down to a leaking object, each with how many of them one call added under it;
    `largest_types` the types holding most of what it retains; `in_place` when the owner
    itself grew (a buffer), its growth then from its type's series.
    """

    expression: str
    root: str
    type: str
    retained_bytes_per_iteration: float
    retained_objects_per_iteration: int
    share: float
    groups: list[str] = field(default_factory=list)
    path: list[dict[str, Any]] = field(default_factory=list)
    largest_types: list[dict[str, Any]] = field(default_factory=list)
    in_place: bool = False
    truncated: bool = False


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
    status: str = "ok"
    error: str | None = None

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
        """Build a LeakReport from its JSON form (extra fields such as `partial` are left out)."""
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["sites"] = [SiteLeak(**s) for s in values.get("sites", [])]
        values["types"] = [TypeLeak(**t) for t in values.get("types", [])]
        values["owners"] = [Owner(**o) for o in values.get("owners", [])]
        native = values.get("native")
        values["native"] = NativeGrowth(**native) if native else None
        return cls(**values)


def load_leak_report(path: str | os.PathLike[str]) -> LeakReport:
    """Return the LeakReport saved at `path` (by `memdiag leaks --json`)."""
    return load_model(path, "leak-report", LeakReport.from_dict)
