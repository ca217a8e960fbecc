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
--pid PID: a process-level view of any process, any language, and its descendants: RSS,
USS, PSS, swap, and resident memory split into heap, anonymous and file-backed, from /proc.

\b
Examples:
  memdiag snapshot player-sync --param records=2000 --out reports/snap
  memdiag snapshot import --at-phase --frames 12 --memray
  memdiag snapshot --pid 4242 --json reports/node.json
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import click

from memdiag.cli.common import TargetCommand, collect_params, external_command, target_options
from memdiag.errors import MemdiagError
from memdiag.model import Snapshot


@click.command("snapshot", cls=TargetCommand, help=__doc__)
@target_options
@click.option("--pid", type=int, default=None, help="View a running process instead.")
@click.option("--out", "out_dir", default="reports/snapshot", show_default=True, metavar="DIR")
@click.option(
    "--frames",
    type=click.IntRange(1, 100),
    default=8,
    show_default=True,
    help="Traceback frames kept per allocation site.",
)
@click.option("--at-phase", is_flag=True, help="Also snapshot at each probe phase boundary.")
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
    help="With --pid: write the view as a snapshot JSON file.",
)
@click.pass_context
def command(
    ctx: click.Context,
    target: str | None,
    params: tuple[str, ...],
    batch: str | None,
    concurrency: str | None,
    pid: int | None,
    out_dir: str,
    frames: int,
    at_phase: bool,
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
        snap = process_snapshot(pid)
        renderer.process(snap)
        if json_path:
            from memdiag.model import write_json_atomic

            click.echo(f"json: {write_json_atomic(json_path, snap.to_dict())}")
        return 0
    from memdiag.analysis.diff import compare_snapshots
    from memdiag.measure.tracked import snapshot_target
    from memdiag.targets import parse_target

    parsed = parse_target(target, external_command(ctx))
    values = collect_params(params, batch, concurrency)
    memray_path = str(Path(out_dir) / "capture.memray") if memray else None
    series = snapshot_target(parsed, values, out_dir, frames, at_phase, memray_path, native)
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


def process_snapshot(pid: int) -> Snapshot:
    """Return the /proc view of `pid` and its descendants as a Snapshot (no Python sections)."""
    from memdiag.measure.procview import tree_pids, tree_view

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
