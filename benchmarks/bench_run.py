"""`memdiag run`: overhead, accuracy of the peak, start-up, floor and heap tracking cost."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
JOBS = str(HERE / "jobs.py")
PY = sys.executable
MEMDIAG = [PY, "-m", "memdiag"]
MB = 1024 * 1024


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def run_json(args: list[str]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        subprocess.run([*MEMDIAG, "run", "-q", "--json", str(out), *args], check=False)
        data: dict[str, object] = json.loads(out.read_text())
        return data


def interleave(repeats: int, cases: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Run every case once per round, rounds repeated; return each case's median."""
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, case in cases.items():
            results[name].append(case())
    return {name: statistics.median(values) for name, values in results.items()}


def bare(call: str) -> list[str]:
    return [PY, "-c", f"import sys; sys.path.insert(0, {str(HERE)!r}); import jobs; jobs.{call}"]


def timed_run(args: list[str], job_walls: list[float]) -> float:
    """Time `memdiag run` end to end; append the job's own wall time (from the Run)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        elapsed = timed([*MEMDIAG, "run", "-q", "--json", str(out), *args])
        job_walls.append(float(json.loads(out.read_text())["wall_s"]))
    return elapsed


def overhead(repeats: int) -> list[str]:
    walls: dict[str, list[float]] = {"run": [], "run_heap": []}
    m = interleave(
        repeats,
        {
            "bare": lambda: timed(bare("busy(3.0)")),
            "run": lambda: timed_run([f"{JOBS}:busy"], walls["run"]),
            "run_heap": lambda: timed_run(["--heap", f"{JOBS}:busy"], walls["run_heap"]),
        },
    )
    job = {name: statistics.median(values) for name, values in walls.items()}

    def pct(value: float) -> str:
        return f"{(value / m['bare'] - 1) * 100:+.1f}%"

    return [
        "| 3 s CPU-bound job | median wall | vs bare | goal |",
        "| --- | ---: | ---: | --- |",
        f"| bare `python -c 'jobs.busy(3.0)'` (process lifetime) | {m['bare']:.3f} s | | |",
        f"| the job under `memdiag run` (its lifetime, from the Run) | {job['run']:.3f} s | "
        f"{pct(job['run'])} | ≤ 3% |",
        f"| `memdiag run -q jobs.py:busy`, end to end | {m['run']:.3f} s | {pct(m['run'])} | |",
        f"| the job under `memdiag run --heap` | {job['run_heap']:.3f} s | "
        f"{pct(job['run_heap'])} | |",
        f"| `memdiag run -q --heap jobs.py:busy`, end to end | {m['run_heap']:.3f} s | "
        f"{pct(m['run_heap'])} | |",
        "",
        "End to end includes memdiag's own fixed start-up and tear-down (the interpreter, "
        "click and psutil, the launcher, writing the result: about 0.1 s whatever the job), "
        "which does not grow with the job.",
    ]


def accuracy() -> list[str]:
    rows = [
        "| job | memdiag peak | `/usr/bin/time -v` max RSS | difference |",
        "| --- | ---: | ---: | ---: |",
    ]
    gnu_time = shutil.which("time") or "/usr/bin/time"
    for call, args in (
        ("hold(200)", ["--param", "mb=200", f"{JOBS}:hold"]),
        ("busy(1.0)", ["--param", "seconds=1.0", f"{JOBS}:busy"]),
    ):
        ours = int(run_json(args)["peak_rss_bytes"])  # type: ignore[call-overload]
        proc = subprocess.run([gnu_time, "-v", *bare(call)], capture_output=True, text=True)
        line = next(x for x in proc.stderr.splitlines() if "Maximum resident" in x)
        theirs = int(line.split(":")[1]) * 1024
        rows.append(
            f"| `{call}` | {ours / MB:.1f} MB | {theirs / MB:.1f} MB | "
            f"{(ours - theirs) / MB:+.1f} MB |"
        )
    return rows


def startup(repeats: int) -> list[str]:
    m = interleave(
        repeats * 2,
        {
            "python": lambda: timed([PY, "-c", "pass"]),
            "help": lambda: timed([*MEMDIAG, "--help"]),
        },
    )
    floor = interleave(
        repeats,
        {
            "empty": lambda: float(run_json(["--", PY, "-c", "pass"])["peak_rss_bytes"]),  # type: ignore[arg-type]
        },
    )
    proc = subprocess.run(
        [shutil.which("time") or "/usr/bin/time", "-f", "%M", PY, "-c", "pass"],
        capture_output=True,
        text=True,
    )
    bare_peak = int(proc.stderr.strip().splitlines()[-1]) * 1024
    return [
        "| start-up and floor | memdiag | bare Python | difference | goal |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| `memdiag --help` vs `python -c pass` (wall) | {m['help'] * 1000:.0f} ms | "
        f"{m['python'] * 1000:.0f} ms | {(m['help'] - m['python']) * 1000:+.0f} ms | ≤ +250 ms |",
        f"| peak of `memdiag run -- python -c pass` vs `/usr/bin/time` | "
        f"{floor['empty'] / MB:.1f} MB | {bare_peak / MB:.1f} MB | "
        f"{(floor['empty'] - bare_peak) / MB:+.1f} MB | within 5 MB |",
    ]


def heap_cost(repeats: int) -> list[str]:
    def wall(args: list[str]) -> Callable[[], float]:
        return lambda: float(run_json(args)["wall_s"])  # type: ignore[arg-type]

    m = interleave(
        repeats,
        {
            "none": wall([f"{JOBS}:dicts"]),
            "memray": wall(["--heap", f"{JOBS}:dicts"]),
            "tm1": wall([f"{JOBS}:dicts_tracemalloc"]),
            "tm25": wall(["--param", "frames=25", f"{JOBS}:dicts_tracemalloc"]),
        },
    )
    base = m["none"]
    return [
        "| allocation-heavy job (10 × 200k small dicts), job wall | median | × bare | goal |",
        "| --- | ---: | ---: | --- |",
        f"| no heap tracking | {base:.2f} s | 1.00 | |",
        f"| `--heap` (memray, aggregated capture) | {m['memray']:.2f} s | "
        f"{m['memray'] / base:.2f} | ≤ 1.5 |",
        f"| tracemalloc, 1 frame (reference) | {m['tm1']:.2f} s | {m['tm1'] / base:.2f} | |",
        f"| tracemalloc, 25 frames (reference) | {m['tm25']:.2f} s | {m['tm25'] / base:.2f} | |",
    ]


def run(repeats: int) -> str:
    lines = [
        "## memdiag run",
        "",
        "Reproduce: `python benchmarks/run.py --only run --repeats N` "
        "(jobs in `benchmarks/jobs.py`).",
        "",
        *overhead(repeats),
        "",
        *accuracy(),
        "",
        *startup(repeats),
        "",
        *heap_cost(repeats),
        "",
    ]
    return "\n".join(lines)
