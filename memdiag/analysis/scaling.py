"""How peak memory grows with the input: a line along each input-size axis, and its limits.

An input-size axis is one named like a size (records, items, cycles, ...; see SIZE_AXES) or
declared with `--size-axis`, with numeric values and two sizes at least; tuning knobs such
as batch, concurrency or page_size are never size axes, even when numeric. For each size
axis and each combination of the other axes, peak = intercept + bytes_per_unit × size is
fitted (analysis/fit.py) through the ok configurations' median peaks.

The model is honest about what it knows:
- with 3 sizes or more the fit has a quality (R²), a 95% interval on its slope, and a
  prediction interval from its residuals and the repeats' own spread; with 2 sizes it has
  neither (two points always lie on a line), and says so;
- memory is "constant" when the slope's interval contains 0 (with 2 sizes: always) and the
  line rises across the sizes by less than 5%, or less than 1 MB, or less than twice the
  repeats' spread; a constant prediction is the largest median measured, its upper end
  5% (at least 1 MB, or two residual or repeat spreads) above: the rise "constant" admits;
- a prediction is never below the largest median peak measured for that configuration;
- beyond 10× the largest size measured, a prediction is flagged as not firm.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from memdiag.analysis.fit import LinearFit, fit_line
from memdiag.model import SIZE_AXES, Capacity, ConfigSummary, Prediction, ScalingFit

# Only with 2 sizes, where no interval exists: a rise below this is read as noise.
GROWTH_THRESHOLD = 0.05
MIN_GROWTH_BYTES = 1024 * 1024
# A prediction further than this past the largest size measured is not firm.
FIRM_EXTRAPOLATION = 10.0
# Spread of single runs from the range of n repeats (range / d2(n), Tippett's constants).
_RANGE_TO_SD = {2: 1.128, 3: 1.693, 4: 2.059, 5: 2.326, 6: 2.534, 7: 2.704, 8: 2.847}
BAND_POINTS = 48


def size_axes(axes: dict[str, list[Any]], declared: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Return the axes that describe input size: a size name (SIZE_AXES or `declared`),
    numeric, with 2+ values. A numeric knob such as page_size is a configuration, not a size.
    """
    return [
        name
        for name, values in axes.items()
        if (name in SIZE_AXES or name in declared)
        and len(values) >= 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    ]


def fit_scaling(
    configs: list[ConfigSummary],
    axes: dict[str, list[Any]],
    declared: list[str] | tuple[str, ...] = (),
    until: dict[str, float] | None = None,
) -> list[ScalingFit]:
    """Return one fit per size axis and combination of the other axes (two sizes at least).

    `until` (axis → size) extends each fit's band out to a prediction size.
    """
    fits = []
    for axis in size_axes(axes, declared):
        groups: dict[str, tuple[dict[str, Any], list[ConfigSummary]]] = {}
        for c in configs:
            if c.status != "ok" or c.peak_rss_bytes is None:
                continue
            others = {k: v for k, v in c.params.items() if k != axis}
            groups.setdefault(repr(sorted(others.items())), (others, []))[1].append(c)
        for others, members in groups.values():
            if len({c.params[axis] for c in members}) >= 2:
                fits.append(_fit(axis, others, members, (until or {}).get(axis)))
    return fits


def _fit(
    axis: str, params: dict[str, Any], members: list[ConfigSummary], until: float | None
) -> ScalingFit:
    points = sorted([float(c.params[axis]), float(c.peak_rss_bytes or 0)] for c in members)
    line = fit_line([x for x, _ in points], [y for _, y in points])
    low, high = points[0][0], points[-1][0]
    start = max(line.at(low), 1.0)
    rise = line.slope * (high - low)
    interval = line.slope_interval()
    spread = repeat_sd(members)
    # A rise beyond the noise of RSS (5% and 1 MB) and of the repeats is growth even when
    # the slope's interval, with few sizes, is too wide to exclude 0: a saturating curve
    # would otherwise be called constant and under-predicted.
    visible = rise / start >= GROWTH_THRESHOLD and rise >= max(MIN_GROWTH_BYTES, 2 * spread)
    grows = visible or (interval is not None and interval[0] > 0)
    worst = max((c.peak_rss_spread or [0, c.peak_rss_bytes or 0])[1] for c in members)
    fit = ScalingFit(
        axis=axis,
        params=params,
        points=points,
        intercept_bytes=round(line.intercept, 1),
        bytes_per_unit=round(line.slope, 3),
        r2=round(line.r2, 4) if line.n >= 3 and line.residual_sd is not None else None,
        growth_fraction=round(rise / start, 4),
        verdict="grows" if grows else "constant",
        sizes=len(points),
        slope_low=None if interval is None else round(interval[0], 3),
        slope_high=None if interval is None else round(interval[1], 3),
        residual_sd_bytes=None if line.residual_sd is None else round(line.residual_sd, 1),
        repeat_sd_bytes=round(spread, 1),
        peak_max_bytes=int(max(y for _, y in points)),
        worst_bytes=int(worst),
    )
    end = max(high, until or high)
    return _with_band(fit, low, end)


def repeat_sd(members: list[ConfigSummary]) -> float:
    """Return the spread (standard deviation, bytes) of single repeats, from their ranges.

    The largest over the sizes: the budget is checked against the worst case.
    """
    sds = [0.0]
    for c in members:
        if c.peak_rss_spread and c.runs >= 2:
            width = c.peak_rss_spread[1] - c.peak_rss_spread[0]
            sds.append(width / _RANGE_TO_SD.get(c.runs, 3.0))
    return max(sds)


