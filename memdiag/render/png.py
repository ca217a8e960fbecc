"""PNG plots through matplotlib, imported only when a plot is asked for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from memdiag.model import ConfigSummary, MonitorSummary, Run, Sweep
from memdiag.params import has_params, index_of
from memdiag.render.monitor_view import VERDICT_TEXT
from memdiag.render.tables import params_text
from memdiag.units import format_size

MB = 1024 * 1024
SERIES_COLOURS = ["#1a73e8", "#e37400", "#188038", "#9334e6", "#d01884", "#12b5cb", "#5f6368"]
PHASE_COLOURS = ["#e8f0fe", "#fef3e2", "#e6f4ea", "#fce8e6", "#f3e8fd", "#e4f7fb"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(run: Run) -> str:
    return params_text(run.params) if run.params else "(defaults)"


class PngRenderer:
    """Writes plots as PNG files."""

    def timeline(self, run: Run, path: str | Path) -> Path:
        """Plot one run's RSS (and heap) over time with phases shaded and the exact peak."""
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(11.5, 4.8), dpi=110)
        times = [s.t_s for s in run.timeline]
        ax.plot(
            times,
            [s.rss_bytes / MB for s in run.timeline],
            color="#1a73e8",
            lw=1.8,
            label="RSS (process tree, sampled)",
            zorder=3,  # the measured curve over the peak and limit lines, never under them
        )
        heap = [(s.t_s, s.heap_bytes) for s in run.timeline if s.heap_bytes is not None]
        if heap:
            ax.plot(
                [t for t, _ in heap],
                [h / MB for _, h in heap],
                color="#e37400",
                lw=1.4,
                label="V8 heap used (all Node processes)" if run.v8 else "heap (memray)",
                zorder=3,
            )
        top = max(run.peak_rss_bytes, run.limit_bytes or 0)
        if run.v8:
            top = max(top, _plot_v8(ax, run))
        _shade_phases(ax, run)
        ax.axhline(
            run.peak_rss_bytes / MB,
            color="#c5221f",
            ls="--",
            lw=1.2,
            label=f"peak RSS {format_size(run.peak_rss_bytes)} (kernel, exact)",
        )
        if run.limit_bytes:
            ax.axhline(
                run.limit_bytes / MB,
                color="#5f6368",
                ls=":",
                lw=1.2,
                label=f"limit {format_size(run.limit_bytes)}",
            )
        ax.set_xlabel("seconds since start")
        ax.set_ylabel("MB")
        ax.set_ylim(bottom=0, top=top / MB * 1.15)
        ax.set_xlim(left=0)
        status = f"{run.status}: {run.oom_kind}" if run.oom_kind else run.status
        ax.set_title(f"{run.target}  {_label(run)}  [{status}]", fontsize=11, loc="left")
        ax.grid(alpha=0.3)
        _legend(ax)
        return _save(plt, fig, path)

    def sweep(self, sweep: Sweep, directory: str | Path) -> dict[str, Path]:
        """Write the sweep's plots into `directory`; return {title: path} in reading order."""
        folder = Path(directory)
        capacity = {}
        if sweep.scaling:
            path = self.sweep_capacity(sweep, folder / "capacity.png")
            capacity = {"Capacity: peak against input size, with the budgets": path}
        return {
            **capacity,
            "Peak RSS by configuration": self.sweep_peaks(sweep, folder / "peak.png"),
            "Throughput by configuration": self.sweep_throughput(sweep, folder / "throughput.png"),
            "Timelines overlaid": self.sweep_timelines(sweep, folder / "timelines.png"),
        }

    def sweep_peaks(self, sweep: Sweep, path: str | Path) -> Path:
        """Median peak per configuration (min-max bars), one line per series, budgets drawn."""
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(10.5, 5.2), dpi=110)
        axis, ticks, series = _series(sweep)
        for i, (label, configs) in enumerate(series.items()):
            _plot_series(
                ax,
                configs,
                ticks,
                axis,
                (lambda c: c.peak_rss_bytes, MB),
                label,
                i,
                lambda c: c.peak_rss_spread,
            )
        peaks = [c.peak_rss_bytes or 0 for c in sweep.configs]
        top = max(peaks, default=0) * 1.15 or MB
        shown, hidden = _budgets_in_view(sweep.budgets_bytes, top)
        for budget in shown:
            top = max(top, budget * 1.06)
            ax.axhline(budget / MB, color="#c5221f", lw=1.2, alpha=0.8)
            ax.axhline(budget * sweep.headroom / MB, color="#c5221f", lw=0.9, ls=":")
            ax.text(
                0.995,
                budget / MB,
                f"{format_size(budget)} budget ",
                color="#c5221f",
                transform=ax.get_yaxis_transform(),
                ha="right",
                va="bottom",
                fontsize=8,
            )
        title = f"Peak RSS by configuration: {sweep.target}"
        if hidden:
            title += "   (off the chart: " + ", ".join(format_size(b) for b in hidden) + ")"
        ax.set_ylim(0, top / MB)
        ax.set_ylabel(f"peak RSS, MB (dotted: {sweep.headroom:.0%} of the budget)")
        return _finish_series_plot(plt, fig, ax, axis, ticks, title, path)

    def sweep_capacity(self, sweep: Sweep, path: str | Path) -> Path:
        """Peak against input size per configuration: measured points, the fit with its
        prediction band out to --at, and the budgets (headroom dotted)."""
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(10.5, 5.6), dpi=110)
        axis = next(iter(sweep.predict), None) or sweep.scaling[0].axis
        fits = [f for f in sweep.scaling if f.axis == axis][: len(SERIES_COLOURS)]
        top = 0.0
        for i, fit in enumerate(fits):
            colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
            band = fit.band or [[x, y, y, y] for x, y in fit.points]
            xs = [row[0] for row in band]
            ax.fill_between(
                xs, [row[2] / MB for row in band], [row[3] / MB for row in band],
                color=colour, alpha=0.15, lw=0,
            )  # fmt: skip
            label = f"{params_text(fit.params)} ({fit.model or fit.verdict})"
            ax.plot(xs, [row[1] / MB for row in band], color=colour, lw=1.6, ls="--")
            ax.plot(
                [x for x, _ in fit.points], [y / MB for _, y in fit.points],
                marker="o", ls="", color=colour, label=label,
            )  # fmt: skip
            top = max(top, max(row[3] for row in band))
        for budget in sorted(sweep.budgets_bytes):
            ax.axhline(budget / MB, color="#c5221f", lw=1.1, alpha=0.8)
            ax.axhline(budget * sweep.headroom / MB, color="#c5221f", lw=0.8, ls=":")
            ax.text(
                0.005, budget / MB, f" {format_size(budget)} budget",
                color="#c5221f", transform=ax.get_yaxis_transform(), va="bottom", fontsize=8,
            )  # fmt: skip
        if axis in sweep.predict:
            at = sweep.predict[axis]
            ax.axvline(at, color="#202124", lw=1.0, ls="-.")
            ax.text(
                at, 0.02, f"--at {axis}={at:,.0f} ", transform=ax.get_xaxis_transform(),
                va="bottom", ha="right", fontsize=8,
            )  # fmt: skip
        low_x = min((f.points[0][0] for f in fits), default=1.0)
        high_x = max([*(f.band[-1][0] for f in fits if f.band), sweep.predict.get(axis, 0.0)])
        if high_x > 20 * low_x:
            ax.set_xscale("log")
        lows = [f.points[0][1] for f in fits if f.points]
        if lows and top > 20 * min(lows):
            ax.set_yscale("log")
        ax.set_xlabel(f"{axis} (input size)")
        ax.set_ylabel(f"peak RSS, MB (band: 95% prediction; dotted: {sweep.headroom:.0%})")
        ax.set_title(
            f"Capacity: peak against {axis}, measured (dots) and fitted (dashed): {sweep.target}",
            fontsize=11,
            loc="left",
        )
        ax.grid(alpha=0.3, which="both")
        _legend(ax)
        return _save(plt, fig, path)

    def sweep_throughput(self, sweep: Sweep, path: str | Path) -> Path:
        """Median records/s per configuration (or wall time when there are no records)."""
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(10.5, 5.2), dpi=110)
        axis, ticks, series = _series(sweep)
        rated = any(c.records_per_s for c in sweep.configs)
        value = (lambda c: c.records_per_s) if rated else (lambda c: c.wall_s)
        bounds = (lambda c: c.records_per_s_spread) if rated else (lambda c: c.wall_spread)
        for i, (label, configs) in enumerate(series.items()):
            _plot_series(ax, configs, ticks, axis, (value, 1.0), label, i, bounds)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("records/s (higher is better)" if rated else "wall s (lower is better)")
        title = f"{'Throughput' if rated else 'Wall time'} by configuration: {sweep.target}"
        if sweep.jobs > 1:
            title += f"  ({sweep.jobs} runs at a time: noisier)"
        return _finish_series_plot(plt, fig, ax, axis, ticks, title, path)

    def sweep_timelines(self, sweep: Sweep, path: str | Path) -> Path:
        """Each configuration's median-peak run: RSS over time, overlaid."""
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(10.5, 5.2), dpi=110)
        colours = plt.get_cmap("tab20" if len(sweep.configs) > 10 else "tab10")
        node = False
        limits: set[int] = set()
        highest = 0
        for i, config in enumerate(sweep.configs):
            run = _median_run(sweep.runs, config)
            if run is None or not run.timeline:
                continue
            ax.plot(
                [s.t_s for s in run.timeline],
                [s.rss_bytes / MB for s in run.timeline],
                color=colours(i % colours.N),
                lw=1.5,
                ls="-" if run.ok else "--",
                label=params_text(config.params) + ("" if run.ok else f" [{run.status}]"),
            )
            if run.v8:
                heap = [(s.t_s, s.heap_bytes) for s in run.timeline if s.heap_bytes is not None]
                ax.plot(
                    [t for t, _ in heap],
                    [h / MB for _, h in heap],
                    color=colours(i % colours.N),
                    lw=1.0,
                    ls=":",
                )
                node = True
                limits.add(run.v8.heap_limit_bytes)
                highest = max(highest, run.peak_rss_bytes)
        for limit in sorted(x for x in limits if x and x <= 3 * highest):
            label = f"V8 heap limit {format_size(limit)}"
            ax.axhline(limit / MB, color="#5f6368", ls="-.", lw=0.9, label=label)
        ax.set_xlabel("seconds since start")
        ax.set_ylabel(
            "RSS of the process tree (solid), V8 heap used (dotted), MB (sampled)"
            if node
            else "RSS of the process tree, MB (sampled)"
        )
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.set_title(
            f"Timelines (median-peak run of each configuration): {sweep.target}",
            fontsize=11,
            loc="left",
        )
        ax.grid(alpha=0.3)
        _legend(ax)
        return _save(plt, fig, path)


