"""memdiag run: one isolated, measured run.

\b
The target runs in a fresh child process; its peak RSS is the kernel's own accounting of
the finished child (ru_maxrss through wait4), so a 50 ms spike counts. Exit code 0 when the
target finished ok, 1 when it failed (error, oom, timeout, killed), 2 on bad input.

\b
Examples:
  memdiag run import --param variant=accumulate --json reports/import.json --plot import.png
  memdiag run mypkg.jobs:sync_players --batch 50 --heap
  memdiag run jobs/sync.py:run --param records=10000 --limit 512MB --timeout 120
  memdiag run --param batch=25 -- node sync.js --batch {batch}
  memdiag run --heap-limit 256MB -- node jobs/import.js --batch 50
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from memdiag.cli.common import (
    TargetCommand,
    collect_params,
    external_command,
    positive,
    size_option,
    target_options,
)
from memdiag.errors import MemdiagError

if TYPE_CHECKING:
    from memdiag.model import Run


@click.command("run", cls=TargetCommand, help=__doc__)
@target_options
@click.option(
    "--interval",
    type=float,
    default=0.1,
    show_default=True,
    help="Seconds between timeline samples.",
)
@click.option(
    "--heap",
    is_flag=True,
    help="Also record the heap's peak and what was live there (memray, about 1.4x slower).",
)
@click.option(
    "--memray",
    "memray",
    is_flag=True,
    help="Keep a full memray capture beside the result, for flame graphs.",
)
@click.option("--native", is_flag=True, help="With --memray: native stack frames too.")
@click.option("--timeout", type=float, default=None, help="Stop the job after SECONDS.")
@click.option(
    "--limit",
    default=None,
    metavar="SIZE",
    help="Stop the job when its RSS passes SIZE (512MB, 1GB), as a container would.",
)
@click.option(
    "--heap-limit",
    default=None,
    metavar="SIZE",
    help="A Node job's V8 heap limit (--max-old-space-size, whole MB): the heap_limit param.",
)
@click.option(
    "--json",
    "json_path",
    default=None,
    metavar="PATH",
    help="Write the Run as JSON to PATH ('-' for stdout).",
)
@click.option(
    "--plot", "plot_path", default=None, metavar="PATH", help="Write the timeline as PNG."
)
@click.option("--quiet", "-q", is_flag=True, help="No terminal summary.")
@click.pass_context
def command(
    ctx: click.Context,
    target: str | None,
    params: tuple[str, ...],
    batch: str | None,
    concurrency: str | None,
    interval: float,
    heap: bool,
    memray: bool,
    native: bool,
    timeout: float | None,
    limit: str | None,
    heap_limit: str | None,
    json_path: str | None,
    plot_path: str | None,
    quiet: bool,
) -> int:
    from memdiag.measure.process.runner import MeasurementInterrupted, RunOptions, measure_run
    from memdiag.targets import parse_target

    parsed = parse_target(target, external_command(ctx))
    values = collect_params(params, batch, concurrency)
    if heap_limit is not None:
        if "heap_limit" in values:
            raise MemdiagError("heap_limit is given twice (--heap-limit and --param heap_limit)")
        values["heap_limit"] = size_option(heap_limit) or 0
    options = RunOptions(
        interval=positive("--interval", interval) or 0.1,
        heap=heap,
        memray_path=_memray_path(json_path) if memray else None,
        native=native,
        timeout=positive("--timeout", timeout),
        limit_bytes=size_option(limit),
    )
    try:
        run = measure_run(parsed, values, options)
    except MeasurementInterrupted as stopped:
        run = stopped.run
    _render(run, json_path, plot_path, quiet)
    if run.memray_path and not quiet:
        click.echo(
            f"memray capture: {run.memray_path}  "
            f"(flame graph: python -m memray flamegraph {run.memray_path})",
            err=True,
        )
    return 0 if run.ok else 1


def _memray_path(json_path: str | None) -> str:
    if json_path and json_path != "-":
        return str(Path(json_path).with_suffix(".memray"))
    return str(Path("reports") / "run.memray")


def _render(run: Run, json_path: str | None, plot_path: str | None, quiet: bool) -> None:
    from memdiag.model import write_json_atomic

    if json_path == "-":
        import json

        json.dump(run.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif json_path:
        write_json_atomic(json_path, run.to_dict())
    if plot_path:
        from memdiag.render.png import PngRenderer

        PngRenderer().timeline(run, plot_path)
    if not quiet and json_path != "-":
        from memdiag.analysis.phases import phase_peaks
        from memdiag.render.terminal import TerminalRenderer

        TerminalRenderer().run(run, phase_peaks(run))
        if run.at_peak:
            from memdiag.model.snapshot import PeakSite
            from memdiag.render.terminal import SnapshotRenderer

            sites = [PeakSite(**site) for site in run.at_peak]
            SnapshotRenderer().peak(run.peak_heap_bytes, sites)
        for label, path in (("json", json_path), ("plot", plot_path)):
            if path:
                click.echo(f"{label}: {path}")
