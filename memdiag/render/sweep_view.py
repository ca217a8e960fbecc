"""A sweep's findings as titled tables of display strings, shared by every text renderer.

Formatting only: every number shown here was computed by analysis and saved in the Sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memdiag.model import ConfigSummary, MatrixRow, Sweep
from memdiag.units import format_size


@dataclass(frozen=True)
class TableView:
    """A table to show: its title, column names, rows, one CSS-ish tone per row, a note."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    tones: list[str] = field(default_factory=list)
    note: str = ""


def params_text(params: dict[str, Any] | None) -> str:
    """Return `batch=50 concurrency=2`, or `(defaults)` for no params."""
    if not params:
        return "(defaults)"
    return " ".join(
        f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in params.items()
    )


def percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.0%}" if signed else f"{value:.0%}"


def times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}×"


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def spread(values: list[Any] | None, fmt: Any) -> str:
    return "-" if not values else f"{fmt(values[0])} – {fmt(values[1])}"


def summary(sweep: Sweep) -> list[tuple[str, str]]:
    """Return (label, text) lines describing what was swept and how."""
    axes = "; ".join(
        f"{k} = auto (probed: {', '.join(map(str, v)) or 'none yet'})"
        if k in sweep.auto
        else f"{k} = {', '.join(map(str, v))}"
        for k, v in sweep.axes.items()
    )
    expected = sweep.repeat * max(1, _product(sweep.axes))
    runs = f"{len(sweep.runs)} of {expected} ({sweep.repeat} per configuration)"
    if sweep.auto:
        runs = f"{len(sweep.runs)} search probes, one run each"
    env = sweep.env
    lines = [
        ("target", sweep.target),
        ("axes", axes or "(none: one configuration)"),
        ("fixed params", params_text(sweep.base) if sweep.base else "-"),
        ("runs", runs),
        ("headroom", f"{sweep.headroom:.0%} of each budget"),
        ("reference", params_text(_reference_params(sweep))),
        ("jobs", f"{sweep.jobs} at a time"),
    ]
    if sweep.predict:
        lines.append(("decided at", params_text(sweep.predict_at())))
    if sweep.confirm_runs:
        lines.append(("confirmation runs", str(len(sweep.confirm_runs))))
    if sweep.cluster:  # --jobs is for local sweeps: a cluster runs one per worker
        hosts = len(sweep.hosts)
        lines = [(k, "one per worker at a time" if k == "jobs" else v) for k, v in lines]
        on = f" (runs on {hosts} host{'s' * (hosts != 1)})" if hosts else ""
        lines.append(("cluster", f"{sweep.cluster}{on}"))
    if sweep.limit_bytes:
        lines.append(("limit per run", format_size(sweep.limit_bytes)))
    if sweep.timeout_s:
        lines.append(("timeout per run", seconds(sweep.timeout_s)))
    lines.append(
        (
            "machine",
            f"{env.get('platform', '?')}, {env.get('cpus', '?')} CPUs, "
            f"{format_size(env.get('total_memory_bytes'))}, Python {env.get('python', '?')}",
        )
    )
    lines.append(("started", sweep.started_at or "-"))
    return lines


def notes(sweep: Sweep) -> list[str]:
    """Return the caveats a reader must know before trusting the numbers."""
    out = []
    if sweep.jobs > 1:
        out.append(
            f"Runs went {sweep.jobs} at a time: peaks are per process and exact, but wall "
            "times and records/s are noisier (the runs shared the CPUs)."
        )
    # A search's probes over a budget stop as oom by design: not a failure worth a note.
    failed = [
        c for c in sweep.configs if c.status != "ok" and not (sweep.auto and c.status == "oom")
    ]
    if failed:
        out.append(
            f"{len(failed)} configuration(s) did not finish ok and are not candidates: "
            + "; ".join(f"{params_text(c.params)}: {c.status}" for c in failed)
        )
    expected = sweep.repeat * max(1, _product(sweep.axes))
    if not sweep.auto and len(sweep.runs) < expected:
        out.append(f"Incomplete: {len(sweep.runs)} of {expected} runs; continue with --resume.")
    if any(not s.done for s in sweep.search):
        out.append("The search is not finished; continue with --resume.")
    shaky = [p for p in sweep.predictions if p.warning]
    if shaky:
        out.append(f"Prediction not firm: {shaky[0].warning}.")
    out.extend(sweep.host_warnings)
    return out