def _series(sweep: Sweep) -> tuple[str, list[Any], dict[str, list[ConfigSummary]]]:
    """Return the x axis (batch when swept), its values, and the configs of each line."""
    names = list(sweep.axes)
    axis = "batch" if "batch" in names else (names[0] if names else "")
    ticks = sweep.axes.get(axis, [None])
    series: dict[str, list[ConfigSummary]] = {}
    for config in sweep.configs:
        rest = {k: v for k, v in config.params.items() if k != axis}
        series.setdefault(params_text(rest) if rest else "all", []).append(config)
    return axis, ticks, series


def _plot_series(
    ax: Any,
    configs: list[ConfigSummary],
    ticks: list[Any],
    axis: str,
    measure: tuple[Callable[[ConfigSummary], float | None], float],
    label: str,
    index: int,
    bounds: Callable[[ConfigSummary], list[Any] | None],
) -> None:
    """One line through the ok configs, min-max bars, failed configs as red crosses."""
    value, scale = measure
    colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
    points = [(c, v / scale) for c in configs if (v := value(c)) is not None]
    ok = [(_tick(ticks, c, axis), y, c) for c, y in points if c.status == "ok"]
    ax.plot(
        [x for x, _, _ in ok], [y for _, y, _ in ok], marker="o", color=colour, lw=1.8, label=label
    )
    for x, _, c in ok:
        low_high = bounds(c)
        if low_high:
            ax.vlines(x, low_high[0] / scale, low_high[1] / scale, color=colour, lw=4, alpha=0.3)
    for c, y in points:
        if c.status != "ok":
            x = _tick(ticks, c, axis)
            ax.plot([x], [y], marker="x", ms=10, mew=2.5, color="#c5221f")
            ax.annotate(
                c.status,
                (x, y),
                textcoords="offset points",
                xytext=(6, 4),
                fontsize=8,
                color="#c5221f",
            )


