"""`memdiag monitor` end to end on real processes, and the in-process MemoryMonitor."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memdiag.cli.report import render_monitor_file
from memdiag.health.monitor import MemoryMonitor
from tests.conftest import MB, memdiag
from tests.plots import assert_line_shows, colour_pixels, keep_figures, line_of

PY = sys.executable
# Grows by 2 MB every 50 ms, holding everything: a leak.
GROWING = """
import time
keep = []
for _ in range(60):
    keep.append(bytearray(2 * 1024 * 1024))
    time.sleep(0.05)
"""
# Grows by 2 MB every 30 ms and drops it all every 20 steps: a cache cleared periodically.
# Chunks this large are mmap'd, so freeing them gives the memory back at once.
SAWTOOTH = """
import time
keep = []
for i in range(160):
    keep.append(bytearray(2 * 1024 * 1024))
    if i % 20 == 19:
        keep.clear()
    time.sleep(0.03)
"""


def script(tmp_path: Path, name: str, code: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(code)
    return str(path)


def lines(path: Path, kind: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [row for row in rows if row["kind"] == kind]


def monitor_json(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "samples.jsonl"
    proc = memdiag("monitor", "--out", str(out), "-q", *args)
    assert out.exists(), proc.stderr
    return proc, out


def test_growing_process_is_growing_and_saved_monitor_rerenders(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    plot = tmp_path / "monitor.png"
    proc, out = monitor_json(
        tmp_path, "0.1", "0", "--plot", str(plot), "--", PY, script(tmp_path, "g", GROWING)
    )
    assert proc.returncode == 0, proc.stderr
    (summary,) = lines(out, "summary")
    assert summary["verdict"] == "growing" and summary["r2"] > 0.8
    assert summary["ended"] == "exited" and summary["exit_code"] == 0
    # 2 MB / 50 ms is 144,000 MB/hour; sampling and the allocator blur it a little.
    assert 80_000 < summary["growth_mb_per_hour"] < 200_000
    assert summary["max_rss_bytes"] > 100 * MB
    samples = lines(out, "sample")
    assert len(samples) == summary["samples"] >= 25
    assert any("uss_bytes" in s for s in samples)
    assert "verdict    growing" in proc.stdout

    figures = keep_figures(monkeypatch, request)
    again = tmp_path / "again.png"
    assert render_monitor_file(str(out), str(again)) == 0
    printed = capsys.readouterr().out
    assert "growing — leak suspected" in printed
    # the re-rendered plot draws every sample where it belongs, and so did the live one
    (fig,) = figures
    times = [s["t_s"] for s in samples]
    rss_mb = [s["rss_bytes"] / MB for s in samples]
    assert_line_shows(again, fig, "RSS", times, rss_mb)
    ax, rss_line = line_of(fig, "RSS")
    live = colour_pixels(plot, fig, ax, rss_line.get_color())
    replayed = colour_pixels(again, fig, ax, rss_line.get_color())
    assert len(live) > 100 and abs(len(live) - len(replayed)) < 0.05 * len(replayed)
    assert np.allclose(live.min(axis=0), replayed.min(axis=0), atol=2)
    assert np.allclose(live.max(axis=0), replayed.max(axis=0), atol=2)


def test_periodically_cleared_process_is_a_sawtooth(tmp_path: Path) -> None:
    proc, out = monitor_json(tmp_path, "0.05", "0", "--", PY, script(tmp_path, "s", SAWTOOTH))
    (summary,) = lines(out, "summary")
    assert proc.returncode == 0, proc.stderr
    assert summary["verdict"] == "sawtooth", summary
    assert summary["releases"] >= 3


@pytest.mark.parametrize(
    ("variant", "verdicts"), [("leaky", {"growing"}), ("cleared", {"sawtooth", "stable"})]
)
def test_record_sync_engine(tmp_path: Path, variant: str, verdicts: set[str]) -> None:
    code = (
        "from memdiag_plugins.record_sync import run; "
        f"run(variant={variant!r}, cycles=200, batch=500, max_age=20)"
    )
    proc, out = monitor_json(tmp_path, "0.1", "0", "--", PY, "-c", code)
    (summary,) = lines(out, "summary")
    assert proc.returncode == 0, proc.stderr
    assert summary["verdict"] in verdicts, summary


def test_sigterm_keeps_every_sample_and_writes_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "samples.jsonl"
    argv = [
        PY,
        "-m",
        "memdiag",
        "monitor",
        "0.1",
        "0",
        "--out",
        str(out),
        "-q",
        "--",
        PY,
        "-c",
        "import time; time.sleep(60)",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not out.exists() or len(out.read_text().splitlines()) < 2:
        time.sleep(0.01)
    started = time.monotonic()
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    elapsed = time.monotonic() - started
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    samples = lines(out, "sample")
    assert abs(len(samples) - elapsed / 0.1) <= 1
    (summary,) = lines(out, "summary")
    assert summary["ended"] == "SIGTERM" and summary["samples"] == len(samples)
    assert "ended: SIGTERM" in stdout


def test_followed_process_exit_code_is_the_monitors(tmp_path: Path) -> None:
    proc = memdiag(
        "monitor", "1", "0", "-q", "--", PY, "-c", "import sys, time; time.sleep(0.3); sys.exit(3)"
    )
    assert proc.returncode == 3
    assert "ended: exited, exit code 3" in proc.stdout


def test_duration_stops_a_followed_pid_without_touching_it(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([PY, "-c", "import time; time.sleep(30)"])
    try:
        proc, out = monitor_json(tmp_path, "0.1", "0.5", "--pid", str(sleeper.pid))
        assert proc.returncode == 0 and sleeper.poll() is None
        (summary,) = lines(out, "summary")
        assert summary["ended"] == "duration" and 5 <= summary["samples"] <= 7
    finally:
        sleeper.kill()
        sleeper.wait()


def test_machine_mode_lists_top_processes(tmp_path: Path) -> None:
    proc, out = monitor_json(tmp_path, "0.2", "0.4", "--limit", "64GB")
    assert proc.returncode == 0, proc.stderr
    first = lines(out, "sample")[0]
    assert first["top"] and first["available_bytes"] > 0
    assert lines(out, "monitor")[0]["limit_source"] == "--limit"


def test_crossings_print_events_and_run_the_hook(tmp_path: Path) -> None:
    marker = tmp_path / "hook-ran"
    hook = f'{PY} -c "import pathlib; pathlib.Path({str(marker)!r}).touch()"'
    proc, out = monitor_json(
        tmp_path,
        "0.05",
        "0",
        "--limit",
        "200MB",
        "--warn",
        "0.3",
        "--critical",
        "50%",
        "--on-critical",
        hook,
        "--",
        PY,
        script(tmp_path, "g", GROWING),
    )
    assert proc.returncode == 0, proc.stderr
    printed = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert [e["event"] for e in printed][:2] == ["warning", "critical"]
    assert printed[1]["percent"] >= 50
    assert marker.exists()
    hook_events = [e for e in lines(out, "event") if e["event"] == "on-critical"]
    assert hook_events and hook_events[0]["exit_code"] == 0
    (summary,) = lines(out, "summary")
    assert summary["above_critical_s"] > 0.5
    (header,) = lines(out, "monitor")
    assert (header["warn"], header["critical"]) == (30, 50)  # 0.3 is the fraction 30%
    # the warning fired at 30% of 200 MB: not at 0.3% (the first sample) nor later than 40%
    assert 30 <= printed[0]["percent"] < 40


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["0", "10"], "INTERVAL"),
        (["1", "10", "--pid", "99999999"], "99999999"),
        (["1", "1", "--limit", "lots"], "lots"),
        (["1", "1", "--warn", "90%", "--critical", "80%"], "warn"),
        (["1", "1", "--on-critical", "no-such-program-here"], "no-such-program-here"),
        (["1", "1", "--warn", "75"], "--warn 75: a bare number is a fraction; write 75% or 0.75"),
        (["1", "1", "--critical", "90"], "--critical 90: a bare number is a fraction"),
        (["1", "1", "--critical", "120%"], "--critical 120%"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    proc = memdiag("monitor", *args)
    assert proc.returncode == 2
    assert proc.stderr.startswith("memdiag: error:") and len(proc.stderr.splitlines()) == 1
    assert message in proc.stderr


BIG = 40 * MB  # above glibc's largest mmap threshold (32 MB): freeing it returns it at once
SMALL_CYCLES = 20_000


def make_garbage() -> None:
    """Leave SMALL_CYCLES + 2 self-referencing lists, two holding BIG bytes each: garbage
    that only the cycle collector frees."""
    for _ in range(SMALL_CYCLES):
        small: list[Any] = []
        small.append(small)
    for _ in range(2):
        big: list[Any] = [bytearray(BIG)]
        big.append(big)


def critical_event(auto_gc: bool, caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    """Make garbage, then start a monitor whose limit puts this process past critical;
    return its first event (the critical crossing)."""
    events: list[dict[str, Any]] = []
    ready = threading.Event()

    def on_event(event: dict[str, Any]) -> None:
        events.append(event)
        ready.set()

    make_garbage()
    rss = MemoryMonitor(limit=1 << 40).reading()["rss"]
    # A limit just above the current RSS puts this process straight past critical.
    monitor = MemoryMonitor(
        warning=50,
        critical=60,
        interval=0.05,
        auto_gc=auto_gc,
        limit=int(rss * 1.2),
        on_event=on_event,
    )
    with caplog.at_level(logging.DEBUG, logger="memdiag.monitor"), monitor.start("job:42"):
        assert [t.name for t in threading.enumerate()].count("memdiag-monitor") == 1
        assert ready.wait(5)
    assert not any(t.name == "memdiag-monitor" for t in threading.enumerate())
    return events[0]


@pytest.fixture
def no_automatic_gc() -> Any:
    """Keep the cycle collector off so that the garbage waits for the monitor's collection."""
    import gc

    gc.collect()
    gc.disable()
    yield gc
    gc.enable()
    gc.collect()


