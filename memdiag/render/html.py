"""A self-contained HTML report: one file, plots embedded as base64, no server needed."""

from __future__ import annotations

import base64
from pathlib import Path

from memdiag.model import Sweep
from memdiag.render.sweep_view import notes, summary, sweep_tables

TEMPLATES = Path(__file__).parent / "templates"


def embed_png(path: str | Path) -> str:
    """Return a PNG file as a `data:` URI, so the report needs no file beside it."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


class HtmlRenderer:
    """Renders a sweep through the jinja2 template `templates/sweep.html.j2`."""

    def sweep(self, sweep: Sweep, images: dict[str, Path] | None = None) -> str:
        """Return the report's HTML; `images` maps a plot's title to its PNG file."""
        import jinja2

        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=jinja2.select_autoescape(["html", "j2"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        template = env.get_template("sweep.html.j2")
        return template.render(
            sweep=sweep,
            summary=summary(sweep),
            notes=notes(sweep),
            tables=sweep_tables(sweep),
            images=[(title, embed_png(path)) for title, path in (images or {}).items()],
        )
