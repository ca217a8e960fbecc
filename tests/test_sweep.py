"""`memdiag sweep` and `memdiag report` end to end: the real CLI on small targets."""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from memdiag.measure.sweep.grid import build_axes, expand, pending_runs
from memdiag.params import params_key
from tests.conftest import MB, load_results, memdiag
from tests.plots import assert_sweep_plots_show

# Peak = interpreter + batch MB; a fixed cost per batch makes bigger batches faster.
JOB = """
import time

def run(batch: int = 1, records: int = 160, mode: str = "ok", pause: float = 0.0) -> int:
    if mode == "error":
        raise ValueError("row 17 is malformed")
    if mode == "slow":
        time.sleep(60)
    if mode == "big":
        hold = b"\\x01" * (400 * 1024 * 1024)
    block = b"\\x01" * (batch * 1024 * 1024)
    time.sleep(0.025 * -(-records // batch) + pause)
    return records
"""


@pytest.fixture
def job(tmp_path: Path) -> str:
    path = tmp_path / "job.py"
    path.write_text(JOB)
    return f"{path}:run"


def brute_force(data: dict[str, Any], budget: int, headroom: float) -> dict[str, Any] | None:
    """The matrix's rule, restated naively over the raw runs: the worst repeat must fit; the
    fastest median wins unless another is within the repeats' spread and has a lower peak."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in data["runs"]:
        groups.setdefault(json.dumps(r["params"], sort_keys=True), []).append(r)
    fitting = []
    for runs in groups.values():
        if any(r["status"] != "ok" for r in runs):
            continue
        worst = max(r["peak_rss_bytes"] for r in runs)
        rates = [r["records_per_s"] for r in runs]
        if worst <= headroom * budget:
            fitting.append((runs[0]["params"], statistics.median(rates), worst, rates))
    if not fitting:
        return None
    best = max(fitting, key=lambda f: (f[1], -f[2]))
    tied = [
        f
        for f in fitting
        if f is best
        or abs(best[1] - f[1]) < max(max(best[3]) - min(best[3]), max(f[3]) - min(f[3]))
    ]
    return {"batch": min(tied, key=lambda f: (f[2], -f[1]))[0]["batch"]}


def test_matrix_choice_equals_brute_force(
    job: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    out = tmp_path / "out"
    budgets = "12MB,30MB,50MB,100MB,1GB"
    result = memdiag(
        "sweep", job, "--batch", "4,16,40,80", "--repeat", "2", "--budget", budgets,
        "--param", "records=640", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = load_results(out)
    assert len(data["runs"]) == 8 and data["kind"] == "sweep"
    chosen = [row["config"]["params"] if row["config"] else None for row in data["matrix"]]
    expected = [brute_force(data, row["budget_bytes"], 0.8) for row in data["matrix"]]
    assert chosen == expected
    # and the known function: peak ≈ interpreter + batch MB, throughput rising with batch;
    # a loaded machine may make two batches' speeds a tie, won by the smaller (lower peak)
    known = [None, 4, 16, 40, 80]
    for row, batch in zip(data["matrix"], known, strict=True):
        got = row["config"]["params"]["batch"] if row["config"] else None
        if row.get("note") and "tie within noise" in row["note"]:
            assert got is not None and batch is not None and got < batch
        else:
            assert got == batch, data["matrix"]
    assert data["matrix"][0]["smallest"]["params"] == {"batch": 4}
    for name in ("report.md", "report.html"):
        assert (out / name).stat().st_size > 0
    assert_sweep_plots_show(out, monkeypatch, request)
    assert "batch=40" in (out / "report.md").read_text()


def test_failures_are_recorded_and_the_sweep_finishes(job: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = memdiag(
        "sweep", job, "--param", "mode=ok,error,slow,big", "--param", "records=4", "--repeat", "1",
        "--timeout", "3", "--limit", "200MB", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    statuses = {c["params"]["mode"]: c["status"] for c in load_results(out)["configs"]}
    assert statuses == {"ok": "ok", "error": "error", "slow": "timeout", "big": "oom"}
    config = next(c for c in load_results(out)["configs"] if c["params"]["mode"] == "error")
    assert "row 17 is malformed" in config["error"]
    assert "timeout" in (out / "report.md").read_text()


# Kills its launcher (memdiag's failure, as a lost launcher is) on its first `lost` attempts.
LOSES_ITS_LAUNCHER = """
import os, signal

