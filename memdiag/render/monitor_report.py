"""Re-render a saved monitor (samples.jsonl): its summary, and its plot on request."""

from __future__ import annotations

import click

from memdiag.analysis.monitoring import summarize
from memdiag.errors import MemdiagError
from memdiag.measure.samples_file import read_samples_file
from memdiag.render.monitor_view import summary_lines


def render_monitor_file(path: str, plot_path: str | None = None) -> int:
    """Print the summary of the monitor saved in `path`; write its PNG to `plot_path`.

    The summary is computed again from the samples, so a file cut short by a killed monitor
    renders too. Returns the exit code for `memdiag report`: 0 (a bad file raises
    MemdiagError, exit 2).
    """
    record = read_samples_file(path)
    header, samples = record.header, record.samples
    thresholds = (float(header.get("warn", 75)), float(header.get("critical", 85)))
    limit = int(header.get("limit_bytes") or 0)
    if limit <= 0:
        raise MemdiagError(f"{path}: the monitor header has no limit_bytes")
    summary = summarize(
        [s.t_s for s in samples],
        [s.rss_bytes for s in samples],
        [s.percent for s in samples],
        thresholds,
        limit,
        [s.uss_bytes for s in samples if s.uss_bytes is not None],
    )
    saved = record.summary or {}
    ended = str(saved.get("ended", "unknown (no summary line: the monitor was killed)"))
    target = str(header.get("target", "?"))
    for line in summary_lines(summary, target, ended, saved.get("exit_code")):
        click.echo(line)
    for event in record.events:
        if event.get("event") in ("warning", "critical"):
            at = f"{event['t_s']:.1f} s"
            click.echo(f"  event      {at}: {event['event']} at {event['percent']}%")
    if plot_path and summary is not None:
        from memdiag.render.monitor_png import plot_monitor

        uss = [(s.t_s, float(s.uss_bytes)) for s in samples if s.uss_bytes is not None]
        times = [s.t_s for s in samples]
        plot_monitor(times, [float(s.rss_bytes) for s in samples], uss, summary, target, plot_path)
        click.echo(f"plot: {plot_path}")
    return 0