def matrix_table(sweep: Sweep) -> TableView:
    rows, tones = [], []
    for row in sweep.matrix:
        rows.append(_matrix_cells(row))
        tones.append("good" if row.config else "bad")
    ranking = "records/s" if any(r.records_per_s for r in sweep.matrix) else "wall time"
    note = (
        f"For each budget, the fastest configuration ({ranking}, median) whose worst case is "
        f"at most {sweep.headroom:.0%} of the budget: the highest repeat when measured, the "
        "upper end of the prediction interval when predicted. Speed differences inside the "
        "noise are ties, won by the lower peak. Peak change and slowdown are against the "
        f"reference, {params_text(_reference_params(sweep))}."
    )
    at = next((row.at for row in sweep.matrix if row.at), None)
    predicted = any(row.basis == "predicted" for row in sweep.matrix)
    where = "predicted from each configuration's fit" if predicted else "measured"
    if at and not sweep.predict:
        where = "the largest input measured"
    title = f"Decision matrix at {params_text(at)} ({where})" if at else "Decision matrix"
    columns = ["budget", "configuration", "basis", "peak", "worst case", "% of budget"]
    columns += ["wall", "records/s", "peak vs ref", "slowdown vs ref", "capacity and notes"]
    if any(row.confirmation or row.refuted for row in sweep.matrix):
        columns.append("confirmation")
    rows = [cells[: len(columns)] for cells in rows]
    return TableView("matrix", title, columns, rows, tones, note)


def confirmation_text(row: MatrixRow) -> str:
    """Return `confirmed (peak 61.2 MB)`, `refuted (oom at 1.00 GB)`, or `pending`."""
    parts = [_confirmation(c) for c in row.refuted]
    if row.confirmation:
        parts.append(_confirmation(row.confirmation))
    return "; ".join(parts)


def _confirmation(c: dict[str, Any]) -> str:
    who = params_text(c.get("params"))
    if c["status"] == "pending":
        return f"{who}: not run yet"
    peak = format_size(c.get("peak_rss_bytes"))
    if c["status"] == "confirmed":
        return f"confirmed (peak {peak})"
    if c.get("run_status") == "ok":
        return f"refuted: {who} (peak {peak}, above the headroom)"
    return f"refuted: {who} ({c.get('run_status')} at {peak})"


def _matrix_cells(row: MatrixRow) -> list[str]:
    budget = f"{format_size(row.budget_bytes)} (≤ {format_size(row.headroom * row.budget_bytes)})"
    if row.config is None:
        if row.smallest is None:
            text = "nothing fits: no configuration was measured"
            if row.refuted:
                text = "nothing fits: every candidate was refuted"
            return [budget, text, *["-"] * 9, confirmation_text(row)]
        over = row.over_bytes or 0
        allowed = row.headroom * row.budget_bytes
        basis = " (predicted, upper end)" if row.smallest.get("basis") == "predicted" else ""
        text = (
            f"nothing fits; smallest peak is {params_text(row.smallest['params'])} at "
            f"{format_size(row.smallest['peak_rss_bytes'])}{basis}, {format_size(over)} "
            f"({over / allowed:.0%}) over"
        )
        return [budget, text, *["-"] * 9, confirmation_text(row)]
    return [
        budget,
        params_text(row.config["params"]),
        row.basis or "measured",
        format_size(row.peak_rss_bytes),
        format_size(row.peak_upper_bytes),
        percent(row.budget_fraction),
        seconds(row.wall_s),
        rate(row.records_per_s),
        percent(row.peak_change, signed=True),
        times(row.slowdown),
        _capacity_cell(row),
        confirmation_text(row),
    ]


def _capacity_cell(row: MatrixRow) -> str:
    parts = []
    cap = row.capacity
    if cap and cap.get("largest_fitting") is None:
        parts.append(f"no limit in {cap['axis']}")
    if row.note:
        parts.append(row.note)
    return "; ".join(parts) or "-"


def configs_table(sweep: Sweep) -> TableView:
    names = list(sweep.axes)
    columns = [*names, "status", "peak (median)", "peak min – max", "wall", "records/s", "runs"]
    rows, tones = [], []
    for c in sweep.configs:
        rows.append([*(str(c.params.get(n)) for n in names), *_config_cells(c)])
        tones.append("" if c.status == "ok" else "bad")
    note = "Medians over each configuration's ok repeats, each run in a fresh process."
    return TableView("configs", "Configurations", columns, rows, tones, note)


