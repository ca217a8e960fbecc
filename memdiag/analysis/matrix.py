"""The decision matrix: for each memory budget, the fastest configuration that fits.

A candidate fits a budget when its worst case is at most headroom × budget: the highest
repeat when its peak was measured at the decision size, the upper end of the prediction
interval when it was predicted (see analysis/candidates.py). Only configurations whose
every repeat finished ok are candidates.

Among those that fit, the highest median records/s wins (the shortest median wall time
when the target reports no records), but speed differences inside the noise are ties: less
than the repeats' spread of records/s (or wall), or under 5% when a configuration ran once.
A tie goes to the lower worst-case peak, so noise in speed cannot flip the decision.

With confirmation runs (`--confirm`), a chosen candidate whose run at the decision size
under limit = budget failed, or peaked above the headroom, is refuted and the next one is
chosen in its place.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from memdiag.analysis.aggregate import by_throughput, run_fits
from memdiag.analysis.candidates import Candidate, measured_candidates
from memdiag.analysis.scaling import capacity_text, largest_fitting
from memdiag.errors import MemdiagError
from memdiag.model import ConfigSummary, MatrixRow, Run
from memdiag.params import has_params, index_of, same_params

# With one repeat there is no spread to measure: closer than this is a tie.
SINGLE_RUN_NOISE = 0.05


def match_reference(axes: dict[str, list[Any]], reference: dict[str, Any]) -> dict[str, Any]:
    """Return `reference` checked against the axes: every name an axis, every value listed."""
    for name, value in reference.items():
        if name not in axes:
            known = ", ".join(axes) or "none"
            raise MemdiagError(f"--reference {name}: not an axis of this sweep (axes: {known})")
        if index_of(axes[name], value) is None:
            listed = ",".join(map(str, axes[name]))
            raise MemdiagError(f"--reference {name}={value}: not among the values ({listed})")
    return reference


def find_reference(
    configs: list[ConfigSummary], reference: dict[str, Any] | None
) -> ConfigSummary | None:
    """Return the first config matching every name=value of `reference` (default: the first)."""
    for config in configs:
        if has_params(config.params, reference or {}):
            return config
    return None


def reference_config(
    configs: list[ConfigSummary],
    matrix: list[MatrixRow],
    axes: dict[str, list[Any]],
    reference: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """Return the params of the configuration the matrix compares with, at the decision
    size (`--at` values included); None when no configuration matches `reference`.

    The matrix compares configurations at one input size: its reference is among them.
    """
    at = next((row.at for row in matrix if row.at), None) or {}
    measured = {k: v for k, v in at.items() if index_of(axes.get(k, []), v) is not None}
    wanted = {**(reference or {}), **measured}
    for config in configs:
        if has_params(config.params, wanted):
            return {**config.params, **at}
    return None


def build_matrix(
    configs: list[ConfigSummary],
    budgets_bytes: list[int],
    headroom: float,
    reference: dict[str, Any] | None = None,
    at: dict[str, Any] | None = None,
    candidates: list[Candidate] | None = None,
    confirm_runs: list[Run] | None = None,
) -> list[MatrixRow]:
    """Return one MatrixRow per budget, smallest budget first (see the module docstring).

    `candidates` default to the ok `configs` as measured; `at` names the decision size,
    recorded in every row. With `confirm_runs` (a list, even empty), every decision carries
    its confirmation: confirmed, refuted (then the next candidate is tried) or pending.
    """
    pool = measured_candidates(configs) if candidates is None else candidates
    throughput = by_throughput(configs)
    ref = _reference_candidate(pool, configs, reference, at)
    rows = []
    for budget in sorted(budgets_bytes):
        row = _decide(pool, budget, headroom, throughput, ref, confirm_runs, at)
        if row.config is None and not row.refuted:
            row = _nothing_fits(pool, configs, budget, headroom)
        rows.append(dataclasses.replace(row, at=at))
    return rows


def _decide(
    pool: list[Candidate],
    budget: int,
    headroom: float,
    throughput: bool,
    ref: Candidate | None,
    confirm_runs: list[Run] | None,
    at: dict[str, Any] | None,
) -> MatrixRow:
    allowed = headroom * budget
    refuted: list[dict[str, Any]] = []
    fitting = [c for c in pool if c.peak_upper_bytes <= allowed]
    while fitting:
        chosen, note = choose(fitting, throughput)
        confirmation = None
        if confirm_runs is not None:
            confirmation = confirm_status(chosen.params, budget, headroom, confirm_runs)
            if confirmation["status"] == "refuted":
                refuted.append(confirmation)
                fitting = [c for c in fitting if c is not chosen]
                continue
        return _chosen_row(chosen, ref, budget, headroom, note, at, confirmation, refuted)
    return MatrixRow(budget_bytes=budget, headroom=headroom, config=None, refuted=refuted)


def choose(fitting: list[Candidate], throughput: bool) -> tuple[Candidate, str | None]:
    """Return the fastest candidate, the lowest worst-case peak among those tied with it in
    speed, and a note when a tie decided."""
    best = max(fitting, key=lambda c: (speed(c, throughput), -c.peak_upper_bytes))
    tied = [
        c
        for c in fitting
        if c is best
        or abs(speed(best, throughput) - speed(c, throughput)) < noise(best, c, throughput)
    ]
    chosen = min(tied, key=lambda c: (c.peak_upper_bytes, -speed(c, throughput)))
    if chosen is best:
        return chosen, None
    gain = (
        abs(speed(best, throughput) / speed(chosen, throughput) - 1)
        if speed(chosen, throughput)
        else 0.0
    )
    return chosen, (
        f"tie within noise: {_params(best.params)} is {gain:.0%} "
        f"{'faster' if throughput else 'quicker'}, inside the repeats' spread (5% with one "
        "repeat); the lower peak wins"
    )


def speed(c: Candidate, throughput: bool) -> float:
    """Return the candidate's median speed, higher is better: records/s, or −wall seconds."""
    if throughput:
        return c.speed.records_per_s or 0.0
    return -(c.speed.wall_s or 0.0)


