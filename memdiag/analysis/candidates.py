"""The configurations a decision chooses among, each with its peak at the decision size.

At a measured size a candidate's peak is its median and its worst case the highest repeat,
and its speed the median records/s (or wall time) measured there. At an `--at` size beyond
the measured ones, all three come from its fits: the predicted peak and the upper end of its
interval (analysis/scaling.py), and the wall time at `--at` from the fit of wall time against
the size, never the wall of a smaller size. A prediction that is not firm says so (`firm`,
`warning`): its upper end is then the growing, or the most pessimistic, reading.

A Node job swept over heap limits (`heap_limit`) must also not die at its limit at `--at`:
its V8 heap peak is fitted with the same models, and a configuration whose heap's upper end
there reaches its heap limit is no candidate (`within_heap_limit`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from memdiag.analysis.aggregate import worst_peak
from memdiag.analysis.scaling import bounds, firmness, predicted_speed
from memdiag.model import ConfigSummary, ScalingFit
from memdiag.params import has_params


@dataclass(frozen=True)
class Candidate:
    """One configuration at the decision size.

    `params` are the full parameters at that size; `peak_bytes` the median or the predicted
    peak; `peak_upper_bytes` the highest repeat or the prediction's upper end, which budgets
    are checked against; `speed` the summary whose records/s or wall time counts (measured,
    or predicted at the decision size: `speed_basis`); `fits` the configuration's scaling
    fits (one per size axis), for its capacity; `firm` and `warning` as in Prediction.
    """

    params: dict[str, Any]
    peak_bytes: int
    peak_upper_bytes: int
    basis: str
    speed: ConfigSummary
    fits: tuple[ScalingFit, ...] = ()
    speed_basis: str = "measured"
    firm: bool = True
    warning: str | None = None


def measured_candidates(
    configs: list[ConfigSummary], fits: list[ScalingFit] | None = None
) -> list[Candidate]:
    """Return every ok config as a candidate at its own size: median and highest repeat."""
    return [
        Candidate(
            params=c.params,
            peak_bytes=c.peak_rss_bytes or 0,
            peak_upper_bytes=worst_peak(c),
            basis="measured",
            speed=c,
            fits=tuple(_fits_of(c.params, fits or [])),
        )
        for c in configs
        if c.status == "ok" and c.peak_rss_bytes is not None
    ]


def predicted_candidates(
    configs: list[ConfigSummary], fits: list[ScalingFit], axis: str, value: float
) -> list[Candidate]:
    """Return one candidate per configuration at `axis` = `value`, from its fit along `axis`.

    `configs` are those at the decision size of every other size axis. A configuration with
    a failed run at any measured size is no candidate, nor one without a fit (one size).
    """
    out = []
    for fit in (f for f in fits if f.axis == axis):
        group = [c for c in configs if has_params(c.params, fit.params)]
        if not group or any(c.status != "ok" for c in group):
            continue
        largest = max(group, key=lambda c: c.params[axis])
        peak, _, high = bounds(fit, value)
        speed, speed_basis = _speed_at(fit, largest, value)
        _, firm, warning = firmness(fit, value)
        out.append(
            Candidate(
                params={**largest.params, axis: int(value) if value == int(value) else value},
                peak_bytes=int(peak),
                peak_upper_bytes=int(high),
                basis="predicted",
                speed=speed,
                fits=tuple(_fits_of(largest.params, fits)),
                speed_basis=speed_basis,
                firm=firm,
                warning=warning,
            )
        )
    return out


def _speed_at(fit: ScalingFit, largest: ConfigSummary, value: float) -> tuple[ConfigSummary, str]:
    """The speed summary at `value`: wall and records/s predicted, spreads scaled alike."""
    wall, rate = predicted_speed(fit, value)
    if wall is None or not largest.wall_s:
        return largest, "measured"
    ratio = wall / largest.wall_s
    rate_ratio = rate / largest.records_per_s if rate and largest.records_per_s else None
    speed = dataclasses.replace(
        largest,
        wall_s=wall,
        wall_spread=None
        if largest.wall_spread is None
        else [v * ratio for v in largest.wall_spread],
        records_per_s=rate,
        records_per_s_spread=None
        if rate_ratio is None or largest.records_per_s_spread is None
        else [v * rate_ratio for v in largest.records_per_s_spread],
    )
    return speed, "predicted"


def heap_view(configs: list[ConfigSummary]) -> list[ConfigSummary]:
    """Return the configurations run under a heap limit with their V8 heap peaks in place of
    RSS, so that `fit_scaling` fits the heap with the models it fits memory with."""
    return [
        dataclasses.replace(c, peak_rss_bytes=c.peak_heap_bytes, peak_rss_spread=c.peak_heap_spread)
        for c in configs
        if c.peak_heap_bytes is not None and isinstance(c.params.get("heap_limit"), int)
    ]


def within_heap_limit(
    candidates: list[Candidate], heap_fits: list[ScalingFit], axis: str, value: float
) -> tuple[list[Candidate], list[str]]:
    """Return the candidates whose V8 heap at `axis` = `value` stays under their heap limit
    (the upper end of the heap's interval against `--max-old-space-size`, the part of V8's
    limit a job's objects fill), and a line for each one refused."""
    kept, refused = [], []
    for candidate in candidates:
        limit = candidate.params.get("heap_limit")
        fit = next(
            (f for f in heap_fits if f.axis == axis and has_params(candidate.params, f.params)),
            None,
        )
        if not isinstance(limit, int) or fit is None:
            kept.append(candidate)
            continue
        _, _, high = bounds(fit, value)
        if high < limit:
            kept.append(candidate)
            continue
        shown = " ".join(
            f"{k}={v // 1024**2}MB" if k == "heap_limit" else f"{k}={v}"
            for k, v in candidate.params.items()
            if k != axis
        )
        refused.append(
            f"{shown}: its V8 heap at {axis}={value:,.0f} is predicted up to "
            f"{high / 1024**2:,.0f} MB, over its heap limit of {limit / 1024**2:,.0f} MB"
        )
    return kept, refused


def _fits_of(params: dict[str, Any], fits: list[ScalingFit]) -> list[ScalingFit]:
    return [f for f in fits if has_params(params, f.params)]