def _plot_v8(ax: Any, run: Run) -> int:
    """Draw V8's heap total and external memory, and the heap limit when it is near enough
    to be read against the curves; return the highest figure drawn (bytes)."""
    assert run.v8 is not None
    total = [(s.t_s, s.heap_total_bytes) for s in run.timeline if s.heap_total_bytes is not None]
    external = [(s.t_s, s.external_bytes) for s in run.timeline if s.external_bytes is not None]
    for series, colour, label in (
        (total, "#f9ab00", "V8 heap total"),
        (external, "#188038", "external (Buffers, array buffers)"),
    ):
        if series:
            ax.plot([t for t, _ in series], [b / MB for _, b in series], color=colour, lw=1.0,
                    label=label, zorder=2)  # fmt: skip
    highest = max((b for _, b in total), default=0)
    limit, peak = run.v8.heap_limit_bytes, run.v8.peak_heap_used_bytes
    label = f"V8 heap limit {format_size(limit)} (peak used {format_size(peak)})"
    if limit and limit <= 3 * max(run.peak_rss_bytes, highest, peak):
        ax.axhline(limit / MB, color="#9334e6", ls="-.", lw=1.2, label=label)
        return limit
    ax.plot([], [], color="#9334e6", ls="-.", lw=1.2, label=label + ", off the scale")
    return highest


