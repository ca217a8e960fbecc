"""Every renderer on the same analysed sweep: the decision must read the same in each."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from memdiag.analysis.sweep import analyse_sweep
from memdiag.model import Run, Sample, Sweep
from memdiag.render.html import HtmlRenderer
from memdiag.render.markdown import MarkdownRenderer
from memdiag.render.png import PngRenderer
from memdiag.render.tables import params_text
from memdiag.render.terminal import TerminalRenderer
from tests.plots import assert_line_shows, keep_figures, line_of

MB = 1024 * 1024


def ramp(peak: int, wall_s: float, steps: int = 10) -> list[Sample]:
    """A timeline rising from half the peak to the peak over the run."""
    return [
        Sample(t_s=wall_s * k / steps, rss_bytes=int(peak * (0.5 + 0.5 * k / steps)))
        for k in range(steps + 1)
    ]


def make_sweep(jobs: int = 1, timelines: bool = False) -> Sweep:
    runs = []
    for variant, per_record in (("accumulate", 2000), ("stream", 0)):
        for batch in (10, 50):
            for records in (1000, 5000, 20000):
                peak = 40 * MB + batch * MB + per_record * records
                status = "oom" if peak > 120 * MB else "ok"
                wall_s = records / (1000 * batch**0.5)
                runs.append(
                    Run(
                        target="import",
                        params={"variant": variant, "batch": batch, "records": records},
                        status=status,
                        peak_rss_bytes=peak,
                        wall_s=wall_s,
                        cpu_s=1.0,
                        records=records,
                        records_per_s=1000 * batch**0.5,
                        timeline=ramp(peak, wall_s) if timelines else [],
                    )
                )
    sweep = Sweep(
        target="import",
        axes={
            "variant": ["accumulate", "stream"],
            "batch": [10, 50],
            "records": [1000, 5000, 20000],
        },
        repeat=1,
        jobs=jobs,
        budgets_bytes=[48 * MB, 512 * MB],
        predict={"records": 220000},
        runs=runs,
    )
    return analyse_sweep(sweep)


def terminal(sweep: Sweep, folder: Path) -> str:
    buffer = io.StringIO()
    TerminalRenderer(Console(file=buffer, width=200)).sweep(sweep)
    return buffer.getvalue()


def markdown(sweep: Sweep, folder: Path) -> str:
    return MarkdownRenderer().sweep(sweep)


def html(sweep: Sweep, folder: Path) -> str:
    images = PngRenderer().sweep(sweep, folder)
    return HtmlRenderer().sweep(sweep, images)


TEXT_RENDERERS: list[Callable[[Sweep, Path], str]] = [terminal, markdown, html]


@pytest.mark.parametrize("render", TEXT_RENDERERS)
def test_text_renderers_show_the_decision(
    render: Callable[[Sweep, Path], str], tmp_path: Path
) -> None:
    sweep = make_sweep(jobs=2)
    text = render(sweep, tmp_path)
    assert "nothing fits" in text  # 48 MB: every config is above 38.4 MB
    # 512 MB: decided at --at records=220000, where batch=50 is fastest and only stream fits
    # (accumulate grows past 80% of 512 MB there, and at batch=50 went over its limit)
    assert "variant=stream batch=50 records=220000" in text
    assert "Decision matrix at records=220000 (predicted from each configuration" in text
    assert "188,533 records" in text  # capacity of accumulate batch=10 in 512 MB
    assert "grows linearly: doubling the input multiplies the memory by" in text
    assert "constant, about 50.0 MB" in text
    assert "noisier" in text  # --jobs 2
    assert "records=220,000" in text
    assert "oom" in text


def test_png_renderer_plots_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    figures = keep_figures(monkeypatch, request)
    sweep = make_sweep(timelines=True)
    images = PngRenderer().sweep(sweep, tmp_path)
    names = [p.name for p in images.values()]
    assert names == ["capacity.png", "peak.png", "throughput.png", "timelines.png"]
    capacity_fig, peak_fig, rate_fig, time_fig = figures
    # the capacity plot: each fit's measured dots, and its fitted line out to --at records
    ax, dots = line_of(capacity_fig, "variant=accumulate batch=10 (linear)")
    assert list(dots.get_xdata()) == [1000, 5000, 20000]
    fitted = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert fitted and all(max(line.get_xdata()) == 220000 for line in fitted)
    # the last series drawn lies on top: stream at records=20000, batch 10 and 50 (x 0 and 1)
    last = "variant=stream records=20000"
    stream = [c for c in sweep.configs if params_text(c.params).startswith("variant=stream")]
    peaks = [c.peak_rss_bytes / MB for c in stream if c.params["records"] == 20000]
    assert peaks == [50, 90]
    # the 512 MB budget is drawn too, so the 40 MB between the points is a small part
    assert_line_shows(images["Peak RSS by configuration"], peak_fig, last, [0, 1], peaks, 0.05)
    rates = [1000 * 10**0.5, 1000 * 50**0.5]
    assert_line_shows(images["Throughput by configuration"], rate_fig, last, [0, 1], rates)
    # every configuration's median run is drawn, the last one (on top) checked in pixels
    assert len(time_fig.axes[0].get_lines()) == len(sweep.configs)
    top = sweep.configs[-1]
    run = next(r for r in sweep.runs if r.params == top.params)
    xs, ys = [s.t_s for s in run.timeline], [s.rss_bytes / MB for s in run.timeline]
    assert_line_shows(images["Timelines overlaid"], time_fig, params_text(top.params), xs, ys)


def test_run_timeline_png_shows_rss_and_heap(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    figures = keep_figures(monkeypatch, request)
    timeline = [
        Sample(t_s=0.2 * k, rss_bytes=(20 + 9 * k) * MB, heap_bytes=(5 + 6 * k) * MB)
        for k in range(21)
    ]
    run = Run(
        target="job",
        params={"batch": 5},
        status="ok",
        peak_rss_bytes=210 * MB,
        wall_s=4.0,
        cpu_s=4.0,
        timeline=timeline,
    )
    path = PngRenderer().timeline(run, tmp_path / "t.png")
    (fig,) = figures
    times = [s.t_s for s in timeline]
    assert_line_shows(path, fig, "RSS", times, [20 + 9 * k for k in range(21)])
    assert_line_shows(path, fig, "heap", times, [5 + 6 * k for k in range(21)])
    ax, peak = line_of(fig, "peak RSS")
    assert list(peak.get_ydata()) == [210, 210] and ax.get_ylim()[1] >= 210


def test_html_is_self_contained(tmp_path: Path) -> None:
    text = html(make_sweep(), tmp_path)
    assert text.count("data:image/png;base64,") == 4
    assert "<script" not in text and 'href="http' not in text


def test_report_with_a_new_budget_never_rewrites_its_input(tmp_path: Path) -> None:
    from memdiag.render.report import save_results
    from tests.conftest import memdiag

    source = save_results(make_sweep(), tmp_path / "sweep")
    before = source.read_bytes()
    proc = memdiag("report", str(source), "--budget", "256MB", "--headroom", "0.5", "-q")
    assert proc.returncode == 0, proc.stderr
    assert source.read_bytes() == before
    decided = json.loads((tmp_path / "sweep" / "decision" / "results.json").read_text())
    assert [row["budget_bytes"] for row in decided["matrix"]] == [256 * MB]
    assert decided["headroom"] == 0.5
    # an --out that is the source's own folder would rewrite it: refused, the file untouched
    proc = memdiag("report", str(source), "--budget", "1GB", "--out", str(tmp_path / "sweep"))
    assert proc.returncode == 2 and "would rewrite" in proc.stderr, proc.stderr
    assert source.read_bytes() == before
    proc = memdiag("report", str(source), "--headroom", "80")
    assert proc.returncode == 2 and "--headroom 80: a bare number is a fraction" in proc.stderr