def noise(a: Candidate, b: Candidate, throughput: bool) -> float:
    """Return the speed difference below which `a` and `b` are tied (same unit as speed)."""
    widths = [0.0]
    for c in (a, b):
        spread = c.speed.records_per_s_spread if throughput else c.speed.wall_spread
        if c.speed.runs >= 2 and spread:
            widths.append(spread[1] - spread[0])
        else:
            widths.append(
                SINGLE_RUN_NOISE * max(abs(speed(a, throughput)), abs(speed(b, throughput)))
            )
    return max(widths)


def confirm_status(
    params: dict[str, Any], budget: int, headroom: float, runs: list[Run]
) -> dict[str, Any]:
    """Return the confirmation of `params` for `budget` from the confirmation runs.

    An ok run within headroom × budget confirms; an ok run above it, or a run that failed
    under a limit of the budget or more, refutes; a run memdiag could not measure
    (`Run.infrastructure`) is "unmeasured", no verdict; otherwise it is pending (to be run).
    """
    for run in (r for r in runs if same_params(r.params, params)):
        fits = run_fits(run, headroom * budget, budget)
        if fits is not None:
            return _confirmation("confirmed" if fits else "refuted", params, run)
        if run.infrastructure is not None:
            return {**_confirmation("unmeasured", params, run), "reason": run.infrastructure}
    return {"status": "pending", "params": params, "limit_bytes": budget}


def _confirmation(status: str, params: dict[str, Any], run: Run) -> dict[str, Any]:
    return {
        "status": status,
        "params": params,
        "run_status": run.status,
        "peak_rss_bytes": run.peak_rss_bytes,
        "limit_bytes": run.limit_bytes,
    }