def line_of(fit: ScalingFit) -> LinearFit:
    """Return the fit's least-squares line again, from its saved points."""
    return fit_line([x for x, _ in fit.points], [y for _, y in fit.points])


def bounds(fit: ScalingFit, size: float) -> tuple[float, float, float]:
    """Return (peak, low, high) in bytes predicted at `size`; `high` is what budgets check.

    Constant memory: the largest median measured, up to the worst repeat or 5% above (at
    least 1 MB, or two residual or repeat spreads), the rise a constant verdict admits.
    Growing memory: the line, with its 95% prediction interval from the residuals and the
    repeats' spread (3+ sizes), or two repeat spreads (2 sizes). At and beyond the largest
    size measured, never below what was measured there.
    """
    extra = fit.repeat_sd_bytes
    if fit.verdict == "constant":
        peak = float(fit.peak_max_bytes)
        low = min(y for _, y in fit.points)
        # "Constant" admits a rise below the growth threshold: the upper end allows it.
        noise = 2 * max(extra, fit.residual_sd_bytes or 0.0)
        margin = max(noise, GROWTH_THRESHOLD * peak, MIN_GROWTH_BYTES)
        return peak, low, max(float(fit.worst_bytes), peak + margin)
    line = line_of(fit)
    peak = line.at(size)
    interval = line.prediction_interval(size, extra_sd=extra)
    low, high = interval if interval is not None else (peak - 2 * extra, peak + 2 * extra)
    if size >= fit.points[-1][0]:
        peak = max(peak, float(fit.peak_max_bytes))
        high = max(high, peak, float(fit.worst_bytes))
    return peak, min(low, peak), high


def largest_fitting(fit: ScalingFit, allowed: float) -> int | None:
    """Return the largest size whose predicted upper bound is at most `allowed` bytes.

    None means no limit (constant memory within the allowance); 0 means not even the
    smallest input fits.
    """
    if fit.verdict == "constant":
        return None if bounds(fit, 0)[2] <= allowed else 0
    if bounds(fit, 0)[2] > allowed:
        return 0
    low, high = 0.0, max(fit.points[-1][0], 1.0)
    while bounds(fit, high)[2] <= allowed:
        low, high = high, high * 2
        if high > 1e15:
            return None
    for _ in range(200):
        if high - low <= 0.5:
            break
        mid = (low + high) / 2
        if bounds(fit, mid)[2] <= allowed:
            low = mid
        else:
            high = mid
    return math.floor(low)


def firmness(fit: ScalingFit, value: float) -> tuple[float, bool, str | None]:
    """Return (extrapolation ×, firm, warning) for a prediction of `fit` at `value`."""
    largest = fit.points[-1][0]
    factor = value / largest if largest > 0 else math.inf
    warnings = []
    if fit.sizes < 3:
        warnings.append("2 sizes only: no fit quality or interval; measure 1 more size at least")
    if factor > FIRM_EXTRAPOLATION:
        goal = value / FIRM_EXTRAPOLATION
        more = max(1, math.ceil(math.log2(goal / largest)))
        warnings.append(
            f"extrapolated {factor:,.0f}× past the largest size measured ({largest:,.0f}); "
            f"{more} more size(s), doubling up to {goal:,.0f}, would make it firm"
        )
    firm = not warnings
    return round(factor, 2), firm, "; ".join(warnings) or None


def predict(
    fits: list[ScalingFit], at: dict[str, float], budgets_bytes: list[int], headroom: float
) -> list[Prediction]:
    """Return each matching fit's predicted peak at `at`, with its interval and the budgets
    its upper end fits in (at `headroom`)."""
    predictions = []
    for fit in fits:
        if fit.axis not in at:
            continue
        value = at[fit.axis]
        peak, low, high = bounds(fit, value)
        factor, firm, warning = firmness(fit, value)
        fits_in = [b for b in sorted(budgets_bytes) if high <= headroom * b]
        predictions.append(
            Prediction(
                axis=fit.axis,
                value=value,
                params=fit.params,
                peak_rss_bytes=int(peak),
                fits_budgets=fits_in,
                peak_low_bytes=int(max(low, 0)),
                peak_high_bytes=int(high),
                verdict=fit.verdict,
                extrapolation=factor,
                firm=firm,
                warning=warning,
            )
        )
    return predictions


def capacities(fits: list[ScalingFit], budgets_bytes: list[int], headroom: float) -> list[Capacity]:
    """Return, per fit and budget, the largest input that fits headroom × budget."""
    return [
        Capacity(f.axis, f.params, b, largest_fitting(f, headroom * b), f.verdict)
        for f in fits
        for b in sorted(budgets_bytes)
    ]


def capacity_text(largest: int | None, axis: str) -> str:
    """Return `fits up to 51,234 records`, or `no limit` for constant memory."""
    if largest is None:
        return "no limit"
    return f"fits up to {largest:,} {axis}"


def _with_band(fit: ScalingFit, start: float, end: float) -> ScalingFit:
    """Return `fit` with [size, peak, low, high] rows from `start` to `end`, geometric."""
    start = max(start, 1.0)
    ratio = (end / start) ** (1 / (BAND_POINTS - 1)) if end > start else 1.0
    sizes = sorted({start * ratio**i for i in range(BAND_POINTS)} | {p[0] for p in fit.points})
    rows = [[round(x, 2), *(round(v, 1) for v in bounds(fit, x))] for x in sizes]
    return dataclasses.replace(fit, band=rows)
