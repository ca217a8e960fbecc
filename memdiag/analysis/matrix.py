"""The decision matrix: for each memory budget, the fastest configuration that fits.

A configuration fits a budget when its median peak RSS is at most headroom × budget. Among
those that fit, the highest median records/s wins (the shortest median wall time when the
target reports no records); an exact tie goes to the lower peak. Only configurations whose
every repeat finished ok are candidates.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from memdiag.analysis.aggregate import by_throughput
from memdiag.errors import MemdiagError
from memdiag.model import ConfigSummary, MatrixRow


def match_reference(axes: dict[str, list[Any]], reference: dict[str, Any]) -> dict[str, Any]:
    """Return `reference` checked against the axes: every name an axis, every value listed."""
    for name, value in reference.items():
        if name not in axes:
            known = ", ".join(axes) or "none"
            raise MemdiagError(f"--reference {name}: not an axis of this sweep (axes: {known})")
        if value not in axes[name]:
            listed = ",".join(map(str, axes[name]))
            raise MemdiagError(f"--reference {name}={value}: not among the values ({listed})")
    return reference


def find_reference(
    configs: list[ConfigSummary], reference: dict[str, Any] | None
) -> ConfigSummary | None:
    """Return the first config matching every name=value of `reference` (default: the first)."""
    for config in configs:
        if all(config.params.get(k) == v for k, v in (reference or {}).items()):
            return config
    return None


def build_matrix(
    configs: list[ConfigSummary],
    budgets_bytes: list[int],
    headroom: float,
    reference: dict[str, Any] | None = None,
    at: dict[str, Any] | None = None,
) -> list[MatrixRow]:
    """Return one MatrixRow per budget, smallest budget first (see the module docstring).

    `at` names the input size the configs were measured at, recorded in every row.
    """
    candidates = [c for c in configs if c.status == "ok" and c.peak_rss_bytes is not None]
    ranked = sorted(candidates, key=_rank_key(by_throughput(configs)))
    ref = find_reference(configs, reference)
    rows = []
    for budget in sorted(budgets_bytes):
        allowed = headroom * budget
        chosen = next((c for c in ranked if (c.peak_rss_bytes or 0) <= allowed), None)
        if chosen is None:
            rows.append(_nothing_fits(candidates or configs, budget, headroom))
        else:
            rows.append(_chosen_row(chosen, ref, budget, headroom))
    return [dataclasses.replace(row, at=at) for row in rows]


def _rank_key(throughput: bool) -> Any:
    """Best first: highest records/s (or shortest wall), then the lower peak."""
    if throughput:
        return lambda c: (-(c.records_per_s or 0.0), c.peak_rss_bytes)
    return lambda c: (c.wall_s, c.peak_rss_bytes)


def _chosen_row(
    chosen: ConfigSummary, ref: ConfigSummary | None, budget: int, headroom: float
) -> MatrixRow:
    peak = chosen.peak_rss_bytes or 0
    return MatrixRow(
        budget_bytes=budget,
        headroom=headroom,
        config={"params": chosen.params},
        peak_rss_bytes=peak,
        budget_fraction=round(peak / budget, 4),
        wall_s=chosen.wall_s,
        records_per_s=chosen.records_per_s,
        peak_change=peak_change(chosen, ref),
        slowdown=slowdown(chosen, ref),
    )


def _nothing_fits(configs: list[ConfigSummary], budget: int, headroom: float) -> MatrixRow:
    measured = [c for c in configs if c.peak_rss_bytes is not None]
    if not measured:
        return MatrixRow(budget_bytes=budget, headroom=headroom, config=None)
    smallest = min(measured, key=lambda c: c.peak_rss_bytes or 0)
    peak = smallest.peak_rss_bytes or 0
    return MatrixRow(
        budget_bytes=budget,
        headroom=headroom,
        config=None,
        smallest={"params": smallest.params, "peak_rss_bytes": peak, "status": smallest.status},
        over_bytes=int(peak - headroom * budget),
    )


def peak_change(config: ConfigSummary, ref: ConfigSummary | None) -> float | None:
    """Return the config's median peak against the reference's, as a fraction (-0.3 = 30% less)."""
    if ref is None or ref.status != "ok" or not ref.peak_rss_bytes or config.peak_rss_bytes is None:
        return None
    return round(config.peak_rss_bytes / ref.peak_rss_bytes - 1, 4)


def slowdown(config: ConfigSummary, ref: ConfigSummary | None) -> float | None:
    """Return how many times slower than the reference (records/s when both have it, else wall)."""
    if ref is None or ref.status != "ok":
        return None
    if config.records_per_s and ref.records_per_s:
        return round(ref.records_per_s / config.records_per_s, 3)
    if config.wall_s and ref.wall_s:
        return round(config.wall_s / ref.wall_s, 3)
    return None