def _chosen_row(
    chosen: Candidate,
    ref: Candidate | None,
    budget: int,
    headroom: float,
    note: str | None,
    at: dict[str, Any] | None,
    confirmation: dict[str, Any] | None,
    refuted: list[dict[str, Any]],
) -> MatrixRow:
    peak = chosen.peak_bytes
    capacity = _capacity(chosen, headroom * budget, at)
    notes = [note] if note else []
    if capacity and capacity["largest_fitting"] is not None:
        notes.append(capacity_text(capacity["largest_fitting"], capacity["axis"]))
    return MatrixRow(
        budget_bytes=budget,
        headroom=headroom,
        config={"params": chosen.params},
        peak_rss_bytes=peak,
        budget_fraction=round(chosen.peak_upper_bytes / budget, 4),
        wall_s=chosen.speed.wall_s,
        records_per_s=chosen.speed.records_per_s,
        peak_change=None if ref is None else _change(peak, ref.peak_bytes),
        slowdown=None if ref is None else slowdown(chosen.speed, ref.speed),
        basis=chosen.basis,
        peak_upper_bytes=chosen.peak_upper_bytes,
        capacity=capacity,
        note="; ".join(notes) or None,
        confirmation=confirmation,
        refuted=refuted,
        speed_basis=chosen.speed_basis,
        firm=chosen.firm,
        gc_share=chosen.speed.gc_share,
    )


def _capacity(
    chosen: Candidate, allowed: float, at: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The largest input that still fits: along the --at axis, else the first that grows."""
    fits = list(chosen.fits)
    along_at = [f for f in fits if f.axis in (at or {}) and chosen.basis == "predicted"]
    growing = [f for f in fits if f.verdict == "grows"]
    fit = next(iter(along_at or growing or fits), None)
    if fit is None:
        return None
    return {"axis": fit.axis, "largest_fitting": largest_fitting(fit, allowed)}


def _reference_candidate(
    pool: list[Candidate],
    configs: list[ConfigSummary],
    reference: dict[str, Any] | None,
    at: dict[str, Any] | None,
) -> Candidate | None:
    config = find_reference(configs, reference)
    if config is None or config.status != "ok":
        return None
    wanted = {k: v for k, v in config.params.items() if k not in (at or {})}
    return next((c for c in pool if has_params(c.params, wanted)), None)


def _nothing_fits(
    pool: list[Candidate], configs: list[ConfigSummary], budget: int, headroom: float
) -> MatrixRow:
    allowed = headroom * budget
    if pool:
        smallest = min(pool, key=lambda c: c.peak_upper_bytes)
        return MatrixRow(
            budget_bytes=budget,
            headroom=headroom,
            config=None,
            smallest={
                "params": smallest.params,
                "peak_rss_bytes": smallest.peak_upper_bytes,
                "status": "ok",
                "basis": smallest.basis,
            },
            over_bytes=int(smallest.peak_upper_bytes - allowed),
        )
    measured = [c for c in configs if c.peak_rss_bytes is not None]
    if not measured:
        return MatrixRow(budget_bytes=budget, headroom=headroom, config=None)
    low = min(measured, key=lambda c: c.peak_rss_bytes or 0)
    peak = low.peak_rss_bytes or 0
    return MatrixRow(
        budget_bytes=budget,
        headroom=headroom,
        config=None,
        smallest={"params": low.params, "peak_rss_bytes": peak, "status": low.status},
        over_bytes=int(peak - allowed),
    )


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_value(k, v)}" for k, v in params.items())


def _value(name: str, value: Any) -> Any:
    # A heap limit is bytes in the JSON and MB where Node takes it (--max-old-space-size).
    if name == "heap_limit" and isinstance(value, int) and value % 1024**2 == 0:
        return f"{value // 1024**2}MB"
    return value


def peak_change(config: ConfigSummary, ref: ConfigSummary | None) -> float | None:
    """Return the config's median peak against the reference's, as a fraction (-0.3 = 30% less)."""
    if ref is None or ref.status != "ok":
        return None
    return _change(config.peak_rss_bytes, ref.peak_rss_bytes)


def _change(peak: int | None, ref_peak: int | None) -> float | None:
    """Return `peak` against `ref_peak` as a fraction, None without both (or a zero ref)."""
    if peak is None or not ref_peak:
        return None
    return round(peak / ref_peak - 1, 4)


def slowdown(config: ConfigSummary, ref: ConfigSummary | None) -> float | None:
    """Return how many times slower than the reference (records/s when both have it, else wall)."""
    if ref is None or ref.status != "ok":
        return None
    if config.records_per_s and ref.records_per_s:
        return round(ref.records_per_s / config.records_per_s, 3)
    if config.wall_s and ref.wall_s:
        return round(config.wall_s / ref.wall_s, 3)
    return None
