"""memdiag leaks: growth per iteration, named down to file:line, object type and owner.

\b
A Python TARGET is called --iterations times in one fresh child and snapshotted after each
call: the objects counted by type in a forked copy while the next call runs, only the last
call under tracemalloc (for its allocation sites). After --warmup calls, a type or the
Python heap leaks when its live bytes grew in at least 80% of the calls by at least
--min-growth per call (least-squares slope), whether in new objects or in one that grows:
memdiag's one leak rule (docs/leaks.md). Caches that warm up stop growing, and per-call
garbage is collected before each snapshot. The report opens with the owners of the growth:
the objects, older than the last call, that hold what it added, with their retained size
per call and share of the growth. For the leading leaks, it names the type allocated at
the line and the chain of
references that keeps it alive, written as code (`jobs.BUS._handlers['done'][3].__self__.rows`),
from a module global, class attribute, closure, registry (logger, signal handler, atexit) or
another thread's stack, and which search found it (a PNG too with --out, when graphviz's
`dot` is installed). RSS growing faster than the Python heap is reported as native growth.

\b
A line per iteration shows the time, the ETA and the growth so far (stderr). Ctrl-C stops
after the current iteration and reports on the snapshots taken, marked partial; a second
Ctrl-C stops at once.

\b
--every SECONDS: snapshot a long-running Python target every SECONDS during one call, or
sample an external command's RSS (-- CMD) every SECONDS for --iterations intervals.
For a node process (--pid PID, or -- node ...): a V8 heap snapshot every SECONDS through one
inspector session, objects matched by V8 node id, the owners of the growth named as
JavaScript paths (docs/node.md).

\b
--pid PID --every SECONDS: a running CPython process, snapshotted from inside (its
cooperative agent, sys.remote_exec on 3.14, or with --inject gdb) every SECONDS for
--iterations intervals, the last one under tracemalloc (its sites, chains and owners); nothing of
memdiag stays in the process between two snapshots. Ctrl-C stops after the current
interval and reports, marked partial.

\b
Exit code 1 when leaks are found, 0 when none (--no-fail: always 0), 2 on bad input.

\b
Examples:
  memdiag leaks player-sync --param variant=leaky --param records=1000 --iterations 8
  memdiag leaks mypkg.jobs:sync --iterations 20 --json reports/leaks.json --markdown leaks.md
  memdiag leaks record-sync --vary seed --iterations 8
  memdiag leaks --every 2 --iterations 30 -- node service.js
  memdiag leaks --pid 4242 --every 30 --iterations 5
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from memdiag.cli.common import (
    TargetCommand,
    collect_params,
    external_command,
    positive,
    target_options,
)
from memdiag.errors import MemdiagError
from memdiag.measure.node.inspector import is_node_executable, is_node_name
from memdiag.units import parse_size

if TYPE_CHECKING:
    from memdiag.analysis.leaks import LeakSettings
    from memdiag.model import LeakReport


@click.command("leaks", cls=TargetCommand, help=__doc__)
@target_options
@click.option(
    "--iterations",
    "-n",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Calls of the target (or intervals with --every).",
)
@click.option(
    "--warmup",
    type=click.IntRange(0),
    default=2,
    show_default=True,
    help="First calls left out: caches warm up there.",
)
@click.option(
    "--every",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Snapshot or sample every SECONDS during one run instead of per call.",
)
@click.option(
    "--vary",
    default=None,
    metavar="NAME",
    help="Add the call number to parameter NAME, so every call gets fresh input.",
)
@click.option(
    "--frames",
    type=click.IntRange(1, 100),
    default=1,
    show_default=True,
    help="Traceback frames recorded per allocation in the traced last call (each frame "
    "makes that call slower).",
)
@click.option(
    "--min-growth",
    default="64KB",
    show_default=True,
    metavar="SIZE",
    help="Smallest growth per iteration reported as a Python leak.",
)
@click.option(
    "--native-min",
    default="1MB",
    show_default=True,
    metavar="SIZE",
    help="Smallest RSS growth beyond the Python heap reported as native growth.",
)
@click.option(
    "--out",
    "out_dir",
    default=None,
    metavar="DIR",
    help="Keep the snapshots and the reference-chain PNGs in DIR.",
)
@click.option("--json", "json_path", default=None, metavar="PATH", help="Write findings as JSON.")
@click.option(
    "--markdown",
    "markdown_path",
    default=None,
    metavar="PATH",
    help="Write the report as Markdown.",
)
@click.option("--timeout", type=float, default=None, help="Stop the whole run after SECONDS.")
@click.option("--no-fail", is_flag=True, help="Exit 0 even when leaks are found.")
@click.option(
    "--inject",
    is_flag=True,
    help="With --pid: go into a CPython process with no agent through gdb (it stops ~1 s).",
)
@click.option(
    "--pid",
    type=click.IntRange(1),
    default=None,
    help="A running Python or node process instead: a snapshot every --every SECONDS.",
)
@click.option(
    "--verbose",
    is_flag=True,
    help="Also print where the time went: calls, snapshots, evidence, analysis (timings).",
)
@click.pass_context
def command(
    ctx: click.Context,
    target: str | None,
    params: tuple[str, ...],
    batch: str | None,
    concurrency: str | None,
    iterations: int,
    warmup: int,
    every: float | None,
    vary: str | None,
    frames: int,
    min_growth: str,
    native_min: str,
    out_dir: str | None,
    json_path: str | None,
    markdown_path: str | None,
    timeout: float | None,
    no_fail: bool,
    inject: bool,
    pid: int | None,
    verbose: bool,
) -> int:
    from memdiag.analysis.leaks import LeakSettings, find_leaks
    from memdiag.measure.python.driver import LeakPlan, leak_series
    from memdiag.render.progress import LeakProgress
    from memdiag.targets import parse_target

    settings = LeakSettings(
        warmup=warmup,
        min_growth_bytes=parse_size(min_growth),
        native_min_bytes=parse_size(native_min),
    )
    argv = external_command(ctx)
    if pid is not None and not is_node_executable(pid):
        if target or argv:
            raise MemdiagError("give either TARGET or --pid, not both")
        return _pid_leaks(
            pid, every, iterations, frames, settings, json_path, markdown_path, no_fail, inject
        )
    if pid is not None or (every is not None and argv and is_node_name(argv[0])):
        return _node(pid, None if pid else list(argv), target, every, iterations, settings, ctx)
    parsed = parse_target(target, argv)
    values = collect_params(params, batch, concurrency)
    if every is None and iterations < warmup + settings.min_intervals:
        raise MemdiagError(
            f"--iterations {iterations} is too few: {warmup} warm-up calls plus at least "
            f"{settings.min_intervals} to see growth (try --iterations {warmup + 6})"
        )
    if vary and vary not in values and not parsed.is_python:
        raise MemdiagError(f"--vary {vary}: no --param {vary} to vary")
    plan = LeakPlan(
        iterations=iterations,
        every=positive("--every", every),
        frames=frames,
        vary=vary,
        settings=settings,
        keep_dir=out_dir,
        timeout=positive("--timeout", timeout),
    )
    unit = "iteration" if every is None else "interval"
    progress = LeakProgress(iterations, unit, quiet=not parsed.is_python)
    series = leak_series(parsed, values, plan, on_snapshot=progress)
    if not series.snapshots:
        error = series.run.error
        raise MemdiagError(
            f"no snapshot taken: {error.type}: {error.message}" if error else "no snapshot taken",
            exit_code=1,
        )
    begun = time.perf_counter()
    report = find_leaks(series.snapshots, settings, series.evidence, unit=unit)
    report.timings = {
        **{k: round(float(v), 3) for k, v in series.evidence.get("timings", {}).items()},
        "analysis": round(time.perf_counter() - begun, 3),
    }
    failed = bool(series.run.error) and series.run.status != "timeout" and not series.partial
    if failed and series.run.error:
        report.status, report.error = (
            series.run.status,
            f"{series.run.error.type}: {series.run.error.message}",
        )
    report.notes = [*series.notes, *_busy_note()]
    if out_dir:
        from memdiag.render.chain_png import draw_chains

        begun = time.perf_counter()
        draw_chains(report, Path(out_dir))
        report.timings["graphs"] = round(time.perf_counter() - begun, 3)
    done = max(len(series.snapshots) - 1, 0)
    # A call that raised ends the calls too: the report covers the calls before it.
    partial = series.partial or (failed and every is None and done < iterations)
    extra = {"partial": partial, "chain_search": series.evidence.get("search")}
    if partial:
        why = "stopped by Ctrl-C" if series.partial else f"{unit} {done + 1} failed"
        click.echo(
            f"partial: {why} after {done} of {iterations} {unit}s; "
            f"the report covers the {len(series.snapshots)} snapshots taken",
            err=True,
        )
        extra["stopped_by"] = "interrupt" if series.partial else "error"
    _render(report, json_path, markdown_path, extra, verbose)
    if no_fail:
        return 0
    return 1 if report.found or report.error else 0


def _pid_leaks(
    pid: int,
    every: float | None,
    iterations: int,
    frames: int,
    settings: LeakSettings,
    json_path: str | None,
    markdown_path: str | None,
    no_fail: bool,
    inject: bool,
) -> int:
    """`leaks --pid`: the series of the running process, reported as `leaks` reports."""
    from memdiag.analysis.leaks import find_leaks
    from memdiag.measure.attach.series import pid_leak_series
    from memdiag.render.progress import LeakProgress

    seconds = _interval(every, iterations, settings)
    progress = LeakProgress(iterations, "interval", quiet=False)
    series = pid_leak_series(pid, seconds, iterations, settings, frames, progress, inject)
    report = find_leaks(series.snapshots, settings, series.evidence, unit="interval")
    extra = {"partial": series.partial, "chain_search": series.evidence.get("search"), "pid": pid}
    if series.partial:
        click.echo(
            f"partial: stopped by Ctrl-C after {len(series.snapshots) - 1} of {iterations} "
            "intervals",
            err=True,
        )
    _render(report, json_path, markdown_path, extra)
    return 0 if no_fail or not report.found else 1


def _interval(every: float | None, iterations: int, settings: LeakSettings) -> float:
    """Return --every in seconds for a series of snapshots of a running process (a pid, or a
    node service memdiag starts); a missing --every or too few --iterations is bad input."""
    if every is None:
        raise MemdiagError("--pid needs --every SECONDS: the time between two snapshots")
    if iterations < settings.warmup + settings.min_intervals:
        raise MemdiagError(
            f"--iterations {iterations} is too few: {settings.warmup} warm-up intervals plus "
            f"at least {settings.min_intervals} to see growth "
            f"(try --iterations {settings.warmup + settings.min_intervals + 1})"
        )
    seconds = positive("--every", every)
    assert seconds is not None  # positive() returns None only for None
    return seconds


def _node(
    pid: int | None,
    argv: list[str] | None,
    target: str | None,
    every: float | None,
    iterations: int,
    settings: LeakSettings,
    ctx: click.Context,
) -> int:
    """`memdiag leaks` of a node process: heap snapshots through its inspector (cli/node.py)."""
    from memdiag.cli.node import leaks

    if pid is not None and (target or external_command(ctx)):
        raise MemdiagError("--pid PID takes no TARGET or command")
    seconds = _interval(every, iterations, settings)
    if pid is not None:
        from memdiag.measure.node.inspector import node_process

        node_process(pid)  # a missing pid, another user's or not node: one line, exit 2
    params = ctx.params
    report, extra = leaks(pid, argv, seconds, iterations, settings, params["out_dir"])
    _render(report, params["json_path"], params["markdown_path"], extra)
    if params["no_fail"]:
        return 0
    return 1 if report.found or report.error else 0


def _busy_note() -> list[str]:
    """Say so when other work competed for the cores during the run: a 1-minute load average
    past the cores plus the job and its copy."""
    import os

    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    if load < cores + 2:
        return []
    return [
        f"the machine was busy: load average {load:.1f} on {cores} cores; the calls and the "
        "snapshot copies competed with other work (timings are high)"
    ]


def _render(
    report: LeakReport,
    json_path: str | None,
    markdown_path: str | None,
    extra: dict[str, Any],
    verbose: bool = False,
) -> None:
    """Print the report (and, `verbose`, its timings); write it as JSON with `extra`
    (partial, chain_search) and Markdown."""
    from memdiag.render.markdown import LeakMarkdownRenderer
    from memdiag.render.terminal import LeakTerminalRenderer

    begun = time.perf_counter()
    searched = extra.get("chain_search")
    why = "stopped by Ctrl-C" if extra.get("stopped_by") == "interrupt" else "a call failed"
    if extra.get("partial"):
        click.echo(f"PARTIAL: {report.snapshots} snapshots, {why}")
    terminal = LeakTerminalRenderer()
    terminal.report(report, searched=searched)
    if report.timings:
        report.timings["report"] = round(time.perf_counter() - begun, 3)
    if verbose:
        terminal.timings(report)
    if json_path:
        from memdiag.model import write_json_atomic

        data = {**report.to_dict(), **extra}
        click.echo(f"json: {write_json_atomic(json_path, data)}")
    if markdown_path:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        text = LeakMarkdownRenderer().report(report, searched=searched)
        if extra.get("partial"):
            text = text.replace("# memdiag leaks\n", f"# memdiag leaks (partial: {why})\n", 1)
        Path(markdown_path).write_text(text)
        click.echo(f"markdown: {markdown_path}")
