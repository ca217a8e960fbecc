"""What `memdiag monitor` prints: a live view on a terminal, plain lines otherwise, a summary.

rich is imported only for the live view, so a monitor writing to a pipe or a file stays small.
Events are JSON lines in both cases, so they can be grepped out of any output.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memdiag.units import format_size

if TYPE_CHECKING:
    from memdiag.analysis.fit import LinearFit
    from memdiag.measure.monitor.sample import MonitorSample
    from memdiag.model import MonitorSummary

BARS = "▁▂▃▄▅▆▇█"
LIVE_REFRESH_S = 0.25
LEVEL_STYLE = {"ok": "green", "warning": "yellow", "critical": "bold red"}
VERDICT_TEXT = {
    "stable": "stable",
    "growing": "growing — leak suspected",
    "sawtooth": "sawtooth — grows, then is released periodically",
    "unknown": "unknown — too few samples",
}


@dataclass(frozen=True)
class LiveState:
    """What the live view shows beside the sample: levels so far, the fit, recent RSS."""

    sample: MonitorSample
    min_rss: float
    max_rss: float
    fit: LinearFit
    recent: list[float]
    level: str
    limit_bytes: int
    last_uss: float | None = None


def sparkline(values: list[float], width: int = 40) -> str:
    """Return the last `width` values as block characters scaled between their min and max."""
    shown = values[-width:]
    if not shown:
        return ""
    low, high = min(shown), max(shown)
    span = (high - low) or 1.0
    return "".join(BARS[int((v - low) / span * (len(BARS) - 1))] for v in shown)


def trend_text(fit: LinearFit) -> str:
    """Return a fitted slope (bytes/s) as `+12.3 MB/h (R² 0.95)`."""
    return f"{fit.slope * 3600 / 1024**2:+.1f} MB/h (R² {fit.r2:.2f})"


def sample_line(sample: MonitorSample) -> str:
    """Return one sample as a plain line."""
    uss = f"  uss {format_size(sample.uss_bytes)}" if sample.uss_bytes is not None else ""
    return (
        f"{sample.t_s:9.1f}s  rss {format_size(sample.rss_bytes):>9}{uss}  "
        f"available {format_size(sample.available_bytes)}  {sample.percent:5.1f}% of limit"
    )


class PlainView:
    """One line per sample on stdout (none when quiet), flushed; events as JSON lines."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def show(self, sample: MonitorSample, state: Callable[[], LiveState]) -> None:
        if not self.quiet:
            print(sample_line(sample), flush=True)

    def event(self, event: dict[str, Any]) -> None:
        print(json.dumps(event), flush=True)

    def close(self) -> None:
        sys.stdout.flush()


class LiveView:
    """A rich live panel refreshed at most every LIVE_REFRESH_S; events printed above it."""

    def __init__(self, label: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self.label = label
        self.console = Console(highlight=False)
        self.live = Live(console=self.console, auto_refresh=False, transient=False)
        self.live.start()
        self._shown = 0.0
        # The top processes are refreshed less often than samples: keep the last list shown.
        self._top: list[list[Any]] = []

    def show(self, sample: MonitorSample, state: Callable[[], LiveState]) -> None:
        """Refresh the panel, at most every LIVE_REFRESH_S; `state` is built only then."""
        now = time.monotonic()
        if now - self._shown >= LIVE_REFRESH_S:
            self._shown = now
            self.live.update(self._panel(state()), refresh=True)

    def event(self, event: dict[str, Any]) -> None:
        style = LEVEL_STYLE.get(str(event.get("level")), "cyan")
        self.live.console.print(json.dumps(event), style=style, markup=False, soft_wrap=True)

    def close(self) -> None:
        self.live.stop()

    def _panel(self, state: LiveState) -> Any:
        from rich.panel import Panel
        from rich.table import Table

        s, style = state.sample, LEVEL_STYLE.get(state.level, "white")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", justify="right")
        grid.add_column()
        uss = "" if state.last_uss is None else f"   uss {format_size(state.last_uss)}"
        grid.add_row("current", f"[bold]{format_size(s.rss_bytes)}[/]{uss}")
        grid.add_row("min / max", f"{format_size(state.min_rss)} / {format_size(state.max_rss)}")
        grid.add_row("trend", trend_text(state.fit))
        grid.add_row("rss", f"[cyan]{sparkline(state.recent)}[/]")
        bar = "█" * int(min(s.percent, 100) / 5)
        grid.add_row(
            "of limit",
            f"[{style}]{s.percent:5.1f}% {bar:<20}[/] of {format_size(state.limit_bytes)}"
            f"  [{style}]{state.level}[/]",
        )
        grid.add_row("available", format_size(s.available_bytes))
        self._top = s.top or self._top
        for pid, name, rss in self._top:
            grid.add_row(f"pid {pid}", f"{format_size(rss):>9}  {name}")
        title = f"memdiag monitor · {self.label} · {s.t_s:.0f}s"
        return Panel(grid, title=title, title_align="left", expand=False)


def summary_lines(
    summary: MonitorSummary | None, target: str, ended: str, exit_code: int | None
) -> list[str]:
    """Return the end-of-monitor summary as plain lines."""
    end = f"ended: {ended}" + ("" if exit_code is None else f", exit code {exit_code}")
    if summary is None:
        return [f"monitor of {target}: no samples taken ({end})"]
    s = summary
    limit = format_size(s.limit_bytes)
    lines = [
        f"monitor of {target}: {s.samples} samples over {s.duration_s:.1f} s ({end})",
        f"  rss        min {format_size(s.min_rss_bytes)}   mean {format_size(s.mean_rss_bytes)}"
        f"   max {format_size(s.max_rss_bytes)}   last {format_size(s.last_rss_bytes)}",
        f"  limit      {limit}, peak {s.max_percent:.1f}% of it",
        f"  growth     {s.growth_mb_per_hour:+.1f} MB/hour (R² {s.r2:.2f})",
        f"  verdict    {VERDICT_TEXT[s.verdict]}",
    ]
    if s.max_uss_bytes is not None:
        lines.insert(2, f"  uss        max {format_size(s.max_uss_bytes)}")
    if s.releases:
        period = f", every {s.period_s:.1f} s" if s.period_s else ""
        floor = s.trough_growth_mb_per_hour
        floor_text = "" if floor is None else f"; floor after release {floor:+.1f} MB/hour"
        lines.append(f"  releases   {s.releases}{period}{floor_text}")
    lines.append(
        f"  above      warn {s.warn:g}%: {s.above_warn_s:.1f} s   "
        f"critical {s.critical:g}%: {s.above_critical_s:.1f} s"
    )
    return lines


def event_lines(events: list[dict[str, Any]]) -> list[str]:
    """Return the saved warning and critical events as plain lines, one per event."""
    return [
        f"  event      {event['t_s']:.1f} s: {event['event']} at {event['percent']}%"
        for event in events
        if event.get("event") in ("warning", "critical")
    ]
