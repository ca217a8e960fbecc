"""A sweep's findings as titled tables of display strings, shared by every text renderer.

Formatting only: every number shown here was computed by analysis and saved in the Sweep.
"""

from __future__ import annotations

import math
from typing import Any

from memdiag.analysis.aggregate import GC_SHARE_HIGH
from memdiag.model import ConfigSummary, MatrixRow, ScalingFit, Sweep
from memdiag.render.decision_view import capacity_table, predictions_table, search_table
from memdiag.render.tables import (
    TableView,
    params_text,
    percent,
    rate,
    seconds,
    spread,
    times,
    value_text,
)
from memdiag.units import format_size


def gc_text(share: float | None) -> str:
    """Return a Node configuration's GC time share, `62% (high)` above GC_SHARE_HIGH."""
    if share is None:
        return "-"
    return f"{share:.0%} (high)" if share > GC_SHARE_HIGH else f"{share:.0%}"


def summary(sweep: Sweep) -> list[tuple[str, str]]:
    """Return (label, text) lines describing what was swept and how."""
    axes = "; ".join(
        f"{k} = auto (probed: {', '.join(map(str, v)) or 'none yet'})"
        if k in sweep.auto
        else f"{k} = {', '.join(_axis_cell(k, x) for x in v)}"
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
    if sweep.sizes_auto:
        axis, given = sweep.sizes_auto["axis"], sweep.sizes_auto.get("given", [])
        added = [f"{v:,}" for v in sweep.axes.get(axis, []) if v not in given]
        out.append(
            f"--sizes auto: {axis} given {', '.join(f'{v:,}' for v in given)}; added "
            f"{', '.join(added) or 'none'} ({sweep.sizes_status or 'not analysed'})."
        )
    heavy = [c for c in sweep.configs if c.gc_share is not None and c.gc_share > GC_SHARE_HIGH]
    if heavy:
        out.append(
            f"{len(heavy)} configuration(s) spent over {GC_SHARE_HIGH:.0%} of their time in "
            "GC: they fit their heap limit only just ("
            + "; ".join(f"{params_text(c.params)}: {gc_text(c.gc_share)}" for c in heavy)
            + ")"
        )
    shaky = [p for p in sweep.predictions if p.warning]
    if shaky:
        out.append(f"Prediction not firm: {shaky[0].warning}.")
    out.extend(f"Refused at the decision size: {line}." for line in sweep.heap_refusals)
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
    if any(row.speed_basis == "predicted" for row in sweep.matrix):
        note += (
            " ≈: wall time and records/s predicted at the decision size from each "
            "configuration's fit of wall time against the size."
        )
    at = next((row.at for row in sweep.matrix if row.at), None)
    predicted = any(row.basis == "predicted" for row in sweep.matrix)
    where = "predicted from each configuration's fit" if predicted else "measured"
    if any(row.firm is False for row in sweep.matrix):
        where += "; not firm, see the predictions"
    if at and not sweep.predict:
        where = "the largest input measured"
    title = f"Decision matrix at {params_text(at)} ({where})" if at else "Decision matrix"
    columns = ["budget", "configuration", "basis", "peak", "worst case", "% of budget"]
    columns += ["wall", "records/s", "peak vs ref", "slowdown vs ref", "capacity and notes"]
    node = _node_columns(sweep)
    columns += [name for name, _ in node]
    confirm = any(row.confirmation or row.refuted for row in sweep.matrix)
    if confirm:
        columns.append("confirmation")
    rows = [
        [*cells[:11], *(cell(row) for _, cell in node), *cells[11 : 12 if confirm else 11]]
        for cells, row in zip(rows, sweep.matrix, strict=True)
    ]
    return TableView("matrix", title, columns, rows, tones, note)


def _node_columns(sweep: Sweep) -> list[tuple[str, Any]]:
    """The matrix's Node columns: the chosen heap limit, and its GC time share."""
    columns: list[tuple[str, Any]] = []
    if "heap_limit" in sweep.axes or "heap_limit" in sweep.base:
        columns.append(("heap limit", lambda row: _chosen_value(row, "heap_limit")))
    if any(c.gc_share is not None for c in sweep.configs):
        columns.append(("GC time", lambda row: gc_text(row.gc_share) if row.config else "-"))
    return columns


def _chosen_value(row: MatrixRow, name: str) -> str:
    if not row.config or name not in row.config["params"]:
        return "-"
    return value_text(name, row.config["params"][name])


def confirmation_text(row: MatrixRow) -> str:
    """Return `confirmed (peak 61.2 MB)`, `refuted (oom at 1.00 GB)`, `not run yet`, or
    `not measured (worker lost ...)`."""
    parts = [_confirmation(c) for c in row.refuted]
    if row.confirmation:
        parts.append(_confirmation(row.confirmation))
    return "; ".join(parts)


def _confirmation(c: dict[str, Any]) -> str:
    who = params_text(c.get("params"))
    if c["status"] == "pending":
        return f"{who}: not run yet"
    if c["status"] == "unmeasured":
        return f"{who}: not measured ({c.get('reason')})"
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
        ("≈ " if row.speed_basis == "predicted" else "") + seconds(row.wall_s),
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
    node = any(c.gc_share is not None for c in sweep.configs)
    if node:
        columns += ["V8 heap peak", "GC time"]
    rows, tones = [], []
    for c in sweep.configs:
        cells = [*(_axis_cell(n, c.params.get(n)) for n in names), *_config_cells(c)]
        if node:
            cells += [format_size(c.peak_heap_bytes), gc_text(c.gc_share)]
        rows.append(cells)
        tones.append("" if c.status == "ok" else "bad")
    note = "Medians over each configuration's ok repeats, each run in a fresh process."
    return TableView("configs", "Configurations", columns, rows, tones, note)


def _axis_cell(name: str, value: Any) -> str:
    return value_text(name, value) if name == "heap_limit" else str(value)


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
    columns = ["axis", "other params", "model", "line: bytes per unit", "95% interval", "R²"]
    columns += ["sizes", "candidates (leave-one-out error)"]
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
                model_words(f),
                f"{f.bytes_per_unit:,.0f} B per {unit}",
                interval,
                "-" if f.r2 is None else f"{f.r2:.3f}",
                str(f.sizes or len(f.points)) + ("" if (f.sizes or 3) >= 3 else " (no R²)"),
                candidates_text(f),
            ]
        )
        tones.append("bad" if f.verdict == "grows" else "good")
    note = (
        "Each configuration's median peaks against the size: the least-squares line (R² and "
        "the slope's 95% interval from 3 sizes), and from 4 sizes the model chosen among "
        "constant, line, n·log n, saturating and power law by leave-one-out error (* "
        "plausible): the simplest within 25% of the best, a curve only when the curvature "
        "test on the line's residuals finds curvature. Below 4 sizes: the line, or constant "
        "when the rise is under 1 MB and twice the noise."
    )
    return TableView("scaling", "Scaling with the input", columns, rows, tones, note)


