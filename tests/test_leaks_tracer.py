"""The traced last call of `memdiag leaks` and its tracer (`memdiag.measure.python.untraced`), in
a subprocess each: a crash of the tracer must show as a dead interpreter, not a failed test."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def python(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )


def test_a_traced_call_that_raises_in_slices_leaves_tracemalloc_stoppable(tmp_path: Path) -> None:
    """The last call raises after tracing went to slices: the slicing thread is stopped and
    joined before tracemalloc stops, so the process lives on (it used to die of SIGSEGV
    when the thread put tracemalloc's hooks back), and the job's own error comes out."""
    proc = python(
        tmp_path,
        f"""
        import time, tracemalloc
        from memdiag.measure.python import tracked as child_tracked

        calls = [0]

        def job():
            calls[0] += 1
            if calls[0] < 2:
                return 0
            kept, ends = [], time.perf_counter() + 1.0  # past the 0.5 s traced whole
            while time.perf_counter() < ends:
                kept.append([str(i) for i in range(100)])
            raise ValueError("bad record 7")

        spec = {{"out": {str(tmp_path)!r}, "iterations": 2, "target": "job", "params": {{}},
                 "request_wait_s": 0}}
        try:
            child_tracked.run_leaks(job, spec)
        except ValueError as exc:
            print("raised:", exc)
        tracemalloc.stop()  # as run_tracked does after the mode returns
        ends = time.perf_counter() + 0.5
        while time.perf_counter() < ends:
            junk = [str(i) for i in range(1000)]
        print("alive")
        """,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.split("\n")[:2] == ["raised: bad record 7", "alive"], proc.stdout
    assert (tmp_path / "iter-001.json").exists()
    assert not (tmp_path / "iter-002.json").exists()  # the failed call has no snapshot
    assert (tmp_path / "evidence.json").exists()
