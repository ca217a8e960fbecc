"""The Node preload's cost on an allocation-heavy job, and what `memdiag run` adds to it."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
JOB = ["node", str(HERE / "node_alloc.js"), "20"]
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from memdiag.measure.node.inject import node_env  # noqa: E402

GOAL = 0.02
GCS: list[int] = []  # the V8 GC count of each run under memdiag


def job_times(env: dict[str, str]) -> tuple[float, float]:
    """Run the job once; return its wall and CPU seconds (the child's rusage)."""
    started = time.perf_counter()
    proc = subprocess.Popen(JOB, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    assert os.waitstatus_to_exitcode(status) == 0
    return wall, usage.ru_utime + usage.ru_stime


def memdiag_times() -> tuple[float, float]:
    """Run the job under `memdiag run`; return the Run's wall and CPU seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        subprocess.run(
            [sys.executable, "-m", "memdiag", "run", "-q", "--json", str(out), "--", *JOB],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        run = json.loads(out.read_text())
        GCS.append(int(run["v8"]["gc"]["count"]))
        return float(run["wall_s"]), float(run["cpu_s"])


def run(repeats: int) -> str:
    rounds = max(repeats, 9)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        preloaded = node_env(dict(os.environ), folder, 0.1, None)
        cases = {
            "bare `node`": lambda: job_times(dict(os.environ)),
            "with the preload (NODE_OPTIONS)": lambda: job_times(preloaded),
            "under `memdiag run`": memdiag_times,
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, case in cases.items():
                results[name].append(case())
                for path in folder.iterdir():
                    path.unlink()
    walls = {k: statistics.median(w for w, _ in v) for k, v in results.items()}
    cpus = {k: statistics.median(c for _, c in v) for k, v in results.items()}
    bare = "bare `node`"
    lines = [
        "## Node jobs: the preload",
        "",
        "An allocation-heavy Node job (`benchmarks/node_alloc.js 20`: 4 million small objects,"
        " a sliding window of 400,000 kept;"
        f" {statistics.median(GCS):.0f} GCs a run), run bare, with the preload that"
        " `memdiag run` puts in every Node process (`NODE_OPTIONS=--require"
        " memdiag/measure/node/preload.js`, sampling every 100 ms), and under `memdiag run`"
        f" (the job's own wall and CPU time from the Run). Medians of {rounds} interleaved"
        f" rounds. Goal: the preload costs under {GOAL:.0%}.",
        "",
        "```",
        "node benchmarks/node_alloc.js 20",
        'MEMDIAG_NODE_DIR=/tmp/x NODE_OPTIONS="--require $PWD/memdiag/measure/node/preload.js"'
        " node benchmarks/node_alloc.js 20",
        "memdiag run -- node benchmarks/node_alloc.js 20",
        "python benchmarks/run.py --only node --out /tmp/node.md",
        "```",
        "",
        "| job | wall s | vs bare | CPU s | vs bare |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in cases:
        lines.append(
            f"| {name} | {walls[name]:.3f} | {walls[name] / walls[bare] - 1:+.1%} "
            f"| {cpus[name]:.3f} | {cpus[name] / cpus[bare] - 1:+.1%} |"
        )
    preload = "with the preload (NODE_OPTIONS)"
    lines += [
        "",
        f"- The preload's cost in wall time: {walls[preload] / walls[bare] - 1:+.1%} (goal under "
        f"{GOAL:.0%}); in CPU time {cpus[preload] / cpus[bare] - 1:+.1%} (V8's GC threads "
        "included: on a shared machine the noisier figure).",
        "",
    ]
    return "\n".join(lines)
