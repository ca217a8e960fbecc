"""Writes a sweep's report directory: results.json, report.md, report.html and the PNGs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from memdiag.model import Sweep, write_json_atomic


@dataclass(frozen=True)
class ReportFiles:
    """Where each part of a report was written."""

    results: Path
    markdown: Path
    html: Path
    images: dict[str, Path]


def save_results(sweep: Sweep, directory: str | Path) -> Path:
    """Write results.json atomically (a reader or a resume never sees half a file)."""
    return write_json_atomic(Path(directory) / "results.json", sweep.to_dict())


def write_report(sweep: Sweep, directory: str | Path, results: bool = True) -> ReportFiles:
    """Write the PNGs, report.md and report.html (and results.json unless told not to)."""
    from memdiag.render.html import HtmlRenderer
    from memdiag.render.markdown import MarkdownRenderer
    from memdiag.render.png import PngRenderer

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    results_path = save_results(sweep, folder) if results else folder / "results.json"
    images = PngRenderer().sweep(sweep, folder)
    markdown = folder / "report.md"
    relative = {title: path.name for title, path in images.items()}
    markdown.write_text(MarkdownRenderer().sweep(sweep, relative))
    html = folder / "report.html"
    html.write_text(HtmlRenderer().sweep(sweep, images))
    return ReportFiles(results_path, markdown, html, images)
