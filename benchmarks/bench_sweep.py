"""`memdiag sweep`: its own overhead over the same runs done bare, and --jobs 2 against 1."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
MEMDIAG = [PY, "-m", "memdiag"]
# About 2 s per run of the bundled example engine here: short enough for a benchmark, long
# enough that per-run costs show as they would in a real sweep (whose runs take seconds).
RECORDS = 7_000_000
BATCHES = (1_000, 10_000)
REPEAT = 4
SWEEP = ["sweep", "example", "--batch", ",".join(map(str, BATCHES))]
SWEEP += ["--param", f"records={RECORDS}", "--repeat", str(REPEAT), "--quiet"]


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def bare() -> float:
    """The same runs, each a plain interpreter calling the engine: what a sweep must add to."""
    total = 0.0
    for _ in range(REPEAT):
        for batch in BATCHES:
            code = f"from memdiag_plugins.example import run; run(records={RECORDS}, batch={batch})"
            total += timed([PY, "-c", code])
    return total


def sweep(jobs: int, folder: Path) -> tuple[float, float, float]:
    """Return (whole sweep wall, rendering its report, its runs' own walls) for --jobs."""
    out = folder / f"jobs{jobs}"
    shutil.rmtree(out, ignore_errors=True)
    whole = timed([*MEMDIAG, *SWEEP, "--jobs", str(jobs), "--out", str(out)])
    render = timed([*MEMDIAG, "report", str(out / "results.json"), "--quiet"])
    runs = json.loads((out / "results.json").read_text())["runs"]
    return whole, render, sum(float(r["wall_s"]) for r in runs)


def run(repeats: int) -> str:
    keys = ("bare", "j1", "render", "jobs_in_sweep", "j2")
    results: dict[str, list[float]] = {k: [] for k in keys}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):  # interleaved rounds: the machine is shared and noisy
            results["bare"].append(bare())
            j1, render, walls = sweep(1, Path(tmp))
            results["j1"].append(j1)
            results["render"].append(render)
            results["jobs_in_sweep"].append(walls)
            results["j2"].append(sweep(2, Path(tmp))[0])
    m = {k: statistics.median(v) for k, v in results.items()}
    measuring = m["j1"] - m["render"]
    runs = len(BATCHES) * REPEAT
    per_run_ms = (measuring - m["bare"]) / runs * 1000
    return (
        "## sweep\n\n"
        f"A sweep of the bundled `example` engine, {runs} runs of about 2 s "
        f"(batch {' and '.join(map(str, BATCHES))}, records={RECORDS:,}, --repeat {REPEAT}), "
        f"against the same {runs} runs done bare (`python -c` calling the engine). Medians of "
        f"{repeats} interleaved rounds. Goal: the sweep's own overhead at most 5%.\n\n"
        "```\n"
        f"memdiag {' '.join(SWEEP)} --jobs 1 --out /tmp/b1\n"
        f"memdiag {' '.join(SWEEP)} --jobs 2 --out /tmp/b2\n"
        "memdiag report /tmp/b1/results.json --quiet\n"
        "python benchmarks/run.py --only sweep\n"
        "```\n\n"
        "| measure | wall s | vs bare |\n| --- | --- | --- |\n"
        f"| {runs} runs bare (process lifetimes) | {m['bare']:.2f} | 1.00× |\n"
        f"| the same jobs inside the sweep (their lifetimes, from results.json) | "
        f"{m['jobs_in_sweep']:.2f} | {m['jobs_in_sweep'] / m['bare']:.3f}× |\n"
        f"| sweep --jobs 1, measuring (whole − report) | {measuring:.2f} | "
        f"{measuring / m['bare']:.3f}× |\n"
        f"| sweep --jobs 1, whole (start-up, runs, report) | {m['j1']:.2f} | "
        f"{m['j1'] / m['bare']:.3f}× |\n"
        f"| report rendering (PNGs, HTML, Markdown), once per sweep | {m['render']:.2f} | |\n"
        f"| sweep --jobs 2, whole | {m['j2']:.2f} | {m['j2'] / m['bare']:.3f}× |\n\n"
        f"Per run, the sweep adds {per_run_ms:.0f} ms (the launcher, the result, the atomic "
        "save); its start-up and the report are paid once per sweep, whatever its length. "
        f"`--jobs 2` against `--jobs 1`: {m['j1'] / m['j2']:.2f}× faster on this machine "
        "(timings from parallel runs are noisier; peaks are per process).\n"
    )
