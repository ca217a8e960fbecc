"""Markdown reports (for a CI comment or a pull request), from saved findings only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memdiag.model import Sweep
from memdiag.render.sweep_view import notes, summary, sweep_tables
from memdiag.render.tables import TableView

if TYPE_CHECKING:
    from memdiag.model import GateResult, LeakReport


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table_markdown(table: TableView) -> str:
    """Return one table as a Markdown section: heading, table, and its note in italics."""
    lines = [f"## {table.title}", ""]
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "|".join(" --- " for _ in table.columns) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    if table.note:
        lines += ["", f"_{table.note}_"]
    return "\n".join(lines) + "\n"


class MarkdownRenderer:
    """Renders a sweep as Markdown text."""

    def sweep(self, sweep: Sweep, images: dict[str, str] | None = None) -> str:
        """Return the report; `images` maps a plot's title to its path relative to the file."""
        parts = [f"# Sweep: {sweep.target}", ""]
        parts += [f"- **{label}**: {text}" for label, text in summary(sweep)]
        parts.append("")
        parts += [f"> **Note:** {note}\n" for note in notes(sweep)]
        for table in sweep_tables(sweep):
            parts.append(table_markdown(table))
        for title, path in (images or {}).items():
            parts.append(f"![{title}]({path})\n")
        return "\n".join(parts)

    def entries(self, title: str, entries: list[dict[str, Any]]) -> str:
        """Return comparable entries (a baseline, a pytest report) as a Markdown table."""
        from memdiag.render.gate_view import entries_table

        return table_markdown(entries_table(title, entries))

    def gate(self, result: GateResult) -> str:
        """Return the gate's verdicts as Markdown, for a pull-request comment."""
        from memdiag.render.gate_view import gate_table, headline, missing_table

        parts = [f"**{headline(result)}**", "", table_markdown(gate_table(result))]
        missing = missing_table(result)
        if missing is not None:
            parts.append(table_markdown(missing))
        return "\n".join(parts)


class LeakMarkdownRenderer:
    """Returns a leak report as Markdown."""

    def report(self, report: LeakReport, searched: str | None = None) -> str:
        """Return the report as Markdown: summary, verdict, sites, types, chains, native."""
        from memdiag.render.leaks_view import (
            OWNER_COLUMNS,
            SITE_COLUMNS,
            TYPE_COLUMNS,
            leak_view,
        )

        view = leak_view(report, searched=searched)
        out = ["# memdiag leaks", ""]
        out += [f"- **{label}**: {text}" for label, text in view.summary]
        out += ["", f"**{view.headline}**", ""]
        if view.owners_headline and view.owner_rows and view.owner_details:
            out += ["## Owners of the growth", "", view.owners_headline, ""]
            rows = [[f"`{r[0]}`", *r[1:]] for r in view.owner_rows]
            out += [_rows_markdown(OWNER_COLUMNS, rows), ""]
            for row, held in zip(view.owner_rows, view.owner_details, strict=True):
                out += [f"`{row[0]}`:", "", *[f"- {h}" for h in held], ""]
        if view.site_rows:
            out += [
                "## Leaking allocation sites",
                "",
                _rows_markdown(SITE_COLUMNS, view.site_rows),
                "",
            ]
            for row, calls in zip(view.site_rows, view.site_details, strict=True):
                if calls[1:]:  # one frame (the default) has no callers to list
                    out += [f"`{row[0]}` called from:", "", *[f"- `{c}`" for c in calls[1:]], ""]
        if view.type_rows:
            out += ["## Leaking types", "", _rows_markdown(TYPE_COLUMNS, view.type_rows), ""]
            out += ["## What keeps them alive", ""]
            for chain in view.chains:
                out += ["```", *chain, "```", ""]
        if view.native:
            out += ["## Native growth", "", *view.native, ""]
        return "\n".join(out)


def _rows_markdown(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)