def _config_cells(c: ConfigSummary) -> list[str]:
    status = c.status if c.status == "ok" or not c.error else f"{c.status} ({c.error})"
    return [
        status[:90],
        format_size(c.peak_rss_bytes),
        spread(c.peak_rss_spread, format_size),
        seconds(c.wall_s),
        rate(c.records_per_s),
        str(c.runs),
    ]


def variants_table(sweep: Sweep) -> TableView | None:
    if not sweep.variants:
        return None
    columns = ["params", "variants", "peak before", "peak after", "peak reduction"]
    columns += ["slowdown", "meets (>30% less, <2× slower)"]
    rows, tones = [], []
    for v in sweep.variants:
        meets = "-" if v.meets is None else ("yes" if v.meets else "no")
        rows.append(
            [
                params_text(v.params),
                f"{v.baseline} → {v.variant}",
                format_size(v.baseline_peak_bytes),
                format_size(v.variant_peak_bytes),
                percent(v.peak_reduction),
                times(v.slowdown),
                meets,
            ]
        )
        tones.append({"yes": "good", "no": "bad"}.get(meets, ""))
    return TableView("variants", "Variants side by side", columns, rows, tones)


def scaling_table(sweep: Sweep) -> TableView | None:
    if not sweep.scaling:
        return None
    columns = ["axis", "other params", "bytes per unit", "95% interval", "intercept", "R²"]
    columns += ["sizes", "verdict"]
    rows, tones = [], []
    for f in sweep.scaling:
        unit = f.axis.rstrip("s")
        interval = "-"
        if f.slope_low is not None and f.slope_high is not None:
            interval = f"{f.slope_low:,.0f} – {f.slope_high:,.0f} B"
        rows.append(
            [
                f.axis,
                params_text(f.params),
                f"{f.bytes_per_unit:,.0f} B per {unit}",
                interval,
                format_size(f.intercept_bytes),
                "-" if f.r2 is None else f"{f.r2:.3f}",
                str(f.sizes or len(f.points)) + ("" if (f.sizes or 3) >= 3 else " (no R²)"),
                "memory grows with the input" if f.verdict == "grows" else "memory is constant",
            ]
        )
        tones.append("bad" if f.verdict == "grows" else "good")
    note = (
        "Least-squares fit peak = intercept + bytes per unit × size over the median peaks. "
        "With 3 sizes or more: R² and the slope's 95% interval; memory is constant when that "
        "interval contains 0. With 2 sizes there is neither (two points always lie on a "
        "line): a rise under 5% and 1 MB reads as constant."
    )
    return TableView("scaling", "Scaling with the input", columns, rows, tones, note)


def hosts_table(sweep: Sweep) -> TableView | None:
    """The machines the runs ran on: shown for a cluster sweep or when there were several."""
    if not sweep.hosts or (not sweep.cluster and len(sweep.hosts) < 2):
        return None
    columns = ["host", "CPUs", "CPU", "memory", "Python", "memdiag", "runs"]
    rows = []
    for h in sweep.hosts:
        memory = format_size(h.memory_bytes)
        if h.memory_limit_bytes:
            memory += f" (cgroup {format_size(h.memory_limit_bytes)})"
        rows.append(
            [
                h.name,
                str(h.cpus or "-"),
                h.cpu_model or "-",
                memory,
                h.python or "-",
                h.memdiag or "-",
                str(h.runs),
            ]
        )
    note = (
        "Each run records the machine it ran on (env.host in results.json). Peaks are exact "
        "on any machine; wall times and records/s compare only between like machines."
    )
    return TableView("hosts", "Hosts", columns, rows, note=note)


def sweep_tables(sweep: Sweep) -> list[TableView]:
    """Return the report's tables in reading order (absent sections left out)."""
    from memdiag.render.decision_view import capacity_table, predictions_table, search_table

    tables = [
        matrix_table(sweep),
        search_table(sweep),
        capacity_table(sweep),
        predictions_table(sweep),
        variants_table(sweep),
        scaling_table(sweep),
        configs_table(sweep),
        hosts_table(sweep),
    ]
    return [t for t in tables if t is not None]


def _reference_params(sweep: Sweep) -> dict[str, Any] | None:
    # Found by analysis (analysis/matrix.py reference_config); else the --reference given.
    return sweep.reference_config or sweep.reference


def _product(axes: dict[str, list[Any]]) -> int:
    count = 1
    for values in axes.values():
        count *= len(values)
    return count
