"""Node jobs: V8's figures in the Run from the preload, heap-limit deaths, the heap-limit axis.

Real `node` processes (Node is a test dependency: .ci/run installs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from memdiag.measure.node.inject import PRELOAD
from memdiag.measure.process.runner import OOM_KINDS, kill_verdict
from memdiag.model import load_run
from memdiag.render.png import PngRenderer
from tests.conftest import MB, memdiag
from tests.plots import (
    assert_line_shows,
    assert_run_plot_shows,
    keep_figures,
    line_of,
)

JOBS = Path(__file__).with_name("node_jobs")
REFERENCE = Path(__file__).parents[1] / "plugins" / "node" / "jobs" / "import.js"
CHUNK = 5 * MB  # what keep.js retains per chunk
V8_FIXED = 48 * MB  # heap_size_limit = --max-old-space-size + the young generation's share


def run_json(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path / "run.json"
    proc = memdiag("run", "--json", str(out), "-q", *args)
    assert out.exists(), proc.stderr
    return proc, json.loads(out.read_text())


def test_retained_heap_is_the_peak_and_the_limit_is_the_given_one(tmp_path: Path) -> None:
    proc, run = run_json(
        tmp_path, "--heap-limit", "256MB", "--", "node", str(JOBS / "keep.js"), "40"
    )
    assert proc.returncode == 0, proc.stderr
    v8 = run["v8"]
    assert run["status"] == "ok" and "oom_kind" not in run
    assert abs(v8["peak_heap_used_bytes"] - 40 * CHUNK) <= 0.05 * 40 * CHUNK
    assert run["peak_heap_bytes"] == v8["peak_heap_used_bytes"] and run["heap_source"] == "v8"
    assert v8["heap_limit_bytes"] == 256 * MB + V8_FIXED
    assert run["params"] == {"heap_limit": 256 * MB}
    assert v8["gc"]["count"] > 0 and v8["gc"]["pause_s"] > 0
    assert sum(k["count"] for k in v8["gc"]["by_kind"].values()) == v8["gc"]["count"]
    [main] = v8["processes"]
    assert main["kind"] == "main" and main["end"] == "exited" and main["at_death"] is None
    # The timeline carries V8's heap used, total and external beside the RSS.
    rows = [row for row in run["timeline"] if len(row) == 6 and row[2]]
    assert rows and max(row[2] for row in rows) <= v8["peak_heap_used_bytes"]
    assert all(row[4] >= row[2] for row in rows)  # heap total holds heap used
    # `memdiag report` re-renders the saved Run with its V8 figures.
    shown = memdiag("report", str(tmp_path / "run.json"))
    assert shown.returncode == 0, shown.stderr
    assert "V8 heap" in shown.stdout and "of its limit 304.0 MB" in shown.stdout


def test_below_its_need_the_job_dies_at_the_heap_limit(tmp_path: Path) -> None:
    proc, run = run_json(
        tmp_path, "--heap-limit", "128MB", "--", "node", str(JOBS / "keep.js"), "40"
    )
    assert proc.returncode == 1
    assert run["status"] == "oom" and run["oom_kind"] == "heap-limit"
    assert run["error"]["type"] == "HeapLimit"
    death = run["v8"]["at_death"]
    assert death["heap_limit_bytes"] == 128 * MB + V8_FIXED
    # It died filling the heap: at least 3/4 of the old generation's 128 MB was in use.
    assert 96 * MB <= death["heap_used_bytes"] <= death["heap_limit_bytes"]
    assert run["v8"]["processes"][0]["end"] == "heap-limit"
    assert "JavaScript heap out of memory" in proc.stderr  # V8's own words, left alone


def test_buffers_are_external_memory_not_heap(tmp_path: Path) -> None:
    proc, run = run_json(tmp_path, "--", "node", str(JOBS / "buffers.js"), "50")
    assert proc.returncode == 0, proc.stderr
    v8 = run["v8"]
    assert v8["peak_external_bytes"] >= 50 * 4 * MB
    assert v8["peak_array_buffers_bytes"] >= 50 * 4 * MB
    assert v8["peak_heap_used_bytes"] < 20 * MB
    assert run["peak_rss_bytes"] >= 50 * 4 * MB


def test_a_worker_and_a_forked_child_are_each_reported(tmp_path: Path) -> None:
    proc, run = run_json(tmp_path, "--", "node", str(JOBS / "tree.js"))
    assert proc.returncode == 0, proc.stderr
    procs = {p["kind"]: p for p in run["v8"]["processes"]}
    assert sorted(procs) == ["child", "main", "worker"]
    for kind, retained in (("main", 2 * CHUNK), ("worker", 12 * CHUNK), ("child", 24 * CHUNK)):
        assert procs[kind]["end"] == "exited"
        assert retained <= procs[kind]["peak_heap_used_bytes"] <= retained + 12 * MB, kind
    assert procs["worker"]["pid"] == procs["main"]["pid"] and procs["worker"]["thread"] > 0
    assert procs["child"]["ppid"] == procs["main"]["pid"]
    # The run's figures are those of the process whose heap peaked highest.
    assert run["v8"]["peak_heap_used_bytes"] == procs["child"]["peak_heap_used_bytes"]


def test_the_job_keeps_its_stdout_and_exit_code(tmp_path: Path) -> None:
    job = ["node", str(JOBS / "keep.js"), "2", "3"]
    bare = subprocess.run(job, capture_output=True, text=True)
    out = tmp_path / "run.json"
    measured = memdiag("run", "--json", str(out), "-q", "--", *job)
    run = json.loads(out.read_text())
    assert bare.returncode == 3 and run["exit_code"] == 3 and run["status"] == "error"
    assert measured.stdout == bare.stdout == "kept 2 chunks\n"
    assert "v8" in run


def test_a_command_that_is_not_node_runs_as_before(tmp_path: Path) -> None:
    job = [sys.executable, "-c", "import sys; print('rows: 3'); sys.exit(4)"]
    bare = subprocess.run(job, capture_output=True, text=True)
    proc, run = run_json(tmp_path, "--", *job)
    assert proc.stdout == bare.stdout == "rows: 3\n"
    assert run["status"] == "error" and run["exit_code"] == 4
    assert "v8" not in run and "oom_kind" not in run and run["heap_source"] is None
    assert all(len(row) == 4 for row in run["timeline"])


def test_the_preload_alone_changes_nothing_the_job_prints(tmp_path: Path) -> None:
    job = ["node", str(JOBS / "tree.js")]
    env = {**os.environ, "MEMDIAG_NODE_DIR": str(tmp_path), "NODE_OPTIONS": f"--require {PRELOAD}"}
    bare = subprocess.run(job, capture_output=True, text=True)
    preloaded = subprocess.run(job, capture_output=True, text=True, env=env)
    assert (preloaded.returncode, preloaded.stdout, preloaded.stderr) == (
        bare.returncode,
        bare.stdout,
        bare.stderr,
    )
    assert len(list(tmp_path.glob("*.jsonl"))) == 3  # main, worker, child


def brute_force_choice(runs: list[dict[str, Any]], allowed: float) -> dict[str, Any] | None:
    """The matrix's rule over single runs, written out: among the runs that ended ok with
    their peak within `allowed`, the quickest; any within 5% of its wall time is a tie, won
    by the lowest peak."""
    fitting = [r for r in runs if r["status"] == "ok" and r["peak_rss_bytes"] <= allowed]
    if not fitting:
        return None
    quickest = min(r["wall_s"] for r in fitting)
    tied = [r for r in fitting if r["wall_s"] - quickest < 0.05 * max(r["wall_s"], quickest)]
    chosen: dict[str, Any] = min(tied, key=lambda r: (r["peak_rss_bytes"], r["wall_s"]))
    return dict(chosen["params"])


def test_a_sweep_over_batch_and_heap_limit_chooses_as_brute_force_would(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    budgets = (200 * MB, 1024 * MB)
    proc = memdiag(
        "sweep", "--batch", "10,30", "--heap-limit", "96MB,256MB", "--repeat", "1",
        "--budget", ",".join(f"{b // MB}MB" for b in budgets), "--out", str(out), "-q",
        "--", "node", str(JOBS / "batches.js"), "--batch", "{batch}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    sweep = json.loads((out / "results.json").read_text())
    assert sweep["axes"] == {"batch": [10, 30], "heap_limit": [96 * MB, 256 * MB]}
    runs = {(r["params"]["batch"], r["params"]["heap_limit"] // MB): r for r in sweep["runs"]}
    # 30 x 5 MiB of batch does not fit a 96 MB old generation: a death at the heap limit.
    assert runs[30, 96]["status"] == "oom" and runs[30, 96]["oom_kind"] == "heap-limit"
    assert all(r["status"] == "ok" for key, r in runs.items() if key != (30, 96))
    for row in sweep["matrix"]:
        expected = brute_force_choice(sweep["runs"], row["headroom"] * row["budget_bytes"])
        assert expected is not None
        assert row["config"]["params"] == expected, row
        assert row["gc_share"] is not None
    # The larger budget takes the larger batch, at the heap limit it fits in.
    assert sweep["matrix"][-1]["config"]["params"] == {"batch": 30, "heap_limit": 256 * MB}
    assert all(c["gc_share"] is not None for c in sweep["configs"])
    report = (out / "report.md").read_text()
    assert "| heap limit |" in report.replace("heap limit | GC time", "heap limit |")
    assert "256MB" in report


def test_the_timeline_plot_draws_the_heap_against_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    out, png = tmp_path / "run.json", tmp_path / "run.png"
    job = ["node", str(JOBS / "keep.js"), "30"]
    proc = memdiag(
        "run", "-q", "--heap-limit", "256MB", "--json", str(out), "--plot", str(png), "--", *job
    )
    assert proc.returncode == 0, proc.stderr
    assert_run_plot_shows(png, out, monkeypatch, request)
    figures = keep_figures(monkeypatch, request)
    run = load_run(out)
    assert run.v8 is not None
    again = PngRenderer().timeline(run, tmp_path / "again.png")
    fig = figures[-1]
    heap = [(s.t_s, s.heap_bytes / MB) for s in run.timeline if s.heap_bytes is not None]
    assert len(heap) >= 3
    xs, ys = [t for t, _ in heap], [h for _, h in heap]
    assert_line_shows(again, fig, "V8 heap used", xs, ys, min_height=0.1)
    ax, limit = line_of(fig, "V8 heap limit")
    assert list(limit.get_ydata()) == [run.v8.heap_limit_bytes / MB] * 2
    # In view, above every curve: the heap used can be read against it.
    _, high = ax.get_ylim()
    assert max(ys) < run.v8.heap_limit_bytes / MB < high


NODE_E = ["--", "node", "-e", ""]
BAD_HEAP_LIMITS = [
    (["run", "--heap-limit", "100KB", *NODE_E], "not a whole number of MB"),
    (["run", "--heap-limit", "1.3MB", *NODE_E], "not a whole number of MB"),
    (["run", "--heap-limit", "128MB", f"{JOBS.parent / 'jobs.py'}:empty"], "Node jobs"),
    (["sweep", "--heap-limit", "96MB,96MB", *NODE_E], "listed twice"),
    (["sweep", "--heap-limit", "96MB,,128MB", *NODE_E], "empty value"),
    (["sweep", "--heap-limit", "96MB,128MB", "--param", "heap_limit=1", *NODE_E], "given twice"),
]


@pytest.mark.parametrize(("args", "message"), BAD_HEAP_LIMITS)
def test_a_bad_heap_limit_is_one_line_and_exit_code_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    proc = memdiag(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_oom_kind_of_memdiags_limit_and_of_the_kernel(tmp_path: Path) -> None:
    _, run = run_json(tmp_path, f"{JOBS.parent / 'jobs.py'}:grow", "--limit", "100MB")
    assert run["status"] == "oom" and run["oom_kind"] == "limit"
    status, error = kill_verdict(
        9, 150 * MB, None, {"/proc/vmstat oom_kill": 4}, {"/proc/vmstat oom_kill": 5}
    )
    assert status == "oom" and OOM_KINDS[error.type] == "kernel"


def test_the_reference_job_accumulates_in_one_variant_and_streams_in_the_other(
    tmp_path: Path,
) -> None:
    job = ["node", str(REFERENCE), "--batch", "50", "--records", "5000"]
    heaps = {}
    for variant in ("accumulate", "stream"):
        proc, run = run_json(tmp_path, "--", *job, "--variant", variant)
        assert run["status"] == "ok", proc.stderr
        assert run["records"] == 5000 and run["records_per_s"] > 0
        heaps[variant] = run["v8"]["peak_heap_used_bytes"]
    # 5,000 records of about 14 KB each, all held by accumulate; stream holds one page (and
    # what V8 has not collected yet: about 25 MB at the default heap limit).
    assert heaps["accumulate"] >= 60 * MB
    assert heaps["stream"] * 2 < heaps["accumulate"]


def test_a_spike_between_two_samples_is_the_peak(tmp_path: Path) -> None:
    proc, run = run_json(tmp_path, "--", "node", "--expose-gc", str(JOBS / "spike.js"), "30")
    assert run["status"] == "ok", proc.stderr
    # The samples only ever see the heap after the collection: the heap before it (from the
    # GC profiler) is the peak.
    sampled = max(row[2] for row in run["timeline"] if row[2] is not None)
    assert sampled < 20 * MB
    assert abs(run["v8"]["peak_heap_used_bytes"] - 30 * CHUNK) <= 0.05 * 30 * CHUNK
