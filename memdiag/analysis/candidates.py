"""The configurations a decision chooses among, each with its peak at the decision size.

At a measured size a candidate's peak is its median and its worst case the highest repeat.
At an `--at` size beyond the measured ones, both come from its scaling fit: the prediction
and the prediction interval's upper end. Speed is always measured: the median records/s (or
wall time) at the largest size measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memdiag.analysis.scaling import bounds
from memdiag.model import ConfigSummary, ScalingFit
from memdiag.params import has_params


@dataclass(frozen=True)
class Candidate:
    """One configuration at the decision size.

    `params` are the full parameters at that size; `peak_bytes` the median or the predicted
    peak; `peak_upper_bytes` the highest repeat or the prediction's upper end, which budgets
    are checked against; `speed` the measured summary whose records/s or wall time counts;
    `fits` the configuration's scaling fits (one per size axis), for its capacity.
    """

    params: dict[str, Any]
    peak_bytes: int
    peak_upper_bytes: int
    basis: str
    speed: ConfigSummary
    fits: tuple[ScalingFit, ...] = ()


def measured_candidates(
    configs: list[ConfigSummary], fits: list[ScalingFit] | None = None
) -> list[Candidate]:
    """Return every ok config as a candidate at its own size: median and highest repeat."""
    return [
        Candidate(
            params=c.params,
            peak_bytes=c.peak_rss_bytes or 0,
            peak_upper_bytes=_worst(c),
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
        out.append(
            Candidate(
                params={**largest.params, axis: int(value) if value == int(value) else value},
                peak_bytes=int(peak),
                peak_upper_bytes=int(high),
                basis="predicted",
                speed=largest,
                fits=tuple(_fits_of(largest.params, fits)),
            )
        )
    return out


def _worst(config: ConfigSummary) -> int:
    """The highest repeat's peak: the worst case a budget must hold."""
    if config.peak_rss_spread:
        return int(config.peak_rss_spread[1])
    return int(config.peak_rss_bytes or 0)


def _fits_of(params: dict[str, Any], fits: list[ScalingFit]) -> list[ScalingFit]:
    return [f for f in fits if has_params(params, f.params)]
