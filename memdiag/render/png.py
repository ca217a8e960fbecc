"""PNG plots through matplotlib, imported only when a plot is asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memdiag.model import Run
from memdiag.units import format_size

MB = 1024 * 1024
PHASE_COLOURS = ["#e8f0fe", "#fef3e2", "#e6f4ea", "#fce8e6", "#f3e8fd", "#e4f7fb"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(run: Run) -> str:
    return " ".join(f"{k}={v}" for k, v in run.params.items()) or run.target


class PngRenderer:
    """Writes plots as PNG files."""

    def timeline(self, run: Run, path: str | Path) -> Path:
        """Plot one run's RSS (and heap) over time with phases shaded and the exact peak."""
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(10, 4.8), dpi=110)
        times = [s.t_s for s in run.timeline]
        ax.plot(
            times,
            [s.rss_bytes / MB for s in run.timeline],
            color="#1a73e8",
            lw=1.8,
            label="RSS (process tree, sampled)",
        )
        heap = [(s.t_s, s.heap_bytes) for s in run.timeline if s.heap_bytes is not None]
        if heap:
            ax.plot(
                [t for t, _ in heap],
                [h / MB for _, h in heap],
                color="#e37400",
                lw=1.4,
                label="heap (memray)",
            )
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
        ax.set_ylim(bottom=0, top=max(run.peak_rss_bytes, run.limit_bytes or 0) / MB * 1.15)
        ax.set_xlim(left=0)
        ax.set_title(f"{run.target}  {_label(run)}  [{run.status}]", fontsize=11, loc="left")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
        return _save(plt, fig, path)


def _shade_phases(ax: Any, run: Run) -> None:
    """Shade each phase span and write its name at the top of the span."""
    end = run.timeline[-1].t_s if run.timeline else run.wall_s
    marks = [(p["t_s"], p["phase"]) for p in run.phases]
    colours: dict[str, str] = {}
    for i, (start, name) in enumerate(marks):
        stop = marks[i + 1][0] if i + 1 < len(marks) else end
        if name is None or stop <= start:
            continue
        colour = colours.setdefault(name, PHASE_COLOURS[len(colours) % len(PHASE_COLOURS)])
        ax.axvspan(start, stop, color=colour, alpha=0.8, lw=0)
        ax.text(
            start,
            1.0,
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
