"""memdiag snapshot: before/after snapshots of one run (and their diff), or a process view.

\b
TARGET runs once in a fresh child, the call under memray's aggregated capture (about
1.1-1.4x). Snapshots (JSON) are written to --out: before.json and after.json. Each holds
RSS, USS, live objects by type, GC counts, time and phase; after.json also the sites the
call allocated and still held, by the job's own line with --frames frames of traceback,
and `at_peak`: what was live at the heap's high-water mark, even if freed before the
call returned. The diff after - before and the peak table are printed (`memdiag diff`
compares any two snapshots). --at-phase adds a snapshot per memdiag.probe phase boundary,
with tracemalloc on for the whole call (5-30x slower). --memray also writes a flame graph
(HTML) of the allocations alive at the high-water mark.

\b
--pid PID: a running CPython process is snapshotted from inside, through its cooperative
agent (memdiag.agent.install()), sys.remote_exec on 3.14, or with --inject through gdb
(the process stops about a second): live objects by type, GC counts, RSS/USS, and the
module globals that retain the most, written as code; --trace SECONDS also runs
tracemalloc there for SECONDS and lists the sites of what that window allocated and still
holds. Any other process gets a process-level view with its descendants: RSS, USS, PSS,
swap, and resident memory split into heap, anonymous and file-backed, from /proc.

\b
Node.js: `-- node job.js` runs the job to its end and takes a V8 heap snapshot there (with
--at-peak, also near the heap's high-water mark, and that one is summarised; a job that dies
at V8's heap limit is summarised from the snapshot V8 writes near it); --pid of a node
process opens its inspector (SIGUSR1, on 127.0.0.1), streams a heap snapshot to disk and
closes the inspector again. Printed: objects by constructor with retained size, the largest
retainers with their paths as JavaScript. The process pauses while V8 writes (see
docs/node.md). The .heapsnapshot is kept with --out FILE.heapsnapshot (or in --out DIR);
--json writes the summary.

\b
Examples:
  memdiag snapshot player-sync --param records=2000 --out reports/snap
  memdiag snapshot import --at-phase --frames 12 --memray
  memdiag snapshot --pid 4242 --json reports/proc.json
  memdiag snapshot --pid 5151 --out reports/service.heapsnapshot --json reports/service.json
  memdiag snapshot --out reports/job -- node job.js
  memdiag snapshot --at-peak --out reports/job -- node job.js
  memdiag snapshot --pid 4242 --trace 10
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import click

from memdiag.cli.common import (
    TargetCommand,
    collect_params,
    external_command,
    positive,
    target_options,
)
from memdiag.errors import MemdiagError
from memdiag.measure.node.endsnapshot import is_node_command
from memdiag.measure.node.inspector import is_node_executable
from memdiag.model import Snapshot


@click.command("snapshot", cls=TargetCommand, help=__doc__)
@target_options
@click.option("--pid", type=int, default=None, help="View a running process instead.")
@click.option(
    "--inject",
    is_flag=True,
    help="With --pid: go into a CPython process with no agent through gdb (it stops ~1 s).",
)
@click.option(
    "--trace",
    type=float,
    default=None,
    metavar="SECONDS",
    help="With --pid: tracemalloc in the process for SECONDS (sites of what stays).",
)
@click.option("--out", "out_dir", default="reports/snapshot", show_default=True, metavar="DIR")
@click.option(
    "--frames",
    type=click.IntRange(1, 100),
    default=8,
    show_default=True,
    help="Traceback frames kept per allocation site.",
)
@click.option("--at-phase", is_flag=True, help="Also snapshot at each probe phase boundary.")
@click.option(
    "--at-peak",
    is_flag=True,
    help="Node job: summarise a heap snapshot taken near the V8 heap's peak (kept as "
    "peak.heapsnapshot), not the one at its end.",
)
@click.option("--memray", is_flag=True, help="Also write a memray flame graph of the peak.")
@click.option("--native", is_flag=True, help="With --memray: native frames too.")
@click.option(
    "--top",
    type=click.IntRange(1),
    default=15,
    show_default=True,
    help="Sites and types shown in the diff.",
)
@click.option(
    "--json",
    "json_path",
    default=None,
    metavar="PATH",
    help="With --pid or a node job: write the snapshot JSON file.",
)
@click.pass_context
def command(
    ctx: click.Context,
    target: str | None,
    params: tuple[str, ...],
    batch: str | None,
    concurrency: str | None,
    pid: int | None,
    trace: float | None,
    inject: bool,
    out_dir: str,
    frames: int,
    at_phase: bool,
    at_peak: bool,
    memray: bool,
    native: bool,
    top: int,
    json_path: str | None,
) -> int:
    from memdiag.render.terminal import SnapshotRenderer

    renderer = SnapshotRenderer()
    if pid is not None:
        if target or external_command(ctx):
            raise MemdiagError("give either TARGET or --pid, not both")
        if at_peak:
            raise MemdiagError(
                "--at-peak is for a node job memdiag starts (-- node job.js): a running "
                "process is snapshotted as it is now"
            )
        keep = out_dir if _given(ctx, "out_dir") else None
        if is_node_executable(pid) or (keep or "").endswith(".heapsnapshot"):
            from memdiag.cli.node import snapshot_pid

            return snapshot_pid(pid, keep, top, json_path)
        from memdiag.measure.attach.gdb import GdbCannotCall
        from memdiag.measure.attach.series import pid_snapshot

        # The tree as /proc shows it, read before memdiag's agent adds anything to it; a
        # CPython process adds what is inside it (types, owners, GC) to the same Snapshot.
        view = process_snapshot(pid)
        try:
            inside = pid_snapshot(pid, positive("--trace", trace), frames, inject)
        except GdbCannotCall as refused:  # the /proc view is still worth having
            click.echo(f"the /proc view only: {refused}", err=True)
            inside = None
        if inside is None and view.processes and _runs_python(pid) and not inject:
            click.echo(
                "the /proc view only: add --inject to look inside this Python process "
                "through gdb, or run memdiag.agent.install() in it (docs/leaks.md)",
                err=True,
            )
        snap = (
            view
            if inside is None
            else dataclasses.replace(
                inside,
                rss_bytes=view.rss_bytes,
                uss_bytes=view.uss_bytes,
                pss_bytes=view.pss_bytes,
                swap_bytes=view.swap_bytes,
                regions=view.regions,
                processes=view.processes,
            )
        )
        renderer.snapshot(snap, top)
        if json_path:
            from memdiag.model import write_json_atomic

            click.echo(f"json: {write_json_atomic(json_path, snap.to_dict())}")
        return 0
    from memdiag.analysis.diff import compare_snapshots
    from memdiag.measure.python.driver import snapshot_target
    from memdiag.targets import parse_target

    parsed = parse_target(target, external_command(ctx))
    values = collect_params(params, batch, concurrency)
    if parsed.argv and is_node_command(list(parsed.argv)):
        from memdiag.cli.node import snapshot_job
        from memdiag.targets import fill_command

        return snapshot_job(fill_command(parsed.argv, values), out_dir, top, json_path, at_peak)
    if at_peak:
        raise MemdiagError(
            "--at-peak is for a node job; a Python target's after.json always has at_peak"
        )
    memray_path = str(Path(out_dir) / "capture.memray") if memray else None
    series = snapshot_target(parsed, values, out_dir, frames, at_phase, memray_path, native)
    for note in series.notes:
        click.echo(f"note: {note}", err=True)
    if series.run.error:
        click.echo(
            f"the target failed: {series.run.error.type}: {series.run.error.message}", err=True
        )
    snaps = series.snapshots
    if len(snaps) >= 2:
        renderer.diff(compare_snapshots(snaps[0], snaps[-1], top=top))
    if series.peak is not None:  # also when the call failed: the peak may say why
        from memdiag.model.snapshot import PeakSite

        sites = [PeakSite(**site) for site in series.peak.at_peak]
        renderer.peak(series.peak.peak_bytes, sites, top)
    click.echo(f"snapshots: {len(snaps)} in {out_dir}/ ({', '.join(s.label for s in snaps)})")
    if memray_path and Path(memray_path).exists():
        click.echo(f"flame graph: {flame_graph(memray_path, Path(out_dir) / 'flamegraph.html')}")
    return 0 if series.run.ok else 1


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT


def _runs_python(pid: int) -> bool:
    from memdiag.measure.attach.target import inspect_process

    return inspect_process(pid).python is not None


def process_snapshot(pid: int) -> Snapshot:
    """Return the /proc view of `pid` and its descendants as a Snapshot (no Python sections)."""
    from memdiag.measure.process.procview import tree_pids, tree_view

    pids = tree_pids(pid)
    if not pids:
        raise MemdiagError(f"no process with pid {pid}")
    try:
        views, regions = tree_view(pids)
    except PermissionError:
        raise MemdiagError(f"cannot read /proc/{pid}/smaps: permission denied") from None
    if not views:
        raise MemdiagError(f"process {pid} exited before it could be read")
    return Snapshot(
        label=f"pid {pid}",
        time_s=time.time(),
        target=views[0]["command"],
        pid=pid,
        rss_bytes=sum(v["rss_bytes"] for v in views),
        uss_bytes=sum(v["uss_bytes"] for v in views),
        pss_bytes=sum(v["pss_bytes"] for v in views),
        swap_bytes=sum(v["swap_bytes"] for v in views),
        regions=regions,
        processes=views,
    )


def flame_graph(capture: str, html: Path) -> Path:
    """Write memray's flame graph of the high-water mark of `capture` to `html`."""
    proc = subprocess.run(
        [sys.executable, "-m", "memray", "flamegraph", "--force", "-o", str(html), capture],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise MemdiagError(f"memray flamegraph failed: {proc.stderr.strip()[-300:]}", exit_code=1)
    return html
