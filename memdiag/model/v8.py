"""What V8 reported about a Node job (`V8Stats`), per process (`V8Process`), and its GCs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ProcessKind = Literal["main", "worker", "child"]
# How a Node process ended: "exited" (its exit handler ran), "heap-limit" (V8 reached its heap
# limit: a fatal error), "fatal" (another fatal error), "died" (no exit handler: a signal, a
# crash, or the tree stopped by memdiag).
ProcessEnd = Literal["exited", "heap-limit", "fatal", "died"]


@dataclass(frozen=True)
class V8Gc:
    """Garbage collections: how many, their summed pause (s), and both per GC kind
    (`Scavenge`, `MarkSweepCompact`, `IncrementalMarking`, `ProcessWeakCallbacks`)."""

    count: int = 0
    pause_s: float = 0.0
    by_kind: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> V8Gc:
        return cls(
            int(data.get("count", 0)), float(data.get("pause_s", 0.0)), data.get("by_kind", {})
        )


@dataclass(frozen=True)
class V8Death:
    """V8's heap at a fatal error (from Node's fatal-error report), in bytes."""

    reason: str
    heap_used_bytes: int | None = None
    heap_total_bytes: int | None = None
    heap_limit_bytes: int | None = None
    external_bytes: int | None = None
    rss_bytes: int | None = None


@dataclass(frozen=True)
class V8Process:
    """One Node process or worker thread of the job and its V8 figures (bytes, seconds)."""

    pid: int
    kind: ProcessKind
    thread: int = 0
    ppid: int | None = None
    argv: list[str] = field(default_factory=list)
    node: str = ""
    heap_limit_bytes: int = 0
    peak_heap_used_bytes: int = 0
    peak_heap_total_bytes: int = 0
    peak_external_bytes: int = 0
    peak_array_buffers_bytes: int = 0
    gc: V8Gc = field(default_factory=V8Gc)
    end: ProcessEnd = "died"
    at_death: V8Death | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> V8Process:
        values = dict(data)
        values["gc"] = V8Gc.from_dict(values.get("gc") or {})
        if values.get("at_death") is not None:
            values["at_death"] = V8Death(**values["at_death"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass(frozen=True)
class V8Stats:
    """A Node job's V8 figures: those of the process whose heap peaked highest (each process
    has a heap limit of its own), the largest external memory of any one process, the GCs of
    all of them, and each process in `processes`. `gc_share` is GC pause over the run's wall
    time (the largest of any one process's), `at_death` the heap at a fatal error."""

    peak_heap_used_bytes: int
    heap_limit_bytes: int
    peak_external_bytes: int
    peak_array_buffers_bytes: int
    gc: V8Gc
    gc_share: float | None = None
    at_death: V8Death | None = None
    processes: list[V8Process] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> V8Stats:
        values = dict(data)
        values["gc"] = V8Gc.from_dict(values.get("gc") or {})
        if values.get("at_death") is not None:
            values["at_death"] = V8Death(**values["at_death"])
        values["processes"] = [V8Process.from_dict(p) for p in values.get("processes", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})
