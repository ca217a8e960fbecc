"""The regression gate: verdicts from hand-built entries, and the real CLI on real sweeps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memdiag.analysis.gate import compare
from memdiag.errors import MemdiagError
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
        # overlapping spreads no longer hide a change the baseline's repeats never showed
        (entry(100, (98, 102)), entry(115, (100, 120)), "regressed"),
        # inside the baseline's spread, but past twice the tolerance: +25%
        (entry(100, (90, 130)), entry(125, (121, 128)), "regressed"),
        # the +290% that a wide baseline spread used to call noise
        (entry(100, (50, 400)), entry(390, (380, 400)), "regressed"),
        (entry(100, (50, 400)), entry(120, (60, 400)), "within noise"),  # exactly 2x: noise
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
    with pytest.raises(MemdiagError):
        compare([fixed], [leaky])
    (row,) = compare([fixed], [leaky], ignore=["variant"]).rows
    assert row.verdict == "regressed" and row.change == pytest.approx(0.6, abs=0.01)


def test_parameters_match_by_value() -> None:
    base = [entry(100, batch=50, fast=True), entry(100, batch=0.5, fast=False)]
    now = [entry(130, batch="50", fast="true"), entry(100, batch="0.5", fast="false")]
    result = compare(base, now)
    assert [r.verdict for r in result.rows] == ["regressed", "ok"]
    assert not result.only_in_baseline and not result.only_in_current
    # 50.0 after a JSON round trip is still 50; True is not 1, "Fixed" is not "fixed"
    assert len(compare([entry(100, batch=50)], [entry(100, batch=50.0)]).rows) == 1
    mixed = compare(
        [entry(1, flag=True), entry(1, v="fixed")], [entry(1, flag=1), entry(1, v="fixed")]
    )
    assert [r.params for r in mixed.rows] == [{"v": "fixed"}]
    assert [e["params"] for e in mixed.only_in_current] == [{"flag": 1}]


def test_zero_matched_configurations_is_an_error_listing_both_sides() -> None:
    base = [entry(100, batch=50), entry(100, batch=100)]
    with pytest.raises(MemdiagError) as caught:
        compare(base, [entry(100, batch=10)])
    message = str(caught.value)
    assert "batch=50" in message and "batch=100" in message and "batch=10;" not in message
    assert "results only: job batch=10" in message and "\n" not in message


@pytest.mark.parametrize("side", ["baseline", "results"])
def test_metric_missing_on_either_side_is_an_error_naming_it(side: str) -> None:
    with_heap = {**entry(100), "peak_heap_bytes": 40 * MB, "peak_heap_spread": [40 * MB] * 2}
    base, now = (entry(100), with_heap) if side == "baseline" else (with_heap, entry(100))
    with pytest.raises(MemdiagError, match=f"--metric peak_heap: the {side} has no peak_heap"):
        compare([base], [now], metric="peak_heap")
    (row,) = compare([with_heap], [with_heap], metric="peak_heap").rows
    assert row.verdict == "ok" and row.change == 0


def test_a_failed_baseline_without_the_figure_is_no_error() -> None:
    # an oom in the baseline has no heap figure: the configuration that now runs ok improved
    failed = {**entry(100), "status": "oom"}
    with_heap = {**entry(100), "peak_heap_bytes": 40 * MB, "peak_heap_spread": [40 * MB] * 2}
    (row,) = compare([failed], [with_heap], metric="peak_heap").rows
    assert row.verdict == "improved" and "oom" in row.reason
    (row,) = compare([failed], [failed], metric="peak_heap").rows
    assert row.verdict == "failed"


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
        (
            '{"schema_version": 1, "kind": "baseline", "configs": [{"params": {}}]}',
            "configs[0].target: missing",
        ),
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


def pytest_report(path: Path, peaks_mb: dict[str, float], heap: bool = False) -> Path:
    configs = [
        {
            "params": {"test": name, "batch": "50" if heap else 50},
            "peak_rss_bytes": int(mb * MB),
            "peak_heap_bytes": int(mb * MB / 2) if heap else None,
            "wall_s": 0.1,
        }
        for name, mb in peaks_mb.items()
    ]
    path.write_text(
        json.dumps({"schema_version": 1, "kind": "pytest", "env": {}, "configs": configs})
    )
    return path


def test_cli_gate_refuses_what_it_cannot_compare(tmp_path: Path) -> None:
    base = pytest_report(tmp_path / "base.json", {"t.py::a": 10, "t.py::b": 10})
    same = pytest_report(tmp_path / "same.json", {"t.py::a": 10, "t.py::b": 10}, heap=True)
    other = pytest_report(tmp_path / "other.json", {"t.py::c": 10})
    proc = memdiag("gate", str(same), "--baseline", str(base))  # batch "50" is batch 50
    assert proc.returncode == 0 and "no regression in 2 configurations" in proc.stdout, proc.stderr
    cases = [
        ([str(other)], "baseline only: pytest test='t.py::a' batch=50; pytest test='t.py::b'"),
        ([str(same), "--metric", "peak_heap"], "--metric peak_heap: the baseline has no peak_heap"),
        (
            [str(same), "--tolerance", "10"],
            "--tolerance 10: a bare number is a fraction; write 10%",
        ),
    ]
    for args, message in cases:
        proc = memdiag("gate", *args, "--baseline", str(base))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    regressed = pytest_report(tmp_path / "up.json", {"t.py::a": 10, "t.py::b": 10.5})
    proc = memdiag("gate", str(regressed), "--baseline", str(base), "--tolerance", "0.04")
    assert proc.returncode == 1 and "tolerance 4%" in proc.stdout
    proc = memdiag("gate", str(regressed), "--baseline", str(base), "--tolerance", "6%")
    assert proc.returncode == 0, proc.stdout