def test_memory_monitor_logs_crossings_and_collects(
    caplog: pytest.LogCaptureFixture, no_automatic_gc: Any
) -> None:
    event = critical_event(True, caplog)
    assert event["event"] == "critical" and event["context"] == "job:42"
    # auto_gc collected the cycles left behind, and gave back the two big buffers' RSS
    expected = SMALL_CYCLES + 2
    assert expected <= event["gc_collected"] < 2 * expected
    assert 1.5 * BIG <= event["gc_freed_bytes"] < 3 * BIG
    assert no_automatic_gc.collect() < SMALL_CYCLES / 10  # nothing left for a later collection
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert critical and critical[0].percent > 60 and critical[0].heap is None  # type: ignore[attr-defined]
    assert critical[0].gc_collected == event["gc_collected"]  # type: ignore[attr-defined]
    assert any(r.levelno == logging.DEBUG and r.rss > 0 for r in caplog.records)  # type: ignore[attr-defined]


def test_memory_monitor_without_auto_gc_leaves_the_garbage(
    caplog: pytest.LogCaptureFixture, no_automatic_gc: Any
) -> None:
    event = critical_event(False, caplog)
    assert event["event"] == "critical" and "gc_collected" not in event
    assert no_automatic_gc.collect() >= SMALL_CYCLES + 2  # still there for the next collection
