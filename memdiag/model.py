"""The data every stage shares: what a measured run recorded, as versioned JSON.

Measurement writes these objects; analysis and renderers only read them. Field names are the
JSON's: sizes in bytes (`*_bytes`), durations in seconds (`*_s`).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from memdiag.errors import MemdiagError

SCHEMA_VERSION = 1

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


# --- Snapshots: what a process held at one moment, and what grew between two moments. ---


@dataclass(frozen=True)
class SiteStat:
    """The memory allocated at one line and still alive (as tracemalloc's `Statistic`).

    `traceback` is [[filename, lineno], ...] from the oldest frame to the allocating line;
    `count` is the number of live memory blocks allocated there.
    """

    traceback: list[list[Any]]
    size_bytes: int
    count: int

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


@dataclass
class Snapshot:
    """What one process held at one moment: process memory, Python heap, sites, types.

    `heap_bytes` is tracemalloc's traced total and `tracemalloc_bytes` its own overhead;
    both are None in a process-level view (`--pid`), which fills `processes` and `regions`.
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
    gc_counts: list[int] = field(default_factory=list)
    gc_collections: list[int] = field(default_factory=list)
    regions: dict[str, int] = field(default_factory=dict)
    processes: list[dict[str, Any]] = field(default_factory=list)
    sites: list[SiteStat] = field(default_factory=list)
    types: list[TypeStat] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form, with `schema_version` and `kind: "snapshot"` first."""
        return {"schema_version": SCHEMA_VERSION, "kind": "snapshot", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        """Build a Snapshot from its JSON form (checked by `load_json` beforehand)."""
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["sites"] = [SiteStat(**s) for s in values.get("sites", [])]
        values["types"] = [TypeStat(**t) for t in values.get("types", [])]
        return cls(**values)


@dataclass(frozen=True)
class SiteDiff:
    """One allocation site between two snapshots (as tracemalloc's `StatisticDiff`)."""

    traceback: list[list[Any]]
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

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (`kind: "snapshot-diff"`)."""
        return {"schema_version": SCHEMA_VERSION, "kind": "snapshot-diff", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SnapshotDiff:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["sites"] = [SiteDiff(**s) for s in values.get("sites", [])]
        values["types"] = [TypeDiff(**t) for t in values.get("types", [])]
        return cls(**values)


def load_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """Return the Snapshot saved at `path` (by `memdiag snapshot`)."""
    data = load_json(path, ("snapshot",))
    try:
        return Snapshot.from_dict(data)
    except (TypeError, ValueError, KeyError) as exc:
        raise MemdiagError(f"{path}: damaged snapshot file ({exc})") from None


def dumps(data: Any, indent: int = 0) -> str:
    """Return `data` as indented JSON, with lists of scalars (timeline rows) on one line."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(data, dict) and data:
        items = [f"{inner}{json.dumps(str(k))}: {dumps(v, indent + 1)}" for k, v in data.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(data, list | tuple) and any(isinstance(v, dict | list | tuple) for v in data):
        rows = [f"{inner}{dumps(v, indent + 1)}" for v in data]
        return "[\n" + ",\n".join(rows) + f"\n{pad}]"
    return json.dumps(data)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Write `data` as JSON to `path` through a temporary file and a rename; return the path.

    A reader never sees half a file, and a crash mid-write keeps the previous version.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(dumps(data) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_json(path: str | os.PathLike[str], kinds: tuple[str, ...]) -> dict[str, Any]:
    """Return a memdiag JSON file's content after checking it is one of `kinds`, this version.

    A missing, corrupt, foreign or newer-version file is a MemdiagError (exit 2).
    """
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MemdiagError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MemdiagError(f"{path}: not a memdiag JSON file ({exc})") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise MemdiagError(f"{path}: not a memdiag JSON file (no schema_version)")
    if data["schema_version"] != SCHEMA_VERSION:
        raise MemdiagError(
            f"{path}: schema_version {data['schema_version']!r}, this memdiag reads "
            f"{SCHEMA_VERSION}"
        )
    if data.get("kind") not in kinds:
        raise MemdiagError(f"{path}: holds a {data.get('kind')!r}, expected {' or '.join(kinds)}")
    return data


def load_run(path: str | os.PathLike[str]) -> Run:
    """Return the Run saved at `path` (by `memdiag run --json`)."""
    try:
        return Run.from_dict(load_json(path, ("run",)))
    except (TypeError, ValueError, KeyError) as exc:
        raise MemdiagError(f"{path}: damaged run file ({exc})") from None


# --- A sweep: many runs over a grid of parameters, and what analysis made of them. ---

# The tuning knobs a job runs with (positive counts), as opposed to its input size.
TUNING_AXES = ("batch", "concurrency")
# Axes that describe the input's size, not how the job runs (more with `--size-axis`):
# scaling is fitted along them, and the decision matrix compares configurations at the
# largest size measured, since a user chooses a batch size, not the size of the input.
SIZE_AXES = ("records", "items", "cycles", "rows", "players", "games", "pages", "size")


@dataclass(frozen=True)
class ConfigSummary:
    """One configuration's repeats: medians and [min, max] spreads over its `ok` runs.

    `status` is `ok` when every repeat finished ok, else the most frequent failure. When no
    repeat finished ok the medians are over all repeats (an `oom` peak is where it was stopped).
    """

    params: dict[str, Any]
    status: Status
    runs: int
    statuses: dict[str, int]
    peak_rss_bytes: int | None
    peak_rss_spread: list[int] | None
    wall_s: float | None
    wall_spread: list[float] | None
    records: int | None = None
    records_per_s: float | None = None
    records_per_s_spread: list[float] | None = None
    error: str | None = None
    peak_heap_bytes: int | None = None
    peak_heap_spread: list[int] | None = None


@dataclass(frozen=True)
class MatrixRow:
    """The decision for one budget: the chosen config (None when nothing fits) and its cost.

    `peak_change` and `slowdown` compare with the reference config (fractions and ×). When
    nothing fits, `smallest` names the config with the lowest peak and `over_bytes` how far it
    is above headroom × budget.
    """

    budget_bytes: int
    headroom: float
    config: dict[str, Any] | None
    peak_rss_bytes: int | None = None
    budget_fraction: float | None = None
    wall_s: float | None = None
    records_per_s: float | None = None
    peak_change: float | None = None
    slowdown: float | None = None
    smallest: dict[str, Any] | None = None
    over_bytes: int | None = None
    # The input size the decision holds for (the largest measured), when sizes were swept.
    at: dict[str, Any] | None = None


@dataclass(frozen=True)
class ScalingFit:
    """peak = intercept + bytes_per_unit × size along `axis`, the other params fixed."""

    axis: str
    params: dict[str, Any]
    points: list[list[float]]
    intercept_bytes: float
    bytes_per_unit: float
    r2: float | None
    growth_fraction: float
    verdict: Literal["constant", "grows"]


@dataclass(frozen=True)
class VariantPair:
    """One variant against the first listed, same other params: peak reduction and slowdown."""

    params: dict[str, Any]
    baseline: Any
    variant: Any
    baseline_peak_bytes: int | None
    variant_peak_bytes: int | None
    peak_reduction: float | None
    slowdown: float | None
    meets: bool | None


@dataclass(frozen=True)
class Prediction:
    """A fit's predicted peak at `value` of `axis`, and the budgets it would fit in."""

    axis: str
    value: float
    params: dict[str, Any]
    peak_rss_bytes: int
    fits_budgets: list[int]


@dataclass
class Sweep:
    """A sweep of `target` over the cartesian product of `axes`, with `base` params fixed.

    Measurement fills `runs`; analysis fills `configs`, `matrix`, `scaling`, `variants` and
    `predictions` from the runs and the settings (`budgets_bytes`, `headroom`, `reference`,
    `predict`), so a saved sweep can be re-analysed and re-rendered without re-running.
    """

    target: str
    axes: dict[str, list[Any]]
    base: dict[str, Any] = field(default_factory=dict)
    repeat: int = 3
    jobs: int = 1
    timeout_s: float | None = None
    limit_bytes: int | None = None
    budgets_bytes: list[int] = field(default_factory=list)
    headroom: float = 0.8
    reference: dict[str, Any] | None = None
    predict: dict[str, float] = field(default_factory=dict)
    size_axes: list[str] = field(default_factory=list)
    started_at: str = ""
    env: dict[str, Any] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    configs: list[ConfigSummary] = field(default_factory=list)
    matrix: list[MatrixRow] = field(default_factory=list)
    scaling: list[ScalingFit] = field(default_factory=list)
    variants: list[VariantPair] = field(default_factory=list)
    predictions: list[Prediction] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (`schema_version`, `kind: "sweep"` first); runs in full."""
        data = asdict(self)
        data["runs"] = [run.to_dict() for run in self.runs]
        return {"schema_version": SCHEMA_VERSION, "kind": "sweep", **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sweep:
        """Build a Sweep from its JSON form; every run must belong to the axes."""
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["runs"] = [Run.from_dict(r) for r in values.get("runs", [])]
        for name, kind in _SWEEP_PARTS.items():
            values[name] = [kind(**item) for item in values.get(name, [])]
        sweep = cls(**values)
        for run in sweep.runs:
            for axis, allowed in sweep.axes.items():
                if run.params.get(axis) not in allowed:
                    raise ValueError(
                        f"a run has {axis}={run.params.get(axis)!r}, not an axis value"
                    )
        return sweep


_SWEEP_PARTS: dict[str, Any] = {
    "configs": ConfigSummary,
    "matrix": MatrixRow,
    "scaling": ScalingFit,
    "variants": VariantPair,
    "predictions": Prediction,
}


def load_sweep(path: str | os.PathLike[str]) -> Sweep:
    """Return the Sweep saved at `path` (a sweep's results.json)."""
    data = load_json(path, ("sweep",))
    try:
        return Sweep.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise MemdiagError(f"{path}: damaged sweep file ({exc})") from None