def model_words(fit: ScalingFit) -> str:
    """Return the chosen model as a user acts on it: `grows as n^1.98: doubling the input
    multiplies the memory by 3.9`, `levels off near 180.0 MB`."""
    k, d = fit.model_params.get("k"), fit.doubling_factor
    doubling = "" if d is None else f": doubling the input multiplies the memory by {d:.2g}"
    largest = fit.points[-1][0] if fit.points else 1.0
    step = 10 ** max(0, math.floor(math.log10(max(largest, 1.0))))  # 1,000 for 4,000 items
    words = {
        "": "memory grows with the input" if fit.verdict == "grows" else "memory is constant",
        "constant": f"constant, about {format_size(fit.peak_max_bytes)}",
        "linear": f"grows linearly{doubling}",
        "linear_tail": f"grows {format_size(fit.model_params.get('b', 0.0) * step)} per "
        f"{step:,} {fit.axis} at the largest sizes, faster below them (a start-up that "
        "levels off)",
        "nlogn": f"grows as n·log n{doubling}",
        "power": f"grows as n^{k or 1:.2f}{doubling}",
        "saturating": f"levels off near {format_size(fit.plateau_bytes)}",
    }[fit.model]
    if fit.model == "linear_tail":
        words += "; no model describes the sizes: budgets use the most pessimistic"
    elif fit.pessimistic:
        words += "; curved and no model clearly better: budgets use the most pessimistic"
    return words


def candidates_text(fit: ScalingFit) -> str:
    """Return `power 0.3 MB*, nlogn 61.4 MB, ...`, best first; `-` below 4 sizes."""
    scored = [m for m in fit.models if m.get("loo_error") is not None]
    scored.sort(key=lambda m: m["loo_error"])
    parts = [
        f"{m['model']} {format_size(m['loo_error'])}{'*' if m['plausible'] else ''}" for m in scored
    ]
    return ", ".join(parts) or "-"


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
