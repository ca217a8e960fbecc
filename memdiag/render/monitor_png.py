"""The PNG of a monitor: RSS (and USS) over time against the limit and the thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memdiag.model import MonitorSummary
from memdiag.render.monitor_view import VERDICT_TEXT
from memdiag.render.png import MB, _pyplot, _save
from memdiag.units import format_size

# Thresholds and the limit further above the data than this are named, not drawn: a 24 GB
# machine limit would squash a 60 MB service into a flat line at the bottom.
MAX_HEADROOM = 3.0


def _time_axis(duration_s: float) -> tuple[float, str]:
    if duration_s >= 3 * 3600:
        return 3600.0, "hours since start"
    if duration_s >= 180:
        return 60.0, "minutes since start"
    return 1.0, "seconds since start"


def plot_monitor(
    times_s: list[float],
    rss_bytes: list[float],
    uss: list[tuple[float, float]],
    summary: MonitorSummary,
    target: str,
    path: str | Path,
) -> Path:
    """Plot RSS (and USS, as (seconds, bytes) points) over time, the fitted trend, and the
    thresholds and limit when they are in view."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=110)
    scale, xlabel = _time_axis(summary.duration_s)
    times = [t / scale for t in times_s]
    ax.plot(times, [r / MB for r in rss_bytes], color="#1a73e8", lw=1.6, label="RSS (tree)")
    if uss:
        ax.plot(
            [t / scale for t, _ in uss],
            [u / MB for _, u in uss],
            color="#188038",
            ls="none",
            marker="o",
            ms=3,
            label="USS (tree, read on a time budget)",
        )
    slope = summary.growth_mb_per_hour / 3600 * scale
    start, end = summary.fit_from_s / scale, times[-1]
    base = summary.intercept_bytes / MB
    ax.plot(
        [start, end],
        [base + slope * start, base + slope * end],
        color="#5f6368",
        ls="--",
        lw=1.0,
        label=f"trend {summary.growth_mb_per_hour:+.1f} MB/h (R² {summary.r2:.2f}), after warm-up",
    )
    hidden = _draw_limits(ax, summary)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("MB")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    title = f"{target}: {VERDICT_TEXT[summary.verdict]}"
    if hidden:
        title += f"\noff the chart: {', '.join(hidden)}"
    ax.set_title(title, fontsize=11, loc="left")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    return _save(plt, fig, path)


def _draw_limits(ax: Any, summary: MonitorSummary) -> list[str]:
    """Draw warn, critical and the limit when near the data; return the names of the rest."""
    top = summary.max_rss_bytes * MAX_HEADROOM
    hidden = []
    lines = (
        (summary.warn, f"warn {summary.warn:g}%", "#e37400", ":"),
        (summary.critical, f"critical {summary.critical:g}%", "#c5221f", ":"),
        (100.0, "limit", "#c5221f", "-"),
    )
    for percent, label, colour, style in lines:
        level = summary.limit_bytes * percent / 100
        if level > top:
            hidden.append(f"{label} {format_size(level)}")
            continue
        ax.axhline(
            level / MB, color=colour, ls=style, lw=1.2, label=f"{label} {format_size(level)}"
        )
    return hidden
