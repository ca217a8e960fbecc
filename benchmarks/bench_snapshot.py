"""`memdiag snapshot`, `diff` and `leaks`: snapshot and diff of 1,000,000 objects, leaks cost."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PY = sys.executable
# 333,334 instances, each with its own str and int: 1,000,000 live objects of the job.
HOLD = """
import json, sys, time, tracemalloc
tracemalloc.start(8)
class Rec:
    def __init__(self, i):
        self.i = i + 1000
        self.name = "record-%d" % i
held = [Rec(i) for i in range(333_334)]
from memdiag.measure.python.snapshot import capture
started = time.perf_counter()
data = capture("bench")
elapsed = time.perf_counter() - started
open(sys.argv[1], "w").write(json.dumps(data))
print(elapsed)
"""
CALLS = (
    "from memdiag_plugins import player_sync\n"
    "for _ in range(6): player_sync.run(records=500, variant='fixed')"
)


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def snapshot_and_diff(repeats: int, tmp: Path) -> list[str]:
    takes, diffs = [], []
    for i in range(max(2, repeats)):
        out = subprocess.run(
            [PY, "-c", HOLD, str(tmp / f"s{i}.json")], capture_output=True, text=True, check=True
        )
        takes.append(float(out.stdout.strip()))
    from memdiag.analysis.diff import compare_snapshots
    from memdiag.model import load_snapshot

    for _ in range(repeats):
        started = time.perf_counter()
        compare_snapshots(load_snapshot(tmp / "s0.json"), load_snapshot(tmp / "s1.json"))
        diffs.append(time.perf_counter() - started)
    counted = sum(t["count"] for t in json.loads((tmp / "s0.json").read_text())["types"])
    return [
        "| 1,000,000 live objects | median | goal |",
        "| --- | ---: | --- |",
        f"| snapshot in the child (sites, {counted:,} objects by type, RSS, USS) | "
        f"{statistics.median(takes):.2f} s | ≤ 3 s |",
        f"| diff of two such snapshots (load both + compare) | "
        f"{statistics.median(diffs):.2f} s | ≤ 1 s |",
    ]


def slowdown(repeats: int, tmp: Path) -> list[str]:
    leaks = [
        PY,
        "-m",
        "memdiag",
        "leaks",
        "player-sync",
        "--param",
        "variant=fixed",
        "--param",
        "records=500",
        "--iterations",
        "6",
    ]
    cases = {
        "bare": [PY, "-c", CALLS],
        "tracemalloc": [PY, "-c", "import tracemalloc; tracemalloc.start(1)\n" + CALLS],
        "memray": [PY, "-m", "memray", "run", "-q", "-f", "-o", str(tmp / "m.bin"), "-c", CALLS],
        "leaks": leaks,
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, argv in cases.items():
            times[name].append(timed(argv))
    m = {name: statistics.median(values) for name, values in times.items()}
    rows = [
        "| player-sync fixed, 6 calls of 500 records | median wall | vs bare |",
        "| --- | ---: | ---: |",
    ]
    for name, label in (
        ("bare", "bare `python -c` (6 calls)"),
        ("tracemalloc", "tracemalloc alone over the 6 calls, 1 frame"),
        ("memray", "`memray run`"),
        ("leaks", "`memdiag leaks --iterations 6` (7 snapshots, the last call traced)"),
    ):
        rows.append(f"| {label} | {m[name]:.2f} s | {m[name] / m['bare']:.1f}x |")
    return rows


BENCH_DIR = str(Path(__file__).resolve().parent)
# Each job's 6 calls, bare and under `memray run`, as `memdiag leaks` makes them (with
# `--vary seed`, a fresh input per call).
LEAK_JOBS = {
    "record-sync at its defaults (leaky), 6 calls": (
        "from memdiag_plugins import record_sync\n"
        "for i in range(1, 7): record_sync.run(seed=1 + i)",
        ["record-sync", "--param", "seed=1", "--vary", "seed"],
    ),
    "allocation-heavy: 800,000 small dicts a call, 1% kept, 6 calls": (
        f"import sys; sys.path.insert(0, {BENCH_DIR!r}); import jobs\n"
        "for i in range(1, 7): jobs.dicts_kept(seed=i)",
        [f"{BENCH_DIR}/jobs.py:dicts_kept", "--param", "seed=0", "--vary", "seed"],
    ),
    "sync service: a set of 1.2 M strings growing by 200,000 a call, 2.4 M objects at the end, "
    "6 calls": (
        f"import sys; sys.path.insert(0, {BENCH_DIR!r}); import sync_service\n"
        "for _ in range(6): sync_service.sync(cycles=8)",
        [f"{BENCH_DIR}/sync_service.py:sync", "--param", "cycles=8"],
    ),
}


def leaks_cost(repeats: int, tmp: Path) -> list[str]:
    """`memdiag leaks --iterations 6` beside the bare calls and `memray run`, interleaved,
    on a leaking engine at its defaults and an allocation-heavy job; and what it found."""
    rows = [
        "| job | bare | `memray run` | `memdiag leaks --iterations 6` | memray vs bare "
        "| leaks vs bare |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    found, analysis = [], []
    for index, (title, (calls, target)) in enumerate(LEAK_JOBS.items()):
        kept = tmp / f"leaks-{index}"
        leaks = [PY, "-m", "memdiag", "leaks", *target, "--iterations", "6"]
        leaks += ["--json", str(tmp / "leaks.json"), "--out", str(kept)]
        memray = [PY, "-m", "memray", "run", "-q", "-f", "-o", str(tmp / "l.bin"), "-c", calls]
        cases = {"bare": [PY, "-c", calls], "memray": memray, "leaks": leaks}
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(repeats):
            for name, argv in cases.items():
                times[name].append(timed(argv))
        m = {name: statistics.median(values) for name, values in times.items()}
        rows.append(
            f"| {title} | {m['bare']:.1f} s | {m['memray']:.1f} s | {m['leaks']:.1f} s "
            f"| {m['memray'] / m['bare']:.2f}x | {m['leaks'] / m['bare']:.2f}x |"
        )
        report = json.loads((tmp / "leaks.json").read_text())
        owner = report["owners"][0] if report.get("owners") else None
        named = (
            f"`{owner['expression']}` holds {owner['share']:.0%} of the growth "
            f"({owner['retained_bytes_per_iteration'] / 2**20:.1f} MB per call)"
            if owner
            else "no owner named"
        )
        share = report.get("traced_share")
        traced = (
            "the last call traced whole"
            if share is None
            else f"the last call traced in slices ({share:.0%} of its small allocations)"
        )
        site = report["sites"][0] if report.get("sites") else None
        where = (
            f"; first site `{site['site'].rsplit('/', 1)[-1]}`, "
            f"{site['bytes_per_iteration'] / 2**20:.2f} MB per call"
            if site
            else ""
        )
        found.append(f"- {title}: {named}; {traced}{where}.")
        analysis.append(_analysis_row(title, report, kept))
    return [
        *rows,
        "",
        "What `memdiag leaks` named first:",
        "",
        *found,
        "",
        "The analysis after the last call (the evidence in the job's forked copy, memdiag "
        "reading the snapshots, the leak rule, the report: `timings`, last run), per million "
        "objects live in the last snapshot. Goal: at most 3 s per million.",
        "",
        "| job | live objects | analysis | per million | goal |",
        "| --- | ---: | ---: | ---: | --- |",
        *analysis,
    ]


def _analysis_row(title: str, report: dict[str, Any], out: Path) -> str:
    """One row: the seconds after the last call, over the millions of live objects."""
    timings = report.get("timings") or {}
    seconds = sum(timings.get(k, 0.0) for k in ("request_wait", "evidence", "analysis", "report"))
    shots = sorted(out.glob("iter-*.json"))
    live = sum(t["count"] for t in json.loads(shots[-1].read_text())["types"]) if shots else 0
    per = seconds / max(live / 1e6, 1e-9)
    verdict = "met" if per <= 3.0 else "MISSED"
    return f"| {title.split(':')[0]} | {live:,} | {seconds:.2f} s | {per:.2f} s | {verdict} |"


MIGRATE = (
    f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
    "import jobs; jobs.migrate_then_free()"
)


def peak_snapshot(repeats: int, tmp: Path) -> list[str]:
    """`memdiag snapshot` of a migration whose prefetch cache is freed before it returns,
    beside the bare job and `memray run`: its cost, and the peak's largest holder."""
    job = f"{Path(__file__).resolve().parent / 'jobs.py'}:migrate_then_free"
    cases = {
        "bare": [PY, "-c", MIGRATE],
        "snapshot": [PY, "-m", "memdiag", "snapshot", job, "--out", str(tmp / "snap")],
        "memray": [PY, "-m", "memray", "run", "-q", "-f", "-o", str(tmp / "g.bin"), "-c", MIGRATE],
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, argv in cases.items():
            times[name].append(timed(argv))
    m = {name: statistics.median(values) for name, values in times.items()}
    after = json.loads((tmp / "snap" / "after.json").read_text())
    top = after["at_peak"][0] if after["at_peak"] else None
    holder = "-"
    if top:
        site = top["site"].rsplit("/", 1)[-1]
        calls = [f"{Path(f).name}:{n}" for f, n in top["traceback"] if "memdiag_plugins" in f]
        holder = f"`{site}` ({top['size_bytes'] / 2**20:.1f} MB, via {' ← '.join(calls[-3:])})"
    rows = [
        "| migration `full`, 20,000 items, cache freed before return | median wall | vs bare |",
        "| --- | ---: | ---: |",
    ]
    for name, label in (
        ("bare", "bare `python -c`"),
        ("snapshot", "`memdiag snapshot` (before/after + at the peak)"),
        ("memray", "`memray run`"),
    ):
        rows.append(f"| {label} | {m[name]:.2f} s | {m[name] / m['bare']:.1f}x |")
    return [*rows, "", f"Largest holder at the peak: {holder}."]


def run(repeats: int) -> str:
    repeats = max(1, min(repeats, 3))
    with tempfile.TemporaryDirectory() as tmp:
        lines = ["## snapshot, diff, leaks", "", "`python benchmarks/run.py --only snapshot`", ""]
        lines += [*snapshot_and_diff(repeats, Path(tmp)), ""]
        lines += [*slowdown(repeats, Path(tmp)), ""]
        lines += [*leaks_cost(min(repeats, 2), Path(tmp)), ""]
        lines += [*peak_snapshot(repeats, Path(tmp)), ""]
    return "\n".join(lines)
