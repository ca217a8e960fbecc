"""Every renderer on the same analysed sweep: the decision must read the same in each."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from memdiag.analysis.sweep import analyse_sweep
from memdiag.model import Run, Sweep
from memdiag.render.html import HtmlRenderer
from memdiag.render.markdown import MarkdownRenderer
from memdiag.render.png import PngRenderer
from memdiag.render.terminal import TerminalRenderer

MB = 1024 * 1024


def make_sweep(jobs: int = 1) -> Sweep:
    runs = []
    for variant, per_record in (("accumulate", 2000), ("stream", 0)):
        for batch in (10, 50):
            for records in (1000, 5000, 20000):
                peak = 40 * MB + batch * MB + per_record * records
                status = "oom" if peak > 120 * MB else "ok"
                runs.append(
                    Run(
                        target="import",
                        params={"variant": variant, "batch": batch, "records": records},
                        status=status,
                        peak_rss_bytes=peak,
                        wall_s=records / (1000 * batch**0.5),
                        cpu_s=1.0,
                        records=records,
                        records_per_s=1000 * batch**0.5,
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
    assert "memory grows with the input" in text and "memory is constant" in text
    assert "noisier" in text  # --jobs 2
    assert "records=220,000" in text
    assert "oom" in text


def test_png_renderer_writes_every_plot(tmp_path: Path) -> None:
    images = PngRenderer().sweep(make_sweep(), tmp_path)
    names = [p.name for p in images.values()]
    assert names == ["capacity.png", "peak.png", "throughput.png", "timelines.png"]
    for path in images.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_is_self_contained(tmp_path: Path) -> None:
    text = html(make_sweep(), tmp_path)
    assert text.count("data:image/png;base64,") == 4
    assert "<script" not in text and 'href="http' not in text
