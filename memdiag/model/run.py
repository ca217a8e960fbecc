"""What one measured run recorded (`Run`), with its timeline samples and GC statistics."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from memdiag.model.files import SCHEMA_VERSION, load_model
from memdiag.model.schema import build
from memdiag.model.v8 import V8Stats

Status = Literal["ok", "error", "oom", "timeout", "killed"]
STATUSES: tuple[Status, ...] = ("ok", "error", "oom", "timeout", "killed")


@dataclass(frozen=True)
class Sample:
    """One point of a timeline: seconds since start, tree RSS, Python heap, current phase."""

    # Saved as a row [t_s, rss_bytes, heap_bytes, phase], not an object.
    JSON_ROW: ClassVar[bool] = True
    t_s: float
    rss_bytes: int
    heap_bytes: int | None = None
    phase: str | None = None
    # Node jobs: V8's heap total and external memory (heap_bytes is then V8's heap used).
    heap_total_bytes: int | None = None
    external_bytes: int | None = None

    def row(self) -> list[Any]:
        """Return the JSON row: [t_s, rss, heap, phase], then V8's two figures when known."""
        row: list[Any] = [self.t_s, self.rss_bytes, self.heap_bytes, self.phase]
        if self.heap_total_bytes is not None or self.external_bytes is not None:
            row += [self.heap_total_bytes, self.external_bytes]
        return row


@dataclass(frozen=True)
class GcStats:
    """Garbage collections per generation (0, 1, 2) and the total time spent in them."""

    collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    collected: int = 0
    uncollectable: int = 0
    pause_s: float = 0.0


@dataclass(frozen=True)
class RunError:
    """Why a run did not finish ok: exception type, message, and traceback when there is one."""

    type: str
    message: str
    traceback: str | None = None


@dataclass
class Run:
    """One isolated, measured run of a target with one set of parameters."""

    target: str
    params: dict[str, Any]
    status: Status
    peak_rss_bytes: int
    wall_s: float
    cpu_s: float
    peak_heap_bytes: int | None = None
    records: int | None = None
    records_per_s: float | None = None
    gc: GcStats | None = None
    error: RunError | None = None
    exit_code: int | None = None
    limit_bytes: int | None = None
    # Where the peak came from: "kernel" (ru_maxrss of the finished child) or
    # "sampled-tree" (several processes at once summed above any single one's peak).
    peak_rss_source: str = "kernel"
    peak_rss_sampled_bytes: int | None = None
    heap_source: str | None = None
    started_at: str = ""
    memray_path: str | None = None
    timeline: list[Sample] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    # With heap tracking: what was live at the heap's peak, by the job's line, largest
    # first ([{site, traceback, size_bytes, count}], from memray's high-water-mark records).
    at_peak: list[dict[str, Any]] = field(default_factory=list)
    # A Node job's V8 figures (absent when no Node process reported), and how an `oom` run
    # ran out: "heap-limit" (V8's), "limit" (memdiag's --limit), "kernel" (the OOM killer).
    v8: V8Stats | None = None
    oom_kind: str | None = None
    # Set when memdiag itself could not measure the run (its worker was lost, its own code
    # raised), after one retry: why, in one line. Such a run (status "error") is no verdict
    # about the job: searches and confirmations treat it as not measured, never as over budget.
    infrastructure: str | None = None
    # True when no process's smaps_rollup could be read: the tree's sampled memory (and the
    # --limit check) is its RSS sum, shared pages counted in every process that maps them.
    pss_unreadable: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form, with `schema_version` and `kind` first."""
        data = asdict(self)
        data["timeline"] = [s.row() for s in self.timeline]
        for name in ("v8", "oom_kind"):
            if data[name] is None:
                del data[name]
        return {"schema_version": SCHEMA_VERSION, "kind": "run", **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Run:
        """Build a Run from its JSON form, every field checked (SchemaError when one is bad)."""
        return build(cls, data)


def load_run(path: str | os.PathLike[str]) -> Run:
    """Return the Run saved at `path` (by `memdiag run --json`)."""
    return load_model(path, "run", Run.from_dict)
