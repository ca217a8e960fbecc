"""`memdiag run` end to end: real child processes, real measurements, every status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from memdiag.model import load_run
from tests.conftest import MB, memdiag
from tests.plots import assert_monitor_plot_shows, assert_run_plot_shows

JOBS = str(Path(__file__).with_name("jobs.py"))


def run_json(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path / "run.json"
    proc = memdiag("run", "--json", str(out), "-q", *args)
    assert out.exists(), proc.stderr
    return proc, json.loads(out.read_text())


def test_short_spike_is_counted_in_the_peak(tmp_path: Path) -> None:
    _, empty = run_json(tmp_path, f"{JOBS}:empty")
    proc, spike = run_json(tmp_path, f"{JOBS}:spike", "--param", "mb=300", "--param", "hold_s=0.05")
    assert proc.returncode == 0
    # ru_maxrss, not the sampled maximum: a 50 ms spike must count.
    assert spike["peak_rss_bytes"] - empty["peak_rss_bytes"] >= 280 * MB
    assert spike["peak_rss_source"] == "kernel"
    assert spike["status"] == "ok" and spike["records"] == 1


def test_empty_target_peak_is_close_to_bare_python(tmp_path: Path) -> None:
    _, empty = run_json(tmp_path, f"{JOBS}:empty")
    bare = subprocess.run(
        [
            sys.executable,
            "-c",
            "import resource, subprocess, sys;"
            "subprocess.run([sys.executable, '-c', 'pass']);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    bare_bytes = int(bare.stdout) * 1024
    assert abs(empty["peak_rss_bytes"] - bare_bytes) < 5 * MB


def test_child_carries_none_of_memdiags_heavy_imports(tmp_path: Path) -> None:
    _, run = run_json(tmp_path, f"{JOBS}:heavy_modules")
    assert run["status"] == "ok"
    assert run["records"] == 0


def test_external_command_is_measured(tmp_path: Path) -> None:
    code = "b = bytearray({mb} * 1024 * 1024); b[::4096] = b'1' * len(range(0, len(b), 4096))"
    proc, run = run_json(tmp_path, "--param", "mb=120", "--", sys.executable, "-c", code)
    assert proc.returncode == 0
    assert run["status"] == "ok"
    assert run["peak_rss_bytes"] >= 120 * MB
    assert run["target"].startswith("-- ")


def test_shell_program_exit_code_is_an_error(tmp_path: Path) -> None:
    proc, run = run_json(tmp_path, "--", "sh", "-c", "echo working; exit 3")
    assert proc.returncode == 1
    assert run["status"] == "error"
    assert run["exit_code"] == 3
    assert "exited with code 3" in run["error"]["message"]


def test_error_is_recorded_with_traceback(tmp_path: Path) -> None:
    proc, run = run_json(tmp_path, f"{JOBS}:fail")
    assert proc.returncode == 1
    assert run["status"] == "error"
    assert run["error"]["type"] == "ValueError"
    assert run["error"]["message"] == "bad record 17"
    assert "jobs.py" in run["error"]["traceback"]
    assert "Traceback" not in proc.stderr  # the job's failure is a result, not memdiag's crash


def test_memory_error_is_oom(tmp_path: Path) -> None:
    proc, run = run_json(tmp_path, f"{JOBS}:nomem")
    assert proc.returncode == 1
    assert run["status"] == "oom"


def test_limit_stops_the_job_like_a_container(tmp_path: Path) -> None:
    started = time.monotonic()
    proc, run = run_json(tmp_path, f"{JOBS}:grow", "--limit", "200MB")
    assert proc.returncode == 1
    assert run["status"] == "oom"
    assert run["limit_bytes"] == 200 * MB
    # Stopped near the limit, not after growing to the 4 GB it asked for.
    assert 200 * MB < run["peak_rss_bytes"] < 400 * MB
    assert time.monotonic() - started < 60


def test_timeout(tmp_path: Path) -> None:
    proc, run = run_json(tmp_path, f"{JOBS}:sleepy", "--timeout", "1")
    assert proc.returncode == 1
    assert run["status"] == "timeout"
    assert 0.9 < run["wall_s"] < 10


def test_killed_by_a_signal(tmp_path: Path) -> None:
    proc, run = run_json(tmp_path, f"{JOBS}:suicide")
    assert proc.returncode == 1
    assert run["status"] == "killed"
    assert "SIGKILL" in run["error"]["message"]


def test_phases_progress_and_records_from_probe(tmp_path: Path) -> None:
    _, run = run_json(tmp_path, f"{JOBS}:phases", "--interval", "0.05")
    assert run["records"] == 3000
    assert run["records_per_s"] > 0
    labels = [row[3] for row in run["timeline"]]
    assert "fetch" in labels and "write" in labels
    assert labels.index("fetch") < labels.index("write")
    assert [p["phase"] for p in run["phases"]] == ["fetch", None, "write", None]
    assert sum(run["gc"]["collections"]) > 0


def test_heap_peak_and_memray_capture(tmp_path: Path) -> None:
    out = tmp_path / "heap.json"
    proc = memdiag("run", f"{JOBS}:heap_block", "--memray", "--json", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    run = load_run(out)
    assert run.peak_heap_bytes is not None and run.peak_heap_bytes >= 80 * MB
    assert run.memray_path == str(out.with_suffix(".memray"))
    assert Path(run.memray_path).stat().st_size > 0


def test_heap_flag_alone_keeps_no_capture(tmp_path: Path) -> None:
    _, run = run_json(tmp_path, f"{JOBS}:heap_block", "--heap")
    assert run["peak_heap_bytes"] >= 80 * MB
    assert run["heap_source"] == "memray" and run["memray_path"] is None
    assert any(row[2] for row in run["timeline"])


def test_plot_shows_the_timeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    png, saved = tmp_path / "t.png", tmp_path / "t.json"
    proc = memdiag("run", f"{JOBS}:phases", "--plot", str(png), "--json", str(saved))
    assert proc.returncode == 0, proc.stderr
    assert_run_plot_shows(png, saved, monkeypatch, request)
    assert "peak RSS" in proc.stdout


def test_json_round_trip(tmp_path: Path) -> None:
    _, data = run_json(tmp_path, f"{JOBS}:phases")
    run = load_run(tmp_path / "run.json")
    assert run.to_dict() == data


def test_ctrl_c_records_a_killed_run_and_stops_the_job(tmp_path: Path) -> None:
    out = tmp_path / "int.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "memdiag", "run", f"{JOBS}:sleepy", "--json", str(out), "-q"],
        start_new_session=True,
    )
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C reaches the foreground group
    assert proc.wait(timeout=20) == 1
    run = json.loads(out.read_text())
    assert run["status"] == "killed"
    assert run["error"]["type"] == "KeyboardInterrupt"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuch-engine"], "unknown engine 'nosuch-engine'"),
        (["nosuch_module_x:run"], "no module named"),
        (["os:nosuchfn"], "has no function"),
        (["./missing.py:run"], "no such file"),
        ([f"{JOBS}:empty", "--param", "records"], "--param takes name=value"),
        ([f"{JOBS}:empty", "--param", "records=3"], "takes no parameter 'records'"),
        ([f"{JOBS}:empty", "--limit", "12XB"], "not a size"),
        ([f"{JOBS}:empty", "--interval", "-1"], "--interval must be above 0"),
        (["--", "/no/such/program"], "cannot start"),
        (["--", "sh", "-c", "exit {code}"], "placeholder {code}"),
        (["--heap", "--", "true"], "need a Python target"),
        ([], "missing TARGET"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    proc = memdiag("run", *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_engines_lists_parameters() -> None:
    proc = memdiag("engines")
    assert proc.returncode == 0
    assert "example" in proc.stdout and "--param records=200000" in proc.stdout


def test_report_re_renders_a_saved_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    _, data = run_json(tmp_path, f"{JOBS}:phases")
    png = tmp_path / "again.png"
    proc = memdiag("report", str(tmp_path / "run.json"), "--plot", str(png))
    assert proc.returncode == 0, proc.stderr
    assert "peak RSS" in proc.stdout and data["target"] in proc.stdout
    assert_run_plot_shows(png, tmp_path / "run.json", monkeypatch, request)


def test_report_re_renders_a_saved_monitor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    samples, png = tmp_path / "samples.jsonl", tmp_path / "monitor.png"
    watched = [sys.executable, "-c", "import time; time.sleep(1)"]
    proc = memdiag("monitor", "0.1", "0", "--out", str(samples), "--", *watched)
    assert proc.returncode == 0, proc.stderr
    proc = memdiag("report", str(samples), "--plot", str(png))
    assert proc.returncode == 0, proc.stderr
    assert_monitor_plot_shows(png, samples, monkeypatch, request)
