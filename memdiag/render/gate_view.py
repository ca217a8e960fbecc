"""The gate's verdicts as display tables, shared by the Markdown and terminal output."""

from __future__ import annotations

from typing import Any

from memdiag.model import GateResult, GateRow
from memdiag.render.tables import TableView, params_text, percent, seconds
from memdiag.units import format_size

VERDICT_TEXT = {
    "ok": "✅ ok",
    "improved": "✅ improved",
    "within noise": "✅ within noise",
    "regressed": "❌ regressed",
    "failed": "❌ failed",
    "over limit": "❌ over limit",
}


def _figure(metric: str, value: float | None) -> str:
    return seconds(value) if metric == "wall" else format_size(value)


def _label(entry: dict[str, Any] | GateRow) -> str:
    target, params = (
        (entry.target, entry.params)
        if isinstance(entry, GateRow)
        else (entry["target"], entry["params"])
    )
    return f"{target} {params_text(params)}"


def gate_table(result: GateResult) -> TableView:
    rows, tones = [], []
    for row in result.rows:
        verdict = VERDICT_TEXT[row.verdict] + (f" ({row.reason})" if row.reason else "")
        rows.append(
            [
                _label(row),
                _figure(result.metric, row.baseline),
                _figure(result.metric, row.current),
                percent(row.change, signed=True),
                verdict,
            ]
        )
        tones.append("bad" if row in result.failed else "good")
    limit = f", max peak {format_size(result.max_peak)}" if result.max_peak else ""
    note = (
        f"Metric {result.metric}, tolerance {result.tolerance:.0%}{limit}. Past the tolerance "
        "is a regression unless the median is still inside the baseline's own spread; past "
        "twice the tolerance it always is."
    )
    columns = ["configuration", "baseline", "now", "change", "verdict"]
    return TableView("gate", "Memory gate", columns, rows, tones, note)


def missing_table(result: GateResult) -> TableView | None:
    rows = [[_label(e), "in the baseline only"] for e in result.only_in_baseline]
    rows += [[_label(e), "in the current results only"] for e in result.only_in_current]
    if not rows:
        return None
    return TableView("missing", "Not compared", ["configuration", "where"], rows)


def headline(result: GateResult) -> str:
    failed = len(result.failed)
    if failed:
        return f"memdiag gate: {failed} of {len(result.rows)} configurations regressed"
    return f"memdiag gate: no regression in {len(result.rows)} configurations"


def entries_table(title: str, entries: list[dict[str, Any]]) -> TableView:
    """Return comparable entries (a baseline's or a pytest report's) as one table."""
    rows = [
        [
            _label(e),
            str(e.get("status") or "-"),
            format_size(e.get("peak_rss_bytes")),
            format_size(e.get("peak_heap_bytes")),
            seconds(e.get("wall_s")),
        ]
        for e in entries
    ]
    columns = ["configuration", "status", "peak RSS", "peak heap", "wall"]
    return TableView("entries", title, columns, rows, ["good"] * len(rows), "")