def run(lost: int = 1) -> int:
    seen = os.path.join(os.path.dirname(__file__), f"attempts-{lost}")
    with open(seen, "a") as handle:
        handle.write("x")
    if os.path.getsize(seen) <= lost:
        os.kill(os.getppid(), signal.SIGKILL)
        os._exit(0)
    return 1
"""


def test_a_lost_launcher_is_measured_once_more_then_recorded_as_memdiags(tmp_path: Path) -> None:
    job = tmp_path / "job.py"
    job.write_text(LOSES_ITS_LAUNCHER)
    out = tmp_path / "out"
    result = memdiag(
        "sweep", f"{job}:run", "--param", "lost=0,1,2", "--repeat", "1", "--out", str(out),
        "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    runs = {r["params"]["lost"]: r for r in load_results(out)["runs"]}
    assert sorted(runs) == [0, 1, 2]  # one Run each: the retry replaced the lost one
    attempts = {n: (tmp_path / f"attempts-{n}").stat().st_size for n in runs}
    assert attempts == {0: 1, 1: 2, 2: 2}  # tried once more after a loss, never a third time
    assert runs[0]["status"] == runs[1]["status"] == "ok"
    assert runs[1]["infrastructure"] is None
    lost = runs[2]
    assert lost["status"] == "error" and "launcher ended by SIGKILL" in lost["infrastructure"]
    config = next(c for c in load_results(out)["configs"] if c["params"]["lost"] == 2)
    assert config["status"] != "ok"


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_sweep_resumes_without_duplicates(
    job: str, tmp_path: Path, how: signal.Signals
) -> None:
    out = tmp_path / "out"
    args = ["sweep", job, "--batch", "1,2,3,4,5,6", "--param", "pause=0.4", "--repeat", "1"]
    args += ["--param", "records=4"]
    args += ["--out", str(out), "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "memdiag", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (out / "results.json").exists() and len(load_results(out)["runs"]) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(how)
    _, stderr = proc.communicate(timeout=30)
    saved = load_results(out)["runs"]
    assert 2 <= len(saved) < 6
    if how == signal.SIGINT:
        assert proc.returncode == 130 and b"--resume" in stderr
    result = memdiag(*args, "--resume")
    assert result.returncode == 0, result.stderr
    runs = load_results(out)["runs"]
    keys = [params_key(r["params"]) for r in runs]
    assert len(keys) == len(set(keys)) == 6
    assert [r["started_at"] for r in runs[: len(saved)]] == [r["started_at"] for r in saved]
    assert [c["params"]["batch"] for c in load_results(out)["configs"]] == [1, 2, 3, 4, 5, 6]


def test_external_command_and_report_rerender(tmp_path: Path) -> None:
    script = tmp_path / "alloc.py"
    script.write_text("import sys, time\nb = b'x' * (int(sys.argv[1]) << 20)\ntime.sleep(0.1)\n")
    out = tmp_path / "cmd"
    result = memdiag(
        "sweep", "--batch", "1,30", "--repeat", "1", "--budget", "30MB,1GB", "--out", str(out),
        "--quiet", "--", sys.executable, str(script), "{batch}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = load_results(out)
    assert [c["status"] for c in data["configs"]] == ["ok", "ok"]
    peaks = [c["peak_rss_bytes"] for c in data["configs"]]
    assert 25 * MB < peaks[1] - peaks[0] < 35 * MB
    assert data["matrix"][0]["config"] == {"params": {"batch": 1}}
    again = tmp_path / "again"
    result = memdiag("report", str(out / "results.json"), "--out", str(again), "--quiet")
    assert result.returncode == 0, result.stderr
    html = (again / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and 'src="http' not in html
    assert json.loads((again / "results.json").read_text())["matrix"] == data["matrix"]
    before = (out / "results.json").read_bytes()
    result = memdiag("report", str(out / "results.json"), "--budget", "8GB", "--quiet")
    assert result.returncode == 0 and len(load_results(out / "decision")["matrix"]) == 1
    assert (out / "results.json").read_bytes() == before  # the input is never rewritten


@pytest.mark.parametrize(
    "args",
    [
        ["--batch", "10,x"],
        ["--batch", "0"],
        ["--batch", ""],
        ["--batch", "10,,20"],
        ["--param", "records="],
        ["--batch", "10,20", "--param", "batch=30,40"],
        ["--batch", "10,10"],
        ["--batch", "10,20", "--headroom", "150%"],
        ["--batch", "10,20", "--reference", "batch=30"],
        ["--batch", "10,20", "--reference", "size=1"],
        ["--batch", "10,20", "--budget", "1GB,,2GB"],
        ["--batch", "10,20", "--repeat", "0"],
        ["--batch", "10,20", "--predict", "records=100"],
        ["--batch", "10,20", "--at", "records=100"],
        ["--param", "records=100,200", "--at", "records=0"],
        ["--param", "keep=auto"],
        ["--batch", "auto:x"],
        ["--batch", "auto:8", "--max", "batch=4"],
        ["--batch", "auto", "--max", "concurrency=4"],
        ["--batch", "auto", "--param", "records=100,200", "--at", "records=1000"],
        ["--param", "records=100,200", "--at", "records=1000", "--sizes", "more"],
        ["--param", "records=100,200", "--sizes", "auto"],
        ["--sizes", "auto", "--at", "records=-5"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], tmp_path: Path) -> None:
    result = memdiag("sweep", "example", *args, "--out", str(tmp_path / "x"), timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memdiag: error:"), result.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps({"schema_version": 1, "kind": "run", "target": "x"}),
        json.dumps({"schema_version": 99, "kind": "sweep"}),
        json.dumps({"hello": "world"}),
        json.dumps(
            {
                "schema_version": 1,
                "kind": "sweep",
                "target": "t",
                "axes": {"batch": [1, 2]},
                "runs": [
                    {
                        "target": "t",
                        "params": {"batch": 7},
                        "status": "ok",
                        "peak_rss_bytes": 1,
                        "wall_s": 1,
                        "cpu_s": 1,
                    }
                ],
            }
        ),
    ],
)
def test_report_refuses_a_bad_file(content: str, tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(content)
    result = memdiag("report", str(path), timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memdiag: error:"), result.stderr


def test_axes_expand_and_pending_runs_skip_what_is_done() -> None:
    axes, fixed = build_axes(("records=100", "variant=a,b"), "10,20", None)
    assert axes == {"batch": [10, 20], "variant": ["a", "b"]} and fixed == {"records": 100}
    configs = expand(axes, fixed)
    assert configs[1] == {"records": 100, "batch": 10, "variant": "b"} and len(configs) == 4
    assert pending_runs(configs, [], 2) == configs + configs


# Peak = interpreter + batch MB, touched: a known line in the batch size.
LINE = """
import time

