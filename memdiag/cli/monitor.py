"""memdiag monitor: follow memory over time, with thresholds, events and a verdict.

\b
Samples every INTERVAL seconds for DURATION seconds (0: until the process ends or Ctrl-C):
a command started after `--`, a running process with --pid (with its children), or else the
machine (memory in use and the top processes). Each sample holds the tree's RSS and USS,
available memory and the percentage of the limit (--limit, else the process's cgroup limit,
else total memory). Crossing --warn or --critical (`75%` or the fraction `0.75`; a bare 75
is an error) and going back below prints an event as a JSON line. At the end (also on
Ctrl-C, SIGTERM, or when the process exits) a summary: min/mean/max, growth in MB/hour with
R², and a verdict: stable, growing (leak suspected) or sawtooth (grows, then released
periodically). A followed command's exit code is the
monitor's; a command still running at the end of DURATION is stopped.

\b
Examples:
  memdiag monitor 10 300 --pid 4242 --out reports/sync.jsonl --plot sync.png
  memdiag monitor 1 0 --limit 2GB -- node sync.js
  memdiag monitor 5 0 --pid 4242 --critical 90% --on-critical './clear-cache.sh 4242'
  memdiag monitor 0.5 60 -- python -m myservice
  memdiag monitor 5 0                      # the machine, until Ctrl-C
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from typing import Any

import click

from memdiag.cli.common import TargetCommand, external_command, size_option
from memdiag.errors import MemdiagError
from memdiag.units import parse_percent


def percent_points(name: str, text: str) -> float:
    """Return `75%` or the fraction `0.75` as 75.0 (percent of the limit, as the thresholds
    keep it); a bare number above 1 is an error with a hint (see units.parse_percent)."""
    return round(parse_percent(text, name=name) * 100, 9)


def hook_command(text: str | None) -> tuple[str, ...]:
    """Return --on-critical split into arguments (no shell), checking the program exists."""
    if not text:
        return ()
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise MemdiagError(f"--on-critical: {exc}") from None
    if not argv or shutil.which(argv[0]) is None:
        raise MemdiagError(f"--on-critical: program not found: {argv[0] if argv else text!r}")
    return argv


@click.command("monitor", cls=TargetCommand, help=__doc__)
@click.argument("interval", type=float)
@click.argument("duration", type=float)
@click.option("--pid", type=int, default=None, help="Follow this running process and its tree.")
@click.option("--limit", default=None, metavar="SIZE", help="The limit percentages refer to.")
@click.option(
    "--warn", default="75%", show_default=True, metavar="PERCENT", help="Warn level (75% or 0.75)."
)
@click.option(
    "--critical", default="85%", show_default=True, metavar="PERCENT", help="Critical level."
)
@click.option(
    "--on-critical", default=None, metavar="CMD", help="Run CMD (no shell) on each critical."
)
@click.option("--on-critical-timeout", type=float, default=30.0, show_default=True, help="Seconds.")
@click.option("--out", default=None, metavar="PATH", help="Write samples.jsonl, flushed per line.")
@click.option("--json", "json_path", default=None, metavar="PATH", help="Summary as JSON ('-').")
@click.option("--plot", "plot_path", default=None, metavar="PATH", help="Write a PNG at the end.")
@click.option("--quiet", "-q", is_flag=True, help="No per-sample output: events and summary.")
@click.pass_context
def command(
    ctx: click.Context,
    interval: float,
    duration: float,
    pid: int | None,
    limit: str | None,
    warn: str,
    critical: str,
    on_critical: str | None,
    on_critical_timeout: float,
    out: str | None,
    json_path: str | None,
    plot_path: str | None,
    quiet: bool,
) -> int:
    from memdiag.analysis.thresholds import check_thresholds
    from memdiag.measure.monitor.loop import MonitorConfig

    argv = external_command(ctx)
    if interval <= 0 or duration < 0:
        raise MemdiagError(
            f"INTERVAL must be above 0 and DURATION at least 0, got {interval:g} {duration:g}"
        )
    if pid is not None and argv:
        raise MemdiagError("give either --pid or a command after --, not both")
    config = MonitorConfig(
        interval_s=interval,
        duration_s=duration,
        warn=percent_points("--warn", warn),
        critical=percent_points("--critical", critical),
        on_critical=hook_command(on_critical),
        on_critical_timeout_s=on_critical_timeout,
    )
    check_thresholds(config.warn, config.critical)
    quiet = quiet or json_path == "-"
    summary = _monitor(config, pid, argv, size_option(limit), out, quiet)
    _write_outputs(summary, json_path, plot_path)
    return int(summary["record"]["exit_code"])


class _Outputs:
    """Where samples and events go: the samples file, and the live view or plain lines."""

    def __init__(self, writer: Any, view: Any) -> None:
        self.writer, self.view = writer, view
        self.session: Any = None

    def sample(self, sample: Any) -> None:
        if self.writer:
            self.writer.sample(sample)
        self.view.show(sample, lambda: _live_state(self.session, sample))

    def event(self, event: dict[str, Any]) -> None:
        if self.writer:
            self.writer.event(event)
        self.view.event(event)


def _monitor(
    config: Any,
    pid: int | None,
    argv: tuple[str, ...],
    limit: int | None,
    out: str | None,
    quiet: bool,
) -> dict[str, Any]:
    """Run the session; return the summary record and what the plot needs."""
    from memdiag.measure.monitor.file import SamplesWriter
    from memdiag.measure.monitor.loop import MonitorSession, start_command, stop_process
    from memdiag.measure.monitor.sample import MachineWatcher, TreeWatcher, Watcher

    child = start_command(argv) if argv else None
    try:
        followed = child.pid if child else pid
        watcher: Watcher = TreeWatcher(followed, limit) if followed else MachineWatcher(limit)
        header = _header(watcher, config, argv)
        writer = SamplesWriter(out, header) if out else None
    except BaseException:
        if child is not None:
            stop_process(child)
        raise
    if not sys.stdout.isatty() or quiet:
        click.echo(f"memdiag monitor: {_describe(header)}", err=True)
    outputs = _Outputs(writer, _view(watcher.label, quiet))
    session = MonitorSession(watcher, config, outputs.sample, outputs.event, child)
    outputs.session = session
    try:
        session.run()
    finally:
        outputs.view.close()
    summary = session.series.summary(config, watcher.limit_bytes)
    record = {
        **(summary.to_dict() if summary else {}),
        "target": watcher.label,
        "ended": session.ended,
        "exit_code": session.exit_code,
    }
    if writer:
        writer.close(record)
    return {"record": record, "summary": summary, "series": session.series, "quiet": quiet}


def _header(watcher: Any, config: Any, argv: tuple[str, ...]) -> dict[str, Any]:
    from datetime import UTC, datetime

    return {
        "target": watcher.label,
        "command": list(argv) or None,
        "interval_s": config.interval_s,
        "duration_s": config.duration_s,
        "warn": config.warn,
        "critical": config.critical,
        "limit_bytes": watcher.limit_bytes,
        "limit_source": watcher.limit_source,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _describe(header: dict[str, Any]) -> str:
    from memdiag.units import format_size

    until = f"for {header['duration_s']:g} s" if header["duration_s"] else "until it ends"
    return (
        f"{header['target']} every {header['interval_s']:g} s {until}; limit "
        f"{format_size(header['limit_bytes'])} ({header['limit_source']}); "
        f"warn {header['warn']:g}%, critical {header['critical']:g}%"
    )


def _view(label: str, quiet: bool) -> Any:
    from memdiag.render.monitor_view import LiveView, PlainView

    if sys.stdout.isatty() and not quiet:
        return LiveView(label)
    return PlainView(quiet)


def _live_state(session: Any, sample: Any) -> Any:
    from memdiag.render.monitor_view import LiveState

    series = session.series
    return LiveState(
        sample=sample,
        min_rss=series.min_rss,
        max_rss=series.max_rss,
        fit=series.fit.line(),
        recent=list(series.rss[-40:]),
        level=session.tracker.level,
        limit_bytes=session.watcher.limit_bytes,
        last_uss=series.uss[-1] if series.uss else None,
    )


def _write_outputs(result: dict[str, Any], json_path: str | None, plot_path: str | None) -> None:
    from memdiag.render.monitor_view import summary_lines

    record, summary = result["record"], result["summary"]
    if json_path == "-":
        click.echo(json.dumps(record, indent=1))
    else:
        for line in summary_lines(summary, record["target"], record["ended"], record["exit_code"]):
            click.echo(line)
    if json_path and json_path != "-":
        from memdiag.model import write_json_atomic

        write_json_atomic(json_path, record)
    if plot_path and summary is not None:
        from memdiag.render.png import plot_monitor

        series = result["series"]
        uss = list(zip(series.uss_times, series.uss, strict=True))
        times, rss = list(series.times), list(series.rss)
        plot_monitor(times, rss, uss, summary, record["target"], plot_path)
        if json_path != "-":
            click.echo(f"plot: {plot_path}")
