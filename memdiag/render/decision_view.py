"""The tables of the decision at production size: predictions, capacity, searches.

Formatting only, like sweep_view: every number was computed by analysis and saved.
"""

from __future__ import annotations

from typing import Any

from memdiag.model import Sweep
from memdiag.render.tables import TableView, params_text, seconds
from memdiag.units import format_size


def predictions_table(sweep: Sweep) -> TableView | None:
    if not sweep.predictions:
        return None
    rows, tones = [], []
    for p in sweep.predictions:
        low_high = "-"
        if p.peak_low_bytes is not None and p.peak_high_bytes is not None:
            low_high = f"{format_size(p.peak_low_bytes)} – {format_size(p.peak_high_bytes)}"
        rows.append(
            [
                f"{p.axis}={p.value:,.0f}",
                params_text(p.params),
                p.model or p.verdict or "-",
                format_size(p.peak_rss_bytes),
                low_high,
                ", ".join(format_size(b) for b in p.fits_budgets) or "none",
                "-" if p.wall_s is None else f"≈ {seconds(p.wall_s)}",
                "-" if p.extrapolation is None else f"{p.extrapolation:,.1f}×",
                p.warning or "firm",
            ]
        )
        tones.append("" if p.firm else "bad")
    columns = [
        "at",
        "params",
        "model",
        "predicted peak",
        "95% interval",
        f"fits (high ≤ {sweep.headroom:.0%})",
    ]
    columns += ["wall (predicted)", "past largest measured", "firm?"]
    note = (
        "Interval from the chosen model's residuals and the repeats' spread, never narrower "
        "than the plausible models' disagreement; a prediction is never below the largest "
        "peak measured. Constant memory predicts the largest peak measured. Wall time from "
        "each configuration's own fit of wall time against the size."
    )
    return TableView("predictions", "Predictions", columns, rows, tones, note)


def capacity_table(sweep: Sweep) -> TableView | None:
    if not sweep.capacity:
        return None
    budgets = sorted({c.budget_bytes for c in sweep.capacity})
    groups: dict[str, list[Any]] = {}
    for c in sweep.capacity:
        groups.setdefault(repr((c.axis, sorted(c.params.items()))), []).append(c)
    rows, tones = [], []
    for entries in groups.values():
        first = entries[0]
        by_budget = {c.budget_bytes: c for c in entries}
        cells = [first.axis, params_text(first.params)]
        for b in budgets:
            entry = by_budget.get(b)
            words = "-" if entry is None else _capacity_words(entry.largest_fitting, entry.axis)
            cells.append(words)
        rows.append(cells)
        tones.append("good" if first.verdict == "constant" else "")
    columns = ["axis", "configuration", *(format_size(b) for b in budgets)]
    note = (
        f"The largest input whose predicted upper bound stays under {sweep.headroom:.0%} of "
        "each budget; constant memory has no limit."
    )
    return TableView(
        "capacity", "Capacity: the largest input that fits", columns, rows, tones, note
    )


def _capacity_words(largest: int | None, axis: str) -> str:
    if largest is None:
        return "no limit"
    if largest == 0:
        return "nothing fits"
    return f"{largest:,} {axis}"


def _probe_word(probe: dict[str, Any]) -> str:
    if probe["fits"]:
        return "fits"
    return "over" if probe["status"] == "ok" else str(probe["status"])


def search_table(sweep: Sweep) -> TableView | None:
    if not sweep.search:
        return None
    rows, tones = [], []
    for s in sweep.search:
        probes = ", ".join(f"{p['value']} {_probe_word(p)}" for p in s.probes)
        rows.append(
            [
                format_size(s.budget_bytes),
                params_text(s.params) if s.params else "-",
                "-" if s.largest_fitting is None else f"{s.axis}={s.largest_fitting}",
                "-" if s.fastest_fitting is None else f"{s.axis}={s.fastest_fitting}",
                f"{len(s.probes)}: {probes}" if probes else "0",
                s.note or ("done" if s.done else "not finished"),
            ]
        )
        tones.append("good" if s.largest_fitting is not None else "bad")
    columns = ["budget", "other params", "largest that fits", "fastest that fits"]
    columns += ["probes of this budget", "status"]
    note = (
        "Each budget searched in runs under a limit of headroom × budget (an over-budget "
        "probe stops early as oom): doubling, then bisecting where the fit points, to one "
        "unit or 2%. Probes of smaller budgets inform the larger ones."
    )
    return TableView("search", "Search: the largest value that fits", columns, rows, tones, note)
