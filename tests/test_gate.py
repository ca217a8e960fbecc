"""The regression gate: verdicts from hand-built entries, and the real CLI on real sweeps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memdiag.gate import compare
from tests.conftest import MB, memdiag


def entry(
    peak_mb: float, spread: tuple[float, float] | None = None, status: str = "ok", **params: Any
) -> dict[str, Any]:
    low, high = spread or (peak_mb, peak_mb)
    return {
        "target": "job",
        "params": params or {"batch": 50},
        "status": status,
        "peak_rss_bytes": int(peak_mb * MB),
        "peak_rss_spread": [int(low * MB), int(high * MB)],
        "peak_heap_bytes": None,
        "peak_heap_spread": None,
        "wall_s": 1.0,
        "wall_spread": [0.9, 1.1],
    }


@pytest.mark.parametrize(
    ("base", "now", "verdict"),
    [
        (entry(100, (98, 102)), entry(100, (97, 103)), "ok"),
        (entry(100, (98, 102)), entry(120, (115, 125)), "regressed"),
        # past the tolerance in the median, but one repeat inside the baseline's spread: noise
        (entry(100, (90, 130)), entry(115, (105, 118)), "within noise"),
        (entry(100, (98, 102)), entry(105, (104, 106)), "ok"),  # within the 10% tolerance
        (entry(100, (98, 102)), entry(70, (69, 71)), "improved"),
        (entry(100), entry(60, status="oom"), "failed"),
    ],
)
def test_verdicts(base: dict[str, Any], now: dict[str, Any], verdict: str) -> None:
    (row,) = compare([base], [now]).rows
    assert row.verdict == verdict


def test_max_peak_and_missing_configurations() -> None:
    result = compare(
        [entry(100, batch=50), entry(100, batch=100)],
        [entry(100, batch=50), entry(40, batch=10)],
        max_peak=80 * MB,
    )
    assert [r.verdict for r in result.rows] == ["over limit"]
    assert [e["params"] for e in result.only_in_baseline] == [{"batch": 100}]
    assert [e["params"] for e in result.only_in_current] == [{"batch": 10}]


def test_ignored_parameter_matches_variants() -> None:
    fixed, leaky = entry(50, variant="fixed"), entry(80, (78, 82), variant="leaky")
    assert compare([fixed], [leaky]).rows == []
    (row,) = compare([fixed], [leaky], ignore=["variant"]).rows
    assert row.verdict == "regressed" and row.change == pytest.approx(0.6, abs=0.01)


SWEEP = ["player-sync", "--param", "records=2500", "--repeat", "3", "--quiet"]


def sweep(tmp_path: Path, name: str, variant: str) -> Path:
    out = tmp_path / name
    proc = memdiag("sweep", *SWEEP, "--param", f"variant={variant}", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out / "results.json"


@pytest.mark.slow
def test_gate_fails_the_leaky_variant_and_never_flakes_on_unchanged_code(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    proc = memdiag("baseline", str(sweep(tmp_path, "fixed", "fixed")), "-o", str(baseline))
    assert proc.returncode == 0, proc.stderr
    leaky = sweep(tmp_path, "leaky", "leaky")
    md = tmp_path / "gate.md"
    proc = memdiag(
        "gate",
        str(leaky),
        "--baseline",
        str(baseline),
        "--ignore-param",
        "variant",
        "--md",
        str(md),
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "❌ regressed" in proc.stdout and md.read_text() == proc.stdout.rstrip("\n") + "\n"
    for attempt in range(10):
        again = sweep(tmp_path, f"again{attempt}", "fixed")
        proc = memdiag("gate", str(again), "--baseline", str(baseline))
        assert proc.returncode == 0, f"attempt {attempt}: {proc.stdout}"
        assert "no regression in 1 configurations" in proc.stdout


def test_pytest_report_is_a_baseline(tmp_path: Path) -> None:
    report = {
        "schema_version": 1,
        "kind": "pytest",
        "env": {},
        "configs": [
            {
                "params": {"test": "t.py::a"},
                "peak_rss_bytes": 10 * MB,
                "peak_heap_bytes": None,
                "wall_s": 0.1,
            }
        ],
    }
    now = json.loads(json.dumps(report))
    now["configs"][0]["peak_rss_bytes"] = 30 * MB
    (tmp_path / "a.json").write_text(json.dumps(report))
    (tmp_path / "b.json").write_text(json.dumps(now))
    assert (
        memdiag("baseline", str(tmp_path / "a.json"), "-o", str(tmp_path / "base.json")).returncode
        == 0
    )
    proc = memdiag("gate", str(tmp_path / "b.json"), "--baseline", str(tmp_path / "base.json"))
    assert proc.returncode == 1 and "pytest test=t.py::a" in proc.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not a memdiag JSON file"),
        ('{"kind": "baseline"}', "no schema_version"),
        ('{"schema_version": 99, "kind": "baseline", "configs": []}', "schema_version 99"),
        ('{"schema_version": 1, "kind": "snapshot"}', "holds a 'snapshot'"),
        ('{"schema_version": 1, "kind": "baseline", "configs": [{"params": {}}]}', "damaged"),
    ],
)
def test_bad_baseline_is_exit_2(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "baseline.json"
    bad.write_text(content)
    current = tmp_path / "now.json"
    current.write_text(json.dumps({"schema_version": 1, "kind": "pytest", "configs": []}))
    proc = memdiag("gate", str(current), "--baseline", str(bad))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