def run(batch: int = 1, records: int = 200) -> int:
    block = bytearray(batch * 1024 * 1024)
    block[::4096] = b"\\x01" * len(range(0, len(block), 4096))
    time.sleep(0.05)
    return records
"""


def test_batch_auto_finds_the_boundary_of_a_known_line(tmp_path: Path) -> None:
    path = tmp_path / "line.py"
    path.write_text(LINE)
    out = tmp_path / "out"
    args = ["sweep", f"{path}:run", "--batch", "auto", "--max", "batch=256", "--out", str(out)]
    result = memdiag(*args, "--budget", "64MB", "--quiet")
    assert result.returncode == 0, result.stderr
    first = load_results(out)["runs"]
    # --resume continues the search with a new budget: no probe is run twice
    result = memdiag(*args, "--budget", "64MB,160MB", "--quiet", "--resume")
    assert result.returncode == 0, result.stderr
    data = load_results(out)
    runs = data["runs"]
    assert [r["started_at"] for r in runs[: len(first)]] == [r["started_at"] for r in first]
    assert len(runs) > len(first)
    ok = [(r["params"]["batch"], r["peak_rss_bytes"]) for r in runs if r["status"] == "ok"]
    xs, ys = [x for x, _ in ok], [y for _, y in ok]
    slope, intercept = statistics.linear_regression(xs, ys)
    assert 0.9 * MB < slope < 1.2 * MB  # the job is the line it claims to be
    for search in data["search"]:
        limit = search["limit_bytes"]
        largest = search["largest_fitting"]
        assert search["done"] and largest is not None
        assert abs(largest - (limit - intercept) / slope) <= 1.5  # within one step
        over = [
            r["params"]["batch"]
            for r in runs
            if r["params"]["batch"] > largest
            and (
                r["peak_rss_bytes"] > limit or (r["status"] == "oom" and r["limit_bytes"] >= limit)
            )
        ]
        assert over and min(over) <= largest + max(1, 0.02 * largest)
        assert search["fastest_fitting"] <= largest
        assert all(p["limit_bytes"] == limit for p in search["probes"])
    # a grid of one-unit precision over 1..256 is 256 runs; the search's bound is far lower
    assert len(runs) <= 8 + 6, [r["params"]["batch"] for r in runs]
    assert "Search: the largest value that fits" in (out / "report.md").read_text()


# Memory jumps past 5000 records in the "jumpy" mode, which is also the faster one.
JUMPY = """
import time

