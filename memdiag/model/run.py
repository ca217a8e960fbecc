"""What one measured run recorded (`Run`), with its timeline samples and GC statistics."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from memdiag.model.files import SCHEMA_VERSION, load_model

Status = Literal["ok", "error", "oom", "timeout", "killed"]
STATUSES: tuple[Status, ...] = ("ok", "error", "oom", "timeout", "killed")


@dataclass(frozen=True)
class Sample:
    """One point of a timeline: seconds since start, tree RSS, Python heap, current phase."""

    t_s: float
    rss_bytes: int
    heap_bytes: int | None = None
    phase: str | None = None


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

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form, with `schema_version` and `kind` first."""
        data = asdict(self)
        data["timeline"] = [[s.t_s, s.rss_bytes, s.heap_bytes, s.phase] for s in self.timeline]
        return {"schema_version": SCHEMA_VERSION, "kind": "run", **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Run:
        """Build a Run from its JSON form (checked by `load_json` beforehand)."""
        values = {k: v for k, v in data.items() if k not in ("schema_version", "kind")}
        values["timeline"] = [Sample(*row) for row in values.get("timeline", [])]
        if values.get("gc") is not None:
            values["gc"] = GcStats(**values["gc"])
        if values.get("error") is not None:
            values["error"] = RunError(**values["error"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


def load_run(path: str | os.PathLike[str]) -> Run:
    """Return the Run saved at `path` (by `memdiag run --json`)."""
    return load_model(path, "run", Run.from_dict)
