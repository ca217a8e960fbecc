"""The data every stage shares, as versioned JSON: runs, snapshots, sweeps.

Measurement writes these objects; analysis and renderers only read them. Field names are the
JSON's: sizes in bytes (`*_bytes`), durations in seconds (`*_s`). One module per model:
`run`, `snapshot`, `sweep`; `files` reads and writes them.
"""

from memdiag.model.files import SCHEMA_VERSION, dumps, load_json, write_json_atomic
from memdiag.model.run import STATUSES, GcStats, Run, RunError, Sample, Status, load_run
from memdiag.model.snapshot import (
    SiteDiff,
    SiteStat,
    Snapshot,
    SnapshotDiff,
    TypeDiff,
    TypeStat,
    load_snapshot,
)
from memdiag.model.sweep import (
    SIZE_AXES,
    SWEEP_SCHEMA_VERSION,
    TUNING_AXES,
    Capacity,
    ConfigSummary,
    HostSummary,
    MatrixRow,
    Prediction,
    ScalingFit,
    SearchResult,
    Sweep,
    VariantPair,
    load_sweep,
)

__all__ = [
    "SCHEMA_VERSION",
    "SIZE_AXES",
    "STATUSES",
    "SWEEP_SCHEMA_VERSION",
    "TUNING_AXES",
    "Capacity",
    "ConfigSummary",
    "GcStats",
    "HostSummary",
    "MatrixRow",
    "Prediction",
    "Run",
    "RunError",
    "Sample",
    "ScalingFit",
    "SearchResult",
    "SiteDiff",
    "SiteStat",
    "Snapshot",
    "SnapshotDiff",
    "Status",
    "Sweep",
    "TypeDiff",
    "TypeStat",
    "VariantPair",
    "dumps",
    "load_json",
    "load_run",
    "load_snapshot",
    "load_sweep",
    "write_json_atomic",
]
