"""Checks that a written PNG shows the data: a line's pixels sit where its data belongs.

The renderers close each figure after saving it. `keep_figures` keeps them open instead, so
a test can map the data through the figure's own axes to pixels, and compare that with the
pixels of the line's colour in the PNG as written (read back with matplotlib.image).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# How far the drawn line may reach past its data, in pixels: half the line width, the
# antialiasing fringe, the projecting cap, and a marker's radius where there are markers.
SLACK_PX = 7.0


def pyplot() -> Any:
    from memdiag.render.png import _pyplot

    return _pyplot()


def keep_figures(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> list[Any]:
    """Make the renderers' `plt.close(fig)` keep `fig` until the test ends; return the list
    they are kept in."""
    plt = pyplot()
    close = plt.close
    kept: list[Any] = []
    monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
    request.addfinalizer(lambda: [close(fig) for fig in kept])
    return kept


def line_of(fig: Any, label: str) -> tuple[Any, Any]:
    """Return (axes, Line2D) of the line labelled `label` (a prefix) in `fig`."""
    for ax in fig.axes:
        for line in ax.get_lines():
            if str(line.get_label()).startswith(label):
                return ax, line
    labels = [str(line.get_label()) for ax in fig.axes for line in ax.get_lines()]
    raise AssertionError(f"no line labelled {label!r}; lines: {labels}")


def colour_pixels(png: Path, fig: Any, ax: Any, colour: Any) -> np.ndarray:
    """Return the (x, y) display pixels (origin bottom left) of `colour` inside the axes,
    outside its legend: where the data of that colour was drawn in the PNG."""
    import matplotlib.image
    from matplotlib.colors import to_rgb

    image = matplotlib.image.imread(str(png))
    height, width = image.shape[:2]
    size = fig.get_size_inches() * fig.dpi
    assert (width, height) == (round(size[0]), round(size[1])), "PNG size is not the figure's"
    close = np.all(np.abs(image[..., :3] - np.array(to_rgb(colour))) < 0.06, axis=-1)
    rows, cols = np.nonzero(close)
    points = np.column_stack([cols + 0.5, height - rows - 0.5])
    inside = within(points, ax.get_window_extent())
    legend = ax.get_legend()
    if legend is not None:
        inside &= ~within(points, legend.get_window_extent())
    return points[inside]


def within(points: np.ndarray, box: Any) -> np.ndarray:
    """Return which of the (x, y) points lie inside the display box."""
    x, y = points[:, 0], points[:, 1]
    return (x >= box.x0) & (x <= box.x1) & (y >= box.y0) & (y <= box.y1)


def assert_line_shows(
    png: Path,
    fig: Any,
    label: str,
    xs: Sequence[float],
    ys: Sequence[float],
    min_height: float = 0.3,
) -> None:
    """Assert that the line labelled `label` plots (xs, ys) and that, in the PNG, the pixels of
    its colour span exactly the data's extent, taking at least `min_height` of the axes'
    height (data squashed into a flat line at the bottom does not show)."""
    ax, line = line_of(fig, label)
    assert np.allclose(np.asarray(line.get_xdata(), float), xs)
    assert np.allclose(np.asarray(line.get_ydata(), float), ys)
    drawn = colour_pixels(png, fig, ax, line.get_color())
    assert len(drawn) > 20, f"{label}: the line's colour is not in the image"
    data = ax.transData.transform(np.column_stack([xs, ys]))
    low, high = data.min(axis=0), data.max(axis=0)
    low_px, high_px = drawn.min(axis=0), drawn.max(axis=0)
    assert np.all(np.abs(low_px - low) <= SLACK_PX), (label, low_px, low)
    assert np.all(np.abs(high_px - high) <= SLACK_PX), (label, high_px, high)
    box = ax.get_window_extent()
    assert (high[1] - low[1]) >= min_height * box.height, f"{label}: the data is squashed"


def assert_drawn_alike(first: Path, second: Path, fig: Any) -> None:
    """Assert that every line of `fig` (which drew `second`) covers the same pixels in
    `first`: a PNG written elsewhere (by the CLI) shows the same data as `second`."""
    for ax in fig.axes:
        for line in ax.get_lines():
            if not line.get_visible() or len(line.get_xdata()) == 0:
                continue
            ours = colour_pixels(second, fig, ax, line.get_color())
            theirs = colour_pixels(first, fig, ax, line.get_color())
            label = str(line.get_label())
            assert len(theirs) >= 0.9 * len(ours), f"{label}: missing from {first.name}"
            if len(ours):
                assert np.allclose(theirs.min(axis=0), ours.min(axis=0), atol=2), label
                assert np.allclose(theirs.max(axis=0), ours.max(axis=0), atol=2), label


def assert_run_plot_shows(
    png: Path, run_json: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Assert that `png` (a run's timeline plot, written by the CLI) draws the saved run's
    RSS samples where they belong: as a plot of the same run drawn here, checked in pixels."""
    from memdiag.model import load_run
    from memdiag.render.png import MB, PngRenderer

    figures = keep_figures(monkeypatch, request)
    run = load_run(run_json)
    again = PngRenderer().timeline(run, png.with_name(f"{png.stem}-checked.png"))
    fig = figures[-1]
    times, rss = [s.t_s for s in run.timeline], [s.rss_bytes / MB for s in run.timeline]
    assert len(times) >= 3, "the run has no timeline to plot"
    assert_line_shows(again, fig, "RSS", times, rss, min_height=0.1)
    assert_drawn_alike(png, again, fig)


def assert_monitor_plot_shows(
    png: Path, samples: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Assert that `png` (a monitor's plot, written by the CLI) draws the saved samples' RSS
    where they belong, as the same plot drawn here from the samples file."""
    from memdiag.cli.report import render_monitor_file
    from memdiag.measure.monitor.file import read_samples_file
    from memdiag.render.png import MB

    figures = keep_figures(monkeypatch, request)
    again = png.with_name(f"{png.stem}-checked.png")
    assert render_monitor_file(str(samples), str(again)) == 0
    fig = figures[-1]
    record = read_samples_file(str(samples))
    times = [s.t_s for s in record.samples]
    rss = [s.rss_bytes / MB for s in record.samples]
    assert len(times) >= 3, "the monitor has too few samples to plot"
    assert_line_shows(again, fig, "RSS", times, rss, min_height=0.0)
    assert_drawn_alike(png, again, fig)


def assert_sweep_plots_show(
    folder: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Assert that the sweep plots in `folder` (written by the CLI) show its saved results:
    each series' median peaks where they belong, and every line as drawn here again."""
    from memdiag.model import load_sweep
    from memdiag.render.png import MB, PngRenderer, _series

    figures = keep_figures(monkeypatch, request)
    sweep = load_sweep(folder / "results.json")
    again = PngRenderer().sweep(sweep, folder / "checked")
    axis, ticks, series = _series(sweep)
    for label, configs in list(series.items())[-1:]:  # the last series is drawn on top
        ok = [c for c in configs if c.status == "ok"]
        xs = [ticks.index(c.params.get(axis)) for c in ok]
        peaks = [(c.peak_rss_bytes or 0) / MB for c in ok]
        assert_line_shows(again["Peak RSS by configuration"], figures[0], label, xs, peaks, 0)
    for fig, path in zip(figures, again.values(), strict=True):
        assert_drawn_alike(folder / path.name, path, fig)
