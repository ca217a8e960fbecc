"""What was live at the heap's peak: `memdiag snapshot` and `memdiag run --heap` on a job
that frees its cache before it returns (real children, memray's high-water-mark records)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import MB, line_in, memdiag

JOB = """
KEPT = []


def _prefetch(items):
    return {i: "p" * 1000 + str(i) for i in range(items)}  # CACHE


def migrate(items: int = 60_000) -> int:
    cache = _prefetch(items)
    done = sum(1 for i in range(items) if i in cache)
    KEPT.append(bytearray(1024 * 1024))  # KEPT
    del cache
    return done
"""


def line_of(text: str) -> int:
    return line_in(JOB, text)


def test_snapshot_names_the_freed_cache_as_the_peak_holder(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(JOB)
    proc = memdiag("snapshot", "job.py:migrate", "--out", "snap", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = json.loads((tmp_path / "snap" / "after.json").read_text())
    cache = f"job.py:{line_of('# CACHE')}"
    top = after["at_peak"][0]
    assert top["site"].endswith("/" + cache), after["at_peak"][:2]
    # 60,000 strings of 1 KB: at least 55 MB at the peak, and the cache's share of it.
    assert top["size_bytes"] >= 55 * MB
    assert after["peak_heap_bytes"] >= top["size_bytes"]
    assert top["size_bytes"] >= 0.8 * after["peak_heap_bytes"]
    # Freed before the call returned: what the call still holds is far below the peak.
    assert after["heap_bytes"] < after["peak_heap_bytes"] / 4
    kept = {
        s["traceback"][-1][1] for s in after["sites"] if s["traceback"][-1][0].endswith("job.py")
    }
    assert line_of("# KEPT") in kept
    assert "live at the peak" in proc.stdout and cache in proc.stdout
    # The capture, read while the child exits, and its marker are gone: only the snapshots.
    assert sorted(p.name for p in (tmp_path / "snap").iterdir()) == ["after.json", "before.json"]


def test_run_heap_shows_the_same_peak_table(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(JOB)
    proc = memdiag("run", "job.py:migrate", "--heap", "--json", "run.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads((tmp_path / "run.json").read_text())
    cache = f"job.py:{line_of('# CACHE')}"
    assert run["at_peak"][0]["site"].endswith("/" + cache)
    assert run["at_peak"][0]["size_bytes"] >= 55 * MB
    assert "live at the peak" in proc.stdout and cache in proc.stdout


def test_snapshot_of_a_failing_job_still_shows_its_peak(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(
        "def run(items: int = 50_000) -> int:\n"
        "    cache = {i: 'q' * 1000 + str(i) for i in range(items)}\n"
        "    raise RuntimeError(f'lost the connection after {len(cache)} items')\n"
    )
    proc = memdiag("snapshot", "job.py:run", "--out", "snap", cwd=tmp_path)
    assert proc.returncode == 1
    assert "RuntimeError: lost the connection after 50000 items" in proc.stderr
    assert not (tmp_path / "snap" / "after.json").exists()
    table = proc.stdout[proc.stdout.index("live at the peak") :]
    first = re.search(r"┡[^\n]*\n│(\S+)\s*│\s*([\d.]+) MB", table)  # the first row
    assert first and first.group(1) == "job.py:2" and float(first.group(2)) >= 45, table
