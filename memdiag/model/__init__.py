"""The data every stage shares, as versioned JSON: runs, snapshots, sweeps, leak reports,
gate results and monitor summaries.

Measurement writes these objects; analysis and renderers only read them. Field names are the
JSON's: sizes in bytes (`*_bytes`), durations in seconds (`*_s`). One module per model:
`run`, `snapshot`, `sweep`, `leaks`, `gate`, `monitor`; `files` reads and writes them.
"""

from memdiag.model.files import SCHEMA_VERSION, dumps, load_json, write_json_atomic
from memdiag.model.gate import GateResult, GateRow, load_gate_result
from memdiag.model.leaks import (
    LeakReport,
    NativeGrowth,
    Owner,
    SiteLeak,
    TypeLeak,
    load_leak_report,
)
from memdiag.model.monitor import MonitorSummary
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
    "GateResult",
    "GateRow",
    "GcStats",
    "HostSummary",
    "LeakReport",
    "MatrixRow",
    "MonitorSummary",
    "NativeGrowth",
    "Owner",
    "Prediction",
    "Run",
    "RunError",
    "Sample",
    "ScalingFit",
    "SearchResult",
    "SiteDiff",
    "SiteLeak",
    "SiteStat",
    "Snapshot",
    "SnapshotDiff",
    "Status",
    "Sweep",
    "TypeDiff",
    "TypeLeak",
    "TypeStat",
    "VariantPair",
    "dumps",
    "load_gate_result",
    "load_json",
    "load_leak_report",
    "load_run",
    "load_snapshot",
    "load_sweep",
    "write_json_atomic",
]
