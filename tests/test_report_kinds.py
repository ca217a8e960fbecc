"""`memdiag report` re-renders every saved kind: snapshots, diffs, leak reports, gates,
pytest reports and baselines (runs, sweeps and monitors are covered by their own tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from memdiag.analysis.diff import compare_snapshots
from memdiag.model import (
    GateResult,
    GateRow,
    LeakReport,
    NativeGrowth,
    SiteLeak,
    SiteStat,
    Snapshot,
    TypeLeak,
    TypeStat,
    write_json_atomic,
)
from tests.conftest import memdiag

MB = 1024 * 1024


def _snapshot(label: str, size: int) -> Snapshot:
    return Snapshot(
        label=label,
        time_s=1.0,
        target="jobs.py:sync",
        rss_bytes=100 * MB + size,
        heap_bytes=size,
        sites=[SiteStat([["jobs.py", 41]], size, 10)],
        types=[TypeStat("Player", 10, size // 2)],
    )


def _entry(batch: int, peak_mb: int) -> dict[str, Any]:
    return {
        "target": "jobs.py:sync",
        "params": {"batch": batch},
        "status": "ok",
        "peak_rss_bytes": peak_mb * MB,
        "peak_rss_spread": [peak_mb * MB, peak_mb * MB],
        "peak_heap_bytes": None,
        "peak_heap_spread": None,
        "wall_s": 1.0,
        "wall_spread": [1.0, 1.0],
    }


def _baseline(path: Path, entries: list[dict[str, Any]]) -> Path:
    doc = {"schema_version": 1, "kind": "baseline", "sources": [], "env": {}, "configs": entries}
    return write_json_atomic(path, doc)


def test_report_renders_a_saved_snapshot(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "snap.json", _snapshot("after", 30 * MB).to_dict())
    proc = memdiag("report", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "jobs.py:41" in proc.stdout and "Player" in proc.stdout
    assert "30.0 MB" in proc.stdout


def test_report_renders_a_saved_diff(tmp_path: Path) -> None:
    diff = compare_snapshots(_snapshot("before", 10 * MB), _snapshot("after", 30 * MB))
    path = write_json_atomic(tmp_path / "diff.json", diff.to_dict())
    proc = memdiag("report", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "before → after" in proc.stdout and "jobs.py:41" in proc.stdout
    assert "+20.0 MB" in proc.stdout


def test_report_renders_a_saved_leak_report(tmp_path: Path) -> None:
    report = LeakReport(
        target="jobs.py:sync",
        params={},
        snapshots=8,
        warmup=2,
        unit="iteration",
        settings={},
        rss_first_bytes=100 * MB,
        rss_last_bytes=140 * MB,
        heap_first_bytes=10 * MB,
        heap_last_bytes=50 * MB,
        sites=[SiteLeak("jobs.py:41", [["jobs.py", 41]], 5 * MB, 100, 40 * MB, 800, 5, 5)],
        types=[TypeLeak("Player", 100, 5 * MB, 800, 40 * MB, 5, 5)],
        native=NativeGrowth(2 * MB, 0, 2 * MB, 5, 5),
    )
    assert LeakReport.from_dict(report.to_dict()) == report
    path = write_json_atomic(tmp_path / "leaks.json", {**report.to_dict(), "partial": True})
    proc = memdiag("report", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "PARTIAL: 8 snapshots" in proc.stdout
    assert "jobs.py:41" in proc.stdout and "Player" in proc.stdout


def test_report_renders_a_saved_gate_as_the_gate_printed_it(tmp_path: Path) -> None:
    base = _baseline(tmp_path / "base.json", [_entry(1, 100), _entry(2, 100)])
    now = _baseline(tmp_path / "now.json", [_entry(1, 100), _entry(2, 150)])
    saved = tmp_path / "gate.json"
    gate = memdiag("gate", str(now), "--baseline", str(base), "--json", str(saved))
    assert gate.returncode == 1, gate.stderr
    assert json.loads(saved.read_text())["kind"] == "gate"
    proc = memdiag("report", str(saved))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == gate.stdout
    assert "regressed" in proc.stdout


def test_gate_result_round_trips() -> None:
    row = GateRow("t", {"batch": 2}, 100.0, 150.0, 0.5, "regressed", "past 2x")
    result = GateResult("peak_rss", 0.1, None, [row], [{"target": "t", "params": {}}], [])
    assert GateResult.from_dict(result.to_dict()) == result
    assert GateResult.from_dict(result.to_dict()).failed == [row]


def test_report_renders_a_pytest_report_and_a_baseline(tmp_path: Path) -> None:
    pytest_report = {
        "schema_version": 1,
        "kind": "pytest",
        "env": {},
        "configs": [
            {"params": {"test": "tests/test_a.py::test_big"}, "peak_rss_bytes": 64 * MB},
        ],
    }
    path = write_json_atomic(tmp_path / "pytest.json", pytest_report)
    proc = memdiag("report", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "tests/test_a.py::test_big" in proc.stdout and "64.0 MB" in proc.stdout
    base = _baseline(tmp_path / "base.json", [_entry(7, 90)])
    proc = memdiag("report", str(base))
    assert proc.returncode == 0, proc.stderr
    assert "batch=7" in proc.stdout and "90.0 MB" in proc.stdout


def test_report_refuses_an_unknown_kind(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "x.json", {"schema_version": 1, "kind": "nonsense"})
    proc = memdiag("report", str(path))
    assert proc.returncode == 2 and "nonsense" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_report_refuses_a_damaged_file_in_one_line(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "x.json", {"schema_version": 1, "kind": "leak-report"})
    proc = memdiag("report", str(path))
    assert proc.returncode == 2 and "x.json: target: missing" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