def run(records: int = 100, mode: str = "jumpy") -> int:
    rows = bytearray(records * 10 * 1024)
    rows[::4096] = b"\\x01" * len(range(0, len(rows), 4096))
    if mode == "jumpy" and records > 5000:
        spike = bytearray(300 * 1024 * 1024)
        spike[::4096] = b"\\x01" * len(range(0, len(spike), 4096))
    time.sleep(0.05 if mode == "jumpy" else 1.0)
    return records
"""


def test_confirm_refutes_a_wrong_prediction_and_falls_back(tmp_path: Path) -> None:
    path = tmp_path / "jumpy.py"
    path.write_text(JUMPY)
    out = tmp_path / "out"
    result = memdiag(
        "sweep", f"{path}:run", "--param", "mode=jumpy,safe", "--param", "records=1000,2000,3000",
        "--repeat", "1", "--budget", "256MB", "--at", "records=10000", "--confirm",
        "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = load_results(out)
    (row,) = data["matrix"]
    assert row["basis"] == "predicted" and row["at"] == {"records": 10000}
    assert row["peak_upper_bytes"] <= 0.8 * 256 * MB
    (refuted,) = row["refuted"]
    assert refuted["params"] == {"mode": "jumpy", "records": 10000}
    assert refuted["run_status"] == "oom" and refuted["status"] == "refuted"
    assert row["config"] == {"params": {"mode": "safe", "records": 10000}}
    assert row["confirmation"]["status"] == "confirmed"
    assert row["confirmation"]["peak_rss_bytes"] <= 0.8 * 256 * MB
    assert len(data["confirm_runs"]) == 2 and len(data["runs"]) == 6
    assert data["schema_version"] == 2
    text = (out / "report.md").read_text()
    assert "refuted: mode=jumpy records=10000 (oom at" in text and "confirmed (peak" in text
    # an old (version 1) results file is still read
    old = {k: v for k, v in data.items() if k not in ("capacity", "search", "confirm_runs")}
    old["schema_version"] = 1
    old["matrix"] = [
        {k: v for k, v in m.items() if k in ("budget_bytes", "headroom", "config")}
        for m in data["matrix"]
    ]
    (tmp_path / "old.json").write_text(json.dumps(old))
    result = memdiag("report", str(tmp_path / "old.json"), "--quiet", "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "r" / "results.json").read_text())["schema_version"] == 2
