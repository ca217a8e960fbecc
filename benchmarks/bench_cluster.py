"""`memdiag sweep --cluster`: 16 runs of ~2 s locally (--jobs 1) and on 1 and 2 dask workers.

The scheduler and workers are started before the timing, as a cluster exists before a sweep
uses it (`dask scheduler` and `dask worker … --nthreads 1 --resources memdiag=1
--memory-limit 0` on 127.0.0.1, this machine's cores shared).
"""

from __future__ import annotations

import itertools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

PY = sys.executable
MEMDIAG = [PY, "-m", "memdiag"]
# About 2 s per run of the bundled example engine here (as benchmarks/bench_sweep.py).
RECORDS = 7_000_000
BATCHES = (1_000, 2_000, 5_000, 10_000)
REPEAT = 4
SWEEP = ["sweep", "example", "--batch", ",".join(map(str, BATCHES))]
SWEEP += ["--param", f"records={RECORDS}", "--repeat", str(REPEAT), "--quiet"]
WORKER = ["--nthreads", "1", "--resources", "memdiag=1", "--memory-limit", "0", "--no-dashboard"]


class Cluster:
    """A scheduler and `workers` workers on 127.0.0.1, stopped by their own pids."""

    def __init__(self, workers: int, folder: Path) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        file = folder / f"scheduler-{workers}.json"
        file.unlink(missing_ok=True)
        self.spawn("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                   "--no-dashboard", "--scheduler-file", str(file))  # fmt: skip
        deadline = time.monotonic() + 120
        while not file.exists():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the scheduler did not start")
            time.sleep(0.1)
        self.address = json.loads(file.read_text())["address"]
        for n in range(workers):
            self.spawn("distributed.cli.dask_worker", self.address, *WORKER, "--name", f"w{n}")
        self.wait_for(workers, deadline)

    def spawn(self, module: str, *args: str) -> None:
        self.procs.append(
            subprocess.Popen(
                [PY, "-m", module, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )

    def wait_for(self, workers: int, deadline: float) -> None:
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            while len(client.scheduler_info()["workers"]) < workers:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the workers did not start")
                time.sleep(0.2)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def sweep(folder: Path, name: str, extra: list[str]) -> dict[str, Any]:
    """Run one sweep; return its wall time, its runs, and the gaps between consecutive runs."""
    out = folder / name
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([*MEMDIAG, *SWEEP, *extra, "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    whole = time.perf_counter() - started
    runs = json.loads((out / "results.json").read_text())["runs"]
    return {"whole": whole, "runs": runs, "gap": _gap(runs)}


def _gap(runs: list[dict[str, Any]]) -> float:
    """Median time between one run's end and the next run's start on one machine (s): the
    sweep's own cost per run, with one run at a time."""
    spans = sorted(
        (datetime.fromisoformat(r["started_at"]).timestamp(), float(r["wall_s"])) for r in runs
    )
    gaps = [b[0] - (a[0] + a[1]) for a, b in itertools.pairwise(spans)]
    return statistics.median(gaps) if gaps else 0.0


def peaks(runs: list[dict[str, Any]]) -> dict[int, float]:
    found: dict[int, list[int]] = {}
    for run in runs:
        found.setdefault(run["params"]["batch"], []).append(run["peak_rss_bytes"])
    return {batch: statistics.median(values) for batch, values in found.items()}


def run(repeats: int) -> str:
    results: dict[str, list[dict[str, Any]]] = {"local": [], "c1": [], "c2": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clusters = {"c1": Cluster(1, folder), "c2": Cluster(2, folder)}
        try:
            for _ in range(repeats):  # interleaved rounds: the machine is shared and noisy
                results["local"].append(sweep(folder, "local", ["--jobs", "1"]))
                for key, cluster in clusters.items():
                    results[key].append(sweep(folder, key, ["--cluster", cluster.address]))
        finally:
            for cluster in clusters.values():
                cluster.stop()
    return _section(results, repeats)


def _section(results: dict[str, list[dict[str, Any]]], repeats: int) -> str:
    whole = {k: statistics.median(r["whole"] for r in v) for k, v in results.items()}
    gap = {k: statistics.median(r["gap"] for r in v) for k, v in results.items()}
    # The jobs' own lifetimes, summed: how busy the shared machine was during each sweep.
    own = {
        k: statistics.median(sum(float(run["wall_s"]) for run in r["runs"]) for r in v)
        for k, v in results.items()
    }
    runs = len(BATCHES) * REPEAT
    per_run_ms = (gap["c1"] - gap["local"]) * 1000
    amortised_ms = (whole["c1"] - whole["local"]) / runs * 1000
    local_peaks = peaks([run for r in results["local"] for run in r["runs"]])
    worst = 0.0
    for key in ("c1", "c2"):
        there = peaks([run for r in results[key] for run in r["runs"]])
        worst = max(worst, *(abs(there[b] - p) / p for b, p in local_peaks.items()))
    speedup = whole["local"] / whole["c2"]
    rows = [
        ("local `--jobs 1`", "local", ""),
        ("cluster, 1 worker", "c1", f"{whole['local'] / whole['c1']:.2f}×"),
        ("cluster, 2 workers", "c2", f"{speedup:.2f}×"),
    ]
    table = "| sweep | wall s | the jobs' own s (sum) | gap between runs ms | speed-up vs local |\n"
    table += "| --- | --- | --- | --- | --- |\n"
    for label, key, ratio in rows:
        # With 2 workers the runs overlap: a gap between runs means nothing there.
        gap_ms = "-" if key == "c2" else f"{gap[key] * 1000:.0f}"
        table += f"| {label} | {whole[key]:.2f} | {own[key]:.2f} | {gap_ms} | {ratio} |\n"
    return (
        "## cluster\n\n"
        f"A sweep of the bundled `example` engine, {runs} runs of about 2 s "
        f"(batch {', '.join(map(str, BATCHES))}, records={RECORDS:,}, --repeat {REPEAT}): "
        "locally with `--jobs 1`, and with `--cluster` on a scheduler with 1 and with 2 "
        "workers started beforehand on this machine (127.0.0.1, its cores shared). Medians of "
        f"{repeats} interleaved rounds. Goals: 2 workers at least 1.6× faster than local "
        "`--jobs 1`; a cluster run at most 150 ms slower than a local one; peaks equal "
        "within 2%.\n\n"
        "```\n"
        "dask scheduler --host 127.0.0.1 --port 8786 &\n"
        "dask worker tcp://127.0.0.1:8786 --nthreads 1 --resources memdiag=1 "
        "--memory-limit 0 &   # once or twice\n"
        f"memdiag {' '.join(SWEEP)} --jobs 1 --out /tmp/local\n"
        f"memdiag {' '.join(SWEEP)} --cluster tcp://127.0.0.1:8786 --out /tmp/cluster\n"
        "python benchmarks/run.py --only cluster\n"
        "```\n\n"
        f"{table}\n"
        f"- 2 workers against local `--jobs 1`: {speedup:.2f}× faster (goal ≥ 1.6×).\n"
        f"- Per run, a cluster run costs {per_run_ms:+.0f} ms over a local one: the median "
        "gap between one run's end and the next one's start, 1 worker against local (goal "
        f"≤ 150 ms). Counting the sweep's start-up (importing dask, connecting, the "
        f"preflight) spread over its {runs} runs: {amortised_ms:+.0f} ms per run.\n"
        "- The jobs' own time (the sum of their lifetimes) shows how busy the shared machine "
        "was: when it differs between the rows, so do their wall times, whatever memdiag "
        "does.\n"
        f"- Peaks: the largest difference of a configuration's median peak between a "
        f"cluster sweep and the local one is {worst:.2%} (goal ≤ 2%).\n"
    )
