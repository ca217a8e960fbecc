"""`memdiag monitor`: the monitor's own RSS and CPU while it follows a process.

The monitor is measured from outside with psutil, after its start-up (imports are a one-off
cost, not a per-sample one): CPU is the change in its user + system time over a steady
window, divided by the window; RSS is the largest value seen in that window.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

PY = sys.executable
MB = 1024 * 1024
WARMUP_S = 3.0
# A target with a child, holding 100 MB: the tree is refreshed and USS read as in real use.
TARGET = (
    "import subprocess, sys, time; x = bytearray(100 * 1024 * 1024); x[::4096] = b'1' * 25600; "
    "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
    "time.sleep(600)"
)


def measure(interval: float, window_s: float, live: bool) -> tuple[float, float]:
    """Return (CPU % of one core, peak RSS bytes) of one monitor over a steady window."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [PY, "-m", "memdiag", "monitor", str(interval), "0", "--out", f"{tmp}/s.jsonl"]
        argv += ["--", PY, "-c", TARGET]
        if live:
            # `script` gives the monitor a terminal, so the rich live view is drawn.
            argv = ["script", "-qefc", subprocess.list2cmdline(argv), "/dev/null"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            monitor = _monitor_process(proc.pid, live)
            time.sleep(WARMUP_S)
            before, started = monitor.cpu_times(), time.monotonic()
            peak = 0
            while time.monotonic() - started < window_s:
                peak = max(peak, monitor.memory_info().rss)
                time.sleep(0.2)
            after, ended = monitor.cpu_times(), time.monotonic()
        finally:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.terminate()
            proc.terminate()
            proc.wait(30)
    cpu = (after.user + after.system) - (before.user + before.system)
    return 100 * cpu / (ended - started), float(peak)


def _monitor_process(pid: int, live: bool) -> psutil.Process:
    root = psutil.Process(pid)
    if not live:
        return root
    for _ in range(100):
        found = [p for p in root.children(recursive=True) if "memdiag" in " ".join(p.cmdline())]
        if found:
            return found[0]
        time.sleep(0.05)
    raise RuntimeError("the monitor did not start under script")


def run(repeats: int) -> str:
    rounds = max(1, min(repeats, 3))
    cases = [("1 s", 1.0, 20.0, False, "< 1%"), ("0.1 s", 0.1, 10.0, False, "< 3%")]
    if shutil.which("script"):
        cases.append(("0.1 s, live view", 0.1, 10.0, True, "< 3%"))
    rows = [
        "| interval | CPU, % of one core (median) | own RSS (median of peaks) | goals |",
        "| --- | ---: | ---: | --- |",
    ]
    for label, interval, window, live, goal in cases:
        results = [measure(interval, window, live) for _ in range(rounds)]
        cpu = statistics.median(r[0] for r in results)
        rss = statistics.median(r[1] for r in results)
        rows.append(f"| {label} | {cpu:.2f}% | {rss / MB:.1f} MB | CPU {goal}, RSS ≤ 40 MB |")
    return "\n".join(
        [
            "## memdiag monitor",
            "",
            "Reproduce: `python benchmarks/run.py --only monitor --repeats N`, or by hand: "
            "`memdiag monitor 0.1 0 --out /tmp/s.jsonl -- python -c 'import time; "
            "time.sleep(600)'` and `ps -o rss,time -p PID` on the monitor. The target holds "
            f"100 MB and has one child; {rounds} rounds, after {WARMUP_S:.0f} s of start-up; "
            "output to a pipe (plain lines) unless noted.",
            "",
            *rows,
            "",
        ]
    )
