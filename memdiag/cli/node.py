"""The Node.js side of `memdiag snapshot` (a running node pid, or a node job to its end):
measure through `measure/node`, summarise, print, write the Snapshot JSON."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from memdiag.errors import MemdiagError
from memdiag.model import LeakReport, Snapshot
from memdiag.units import format_size

if TYPE_CHECKING:
    from memdiag.analysis.leaks import LeakSettings


def heapsnapshot_path(out: str | None, label: str) -> str | None:
    """Return where to keep the `.heapsnapshot`: `out` itself when it names one, else
    `out/LABEL.heapsnapshot`; None without `out`."""
    if out is None:
        return None
    return out if out.endswith(".heapsnapshot") else str(Path(out) / f"{label}.heapsnapshot")


def snapshot_pid(pid: int, out: str | None, top: int, json_path: str | None) -> int:
    """Snapshot the running node process `pid` through its inspector; print its summary."""
    from memdiag.measure.node.pidsnapshot import snapshot_node_pid

    taken = snapshot_node_pid(pid, heapsnapshot_path(out, f"pid-{pid}"), top=top)
    click.echo(
        f"heap snapshot of pid {pid}: {format_size(taken.file_bytes)} in "
        f"{taken.snapshot_s:.2f} s, RSS {format_size(taken.rss_before_bytes)} before, "
        f"{format_size(taken.rss_peak_bytes)} at most meanwhile; inspector closed"
    )
    _print(taken.snapshot, top, json_path, taken.kept)
    return 0


def snapshot_job(
    argv: list[str], out: str, top: int, json_path: str | None, at_peak: bool = False
) -> int:
    """Run the node job `argv` to its end, snapshot its heap there (near its heap's peak too
    with `at_peak`, and near V8's heap limit if it dies there); print the summary of the peak
    one with `at_peak`, else of the end one, else of the one near the limit. Exit 1 when the
    job failed (its snapshot is still summarised when it wrote one)."""
    from memdiag.measure.node.endsnapshot import run_with_end_snapshot
    from memdiag.measure.node.summary import require_node_extra, snapshot_from_heapsnapshot

    require_node_extra()
    paths = {label: heapsnapshot_path(out, label) for label in ("end", "peak", "heap-limit")}
    job = run_with_end_snapshot(
        argv,
        str(paths["end"]),
        peak_path=paths["peak"] if at_peak else None,
        near_limit_path=paths["heap-limit"],
    )
    if job.returncode != 0:
        click.echo(f"the job exited with code {job.returncode}", err=True)
    chosen, label = job.heapsnapshot, "end"
    if job.heapsnapshot is None and job.near_limit is not None:
        click.echo(
            "the job ran out of V8 heap: summarised is the snapshot V8 wrote near its heap "
            "limit, just before it died",
            err=True,
        )
        chosen, label = job.near_limit, "heap-limit"
    elif at_peak and job.peak is not None:
        live = format_size(job.peak_heap_live_bytes or 0)
        when = "the job's end" if job.peak == job.heapsnapshot else "the largest seen"
        click.echo(f"at the peak: {when}, {live} live on V8's heap", err=True)
        chosen, label = job.peak, "peak"
    if chosen is None:
        raise MemdiagError("the job ended without writing a heap snapshot", exit_code=1)
    snap = snapshot_from_heapsnapshot(str(chosen), label=label, top=top)
    snap.target = " ".join(argv)
    _print(snap, top, json_path, str(chosen))
    kept = (job.heapsnapshot, job.peak, job.near_limit)
    others = list(dict.fromkeys(str(p) for p in kept if p is not None and p != chosen))
    if others:
        click.echo(f"also kept: {', '.join(others)}")
    return 0 if job.returncode == 0 else 1


def _print(snap: Snapshot, top: int, json_path: str | None, kept: str | None) -> None:
    from memdiag.render.terminal import SnapshotRenderer

    SnapshotRenderer().heap(snap, top)
    if kept:
        click.echo(f"heapsnapshot: {kept}")
    if json_path:
        from memdiag.model import write_json_atomic

        click.echo(f"json: {write_json_atomic(json_path, snap.to_dict())}")


def leaks(
    pid: int | None,
    argv: list[str] | None,
    every: float,
    iterations: int,
    settings: LeakSettings,
    out: str | None,
) -> tuple[LeakReport, dict[str, Any]]:
    """Look for leaks in the node process `pid`, or in the node command `argv` memdiag starts
    (and stops after the series): a heap snapshot every `every` seconds through one inspector
    session. Return the report and its extra JSON fields (`partial`, `ended`, `heapsnapshots`)."""
    from memdiag.analysis.nodeleaks import node_leak_report
    from memdiag.measure.node.leakseries import node_leak_series, start_node, stop_process
    from memdiag.measure.node.summary import require_node_extra

    require_node_extra()
    proc = None
    if pid is None:
        assert argv
        proc, pid = start_node(argv)
    try:
        series = node_leak_series(pid, every, iterations, out, on_snapshot=_progress(iterations))
    finally:
        if proc is not None:
            stop_process(proc)
    if not series.snapshots:
        raise MemdiagError(series.ended or "no snapshot taken", exit_code=1)
    report = node_leak_report(series.snapshots, series.sizes, series.last, settings, series.memory)
    if argv:
        report.target = " ".join(argv)
    if series.ended:
        click.echo(f"partial: {series.ended}", err=True)
    extra = {
        "partial": series.partial or series.ended is not None,
        "ended": series.ended,
        "heapsnapshots": series.kept,
    }
    return report, extra


def _progress(iterations: int) -> Callable[[int, Snapshot], None]:
    first: list[Snapshot] = []

    def line(index: int, snap: Snapshot) -> None:
        first[:] = first or [snap]
        grown = (snap.heap_bytes or 0) - (first[0].heap_bytes or 0)
        click.echo(
            f"snapshot {index}/{iterations}: V8 heap {format_size(snap.heap_bytes or 0)} "
            f"({'+' if grown >= 0 else '-'}{format_size(abs(grown))} since the first), "
            f"{snap.heap_nodes:,} objects",
            err=True,
        )

    return line