def _budgets_in_view(budgets: list[int], top: float) -> tuple[list[int], list[int]]:
    """Budgets worth drawing: those below the data's top and the first one above it.

    A budget many times above every peak would squash the data into a line at the bottom.
    """
    shown = [b for b in sorted(budgets) if b <= top]
    above = [b for b in sorted(budgets) if b > top]
    if above and above[0] <= top * 6:
        shown.append(above.pop(0))
    return shown, above


def _finish_series_plot(
    plt: Any, fig: Any, ax: Any, axis: str, ticks: list[Any], title: str, path: str | Path
) -> Path:
    ax.set_xticks(range(len(ticks)), [str(t) for t in ticks])
    ax.set_xlim(-0.4, len(ticks) - 0.6)
    ax.set_xlabel(axis or "configuration")
    ax.set_title(title, fontsize=11, loc="left")
    ax.grid(alpha=0.3)
    _legend(ax)
    return _save(plt, fig, path)


def _legend(ax: Any) -> None:
    """A legend right of the plot, where it hides no data (none when nothing is labelled)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def _tick(ticks: list[Any], config: ConfigSummary, axis: str) -> int:
    """The x position of `config` on the `axis` ticks (its value matched by value)."""
    found = index_of(ticks, config.params.get(axis))
    if found is None:
        raise ValueError(f"{config.params.get(axis)!r} is not a value of {axis}")
    return found


def _median_run(runs: list[Run], config: ConfigSummary) -> Run | None:
    mine = [r for r in runs if has_params(r.params, config.params)]
    ordered = sorted(mine, key=lambda r: r.peak_rss_bytes)
    return ordered[len(ordered) // 2] if ordered else None


def _shade_phases(ax: Any, run: Run) -> None:
    """Shade each phase span and name it at the top, one row lower when names would touch."""
    end = run.timeline[-1].t_s if run.timeline else run.wall_s
    marks = [(p["t_s"], p["phase"]) for p in run.phases]
    colours: dict[str, str] = {}
    row_free_at = [float("-inf")] * 3  # per label row: where the last name there ends (s)
    span = max(end, 1e-9)
    for i, (start, name) in enumerate(marks):
        stop = marks[i + 1][0] if i + 1 < len(marks) else end
        if name is None or stop <= start:
            continue
        colour = colours.setdefault(name, PHASE_COLOURS[len(colours) % len(PHASE_COLOURS)])
        ax.axvspan(start, stop, color=colour, alpha=0.8, lw=0)
        row = next((r for r, free in enumerate(row_free_at) if start >= free), None)
        if row is None:
            continue  # three rows of names already crowd this point: the shading still shows
        # About 1% of the axis per character at this figure size.
        row_free_at[row] = start + span * 0.011 * (len(name) + 2)
        ax.text(
            start,
            1.0 - 0.045 * row,
            f" {name}",
            transform=ax.get_xaxis_transform(),
            va="top",
            fontsize=8,
            color="#3c4043",
        )


def _save(plt: Any, fig: Any, path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(target)
    plt.close(fig)
    return target


# --- monitor: RSS (and USS) over time against the limit and the thresholds ---

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
    fig, ax = plt.subplots(figsize=(11.5, 4.8), dpi=110)
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
    _legend(ax)
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
