"""`memdiag leaks` shows a line per iteration and stops cleanly on Ctrl-C (real children)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

JOB = """
import time

KEPT = []


def run(records: int = 200) -> int:
    KEPT.append(["row %d " % i + "x" * 500 for i in range(records)])
    time.sleep(0.5)
    return records
"""


def test_progress_lines_then_ctrl_c_reports_a_partial_series(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(JOB)
    out = tmp_path / "leaks.json"
    argv = ["leaks", "slow.py:run", "--iterations", "40", "--json", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "memdiag", *argv],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("iteration 5/40"):
                proc.send_signal(signal.SIGINT)  # one Ctrl-C, as a terminal sends it
                break
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    lines += stderr.splitlines()
    progress = [line for line in lines if re.match(r"iteration [1-9]\d*/40 ", line)]
    assert re.search(
        r"ETA \d+\.\d s \+ the last call's tracing +growth so far: RSS [+-]?[\d.]+ [KM]?B",
        progress[0],
    )
    assert re.search(r"Python heap \+[\d.]+ [KM]B", progress[-1])
    report = json.loads(out.read_text())
    assert report["partial"] is True
    # Stopped after the iteration running at Ctrl-C: none of the 34 after it ran.
    assert 6 <= report["snapshots"] <= 8, report["snapshots"]
    assert report["status"] == "ok" and report["error"] is None
    assert report["found"] is True  # 5 calls after warm-up, each keeping its rows
    assert "PARTIAL" in stdout
    assert proc.returncode == 1
