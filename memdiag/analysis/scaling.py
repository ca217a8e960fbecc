"""How peak memory grows with the input: the model chosen along each input-size axis, and
its limits.

An input-size axis is one named like a size (records, items, cycles, ...; see SIZE_AXES) or
declared with `--size-axis`, with numeric values and two sizes at least; tuning knobs such
as batch, concurrency or page_size are never size axes, even when numeric. For each size
axis and each combination of the other axes, the ok configurations' median peaks are fitted
with a line (analysis/fit.py) and, from 4 sizes, with every candidate of analysis/curves.py
(constant, line, n·log n, saturating, power law), one chosen by leave-one-out error.

The model is honest about what it knows:
- with 3 sizes or more the line has a quality (R²), a 95% interval on its slope, and a
  prediction interval from its residuals and the repeats' own spread; with 2 sizes it has
  neither (two points always lie on a line), and says so;
- below 4 sizes the model is the line or constant: a rise across the sizes of more than 1 MB
  and twice the noise (the repeats' spread, the line's residuals) is growth, whatever the
  slope's interval says (with few sizes that interval is wide, and "constant" would hide the
  growth); growing memory is then not firm, since a curve cannot be told from the line. From
  4 sizes the data choose, and a constant chosen while the line is plausible has the line's
  prediction as its upper end;
- a constant prediction is the largest median measured, its upper end 5% (at least 1 MB, or
  two residual or repeat spreads) above: the rise "constant" admits;
- the interval is the chosen model's: its residuals and the uncertainty of every parameter
  it fitted (a fitted exponent or bend widens the interval away from the sizes measured),
  never narrower than the noise of one measurement (the repeats' spread, at least 0.2% of
  the peak or 256 KB) gives, since a curve through 4 or 5 sizes can have residuals small
  by chance; widened to every plausible model's prediction; when
  the curvature test finds curvature and no model is clearly better, its upper end is the
  most pessimistic plausible model's;
- a prediction is never below the largest median peak measured for that configuration;
- beyond 10× the largest size measured, a prediction is flagged as not firm.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from memdiag.analysis.aggregate import worst_peak
from memdiag.analysis.curves import Choice, Curve, choose_curve, fit_curve
from memdiag.analysis.fit import LinearFit, fit_line
from memdiag.model import SIZE_AXES, Capacity, ConfigSummary, Prediction, ScalingFit
from memdiag.units import format_size

# The rise a constant verdict admits above the largest peak measured (its upper end).
GROWTH_THRESHOLD = 0.05
# A rise across the sizes below this is RSS noise, never growth.
MIN_GROWTH_BYTES = 1024 * 1024
# What the candidates' scores are floored at: differences below it say nothing about a shape.
NOISE_FLOOR_BYTES = 256 * 1024
NOISE_FLOOR_FRACTION = 0.002
WALL_NOISE_FRACTION = 0.02
# A prediction is settled when its interval spans at most this share of the budget it
# decides, or when the plausible models agree within it.
SETTLED_WITHIN = 0.15
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
    members = sorted(members, key=lambda c: float(c.params[axis]))
    points = [[float(c.params[axis]), float(c.peak_rss_bytes or 0)] for c in members]
    xs, ys = [x for x, _ in points], [y for _, y in points]
    line = fit_line(xs, ys)
    low, high = points[0][0], points[-1][0]
    start = max(line.at(low), 1.0)
    rise = line.slope * (high - low)
    interval = line.slope_interval()
    spread = repeat_sd(members)
    # A rise beyond the noise of RSS (1 MB), of the repeats and of the line's own residuals
    # is growth even when the slope's interval, with few sizes, is too wide to exclude 0:
    # peaks of 100, 102 and 104.7 MB are not constant because 3 sizes cannot prove a slope.
    visible = rise >= max(MIN_GROWTH_BYTES, 2 * spread, 2 * (line.residual_sd or 0.0))
    grows = visible or (interval is not None and interval[0] > 0)
    worst = max(worst_peak(c) for c in members)
    noise = _noise(spread, max(ys))
    choice = choose_curve(xs, ys, noise)
    chosen = _chosen(choice, xs, ys, grows)
    fit = ScalingFit(
        axis=axis,
        params=params,
        points=points,
        intercept_bytes=round(line.intercept, 1),
        bytes_per_unit=round(line.slope, 3),
        r2=round(line.r2, 4) if line.n >= 3 and line.residual_sd is not None else None,
        growth_fraction=round(rise / start, 4),
        verdict="constant" if chosen.model == "constant" else "grows",
        sizes=len(points),
        slope_low=None if interval is None else round(interval[0], 3),
        slope_high=None if interval is None else round(interval[1], 3),
        residual_sd_bytes=None if line.residual_sd is None else round(line.residual_sd, 1),
        repeat_sd_bytes=round(spread, 1),
        peak_max_bytes=int(max(ys)),
        worst_bytes=int(worst),
        model=chosen.model,
        model_params={k: float(f"{v:.6g}") for k, v in chosen.params().items()},
        models=[] if choice is None else [c.to_dict() for c in choice.curves],
        curvature=None if choice is None else choice.curvature,
        curvature_f=None if choice is None else choice.curvature_f,
        pessimistic=choice is not None
        and ((bool(choice.curvature) and not choice.clear) or not choice.described),
        doubling_factor=_doubling(chosen, high),
        plateau_bytes=int(chosen.a + chosen.b)
        if chosen.model == "saturating" and chosen.b > 0
        else None,
        **_wall(axis, members),
    )
    end = max(high, until or high)
    return _with_band(fit, low, end)


def _noise(spread: float, peak: float) -> float:
    """The spread of one peak measured: the repeats', never below the noise of RSS."""
    return max(spread, NOISE_FLOOR_FRACTION * peak, NOISE_FLOOR_BYTES)


def noise_floor(fit: ScalingFit) -> float:
    """Return the spread of one peak measured along `fit` (bytes), as its choice used it."""
    return _noise(fit.repeat_sd_bytes, float(fit.peak_max_bytes))


def _chosen(choice: Choice | None, xs: list[float], ys: list[float], grows: bool) -> Curve:
    """The chosen curve; below 4 sizes the line when memory grows, else constant."""
    if choice is not None:
        return choice.chosen
    curve = fit_curve("linear" if grows else "constant", xs, ys, max(xs))
    assert curve is not None  # two sizes at least: a line and a constant always fit
    return curve


def _doubling(curve: Curve, size: float) -> float | None:
    """Memory at twice `size` over memory at `size`, from the curve."""
    here = curve.at(size)
    return round(curve.at(2 * size) / here, 3) if here > 0 else None


def _wall(axis: str, members: list[ConfigSummary]) -> dict[str, Any]:
    """Wall time against the size: [size, median wall, records] and the model chosen."""
    timed = [c for c in members if c.wall_s is not None]
    if len({c.params[axis] for c in timed}) < 2:
        return {}
    rows = [[float(c.params[axis]), float(c.wall_s or 0.0), float(c.records or 0)] for c in timed]
    xs, walls = [r[0] for r in rows], [r[1] for r in rows]
    spread = max(
        [(c.wall_spread[1] - c.wall_spread[0]) / 2 for c in timed if c.wall_spread] or [0.0]
    )
    noise = max(spread, WALL_NOISE_FRACTION * max(walls), 1e-3)
    choice = choose_curve(xs, walls, noise)
    curve = choice.chosen if choice is not None else fit_curve("linear", xs, walls, max(xs))
    return {"wall_points": rows, "wall_model": None if curve is None else curve.to_dict()}


def predicted_speed(fit: ScalingFit, size: float) -> tuple[float | None, float | None]:
    """Return (wall seconds, records/s) predicted at `size` from the fit's wall model.

    Never quicker than the largest size measured; records scale with the size, as measured
    there. (None, None) without a wall model (files written before it).
    """
    if not fit.wall_model or not fit.wall_points:
        return None, None
    measured_size, measured_wall, records = fit.wall_points[-1]
    wall = Curve.from_dict(fit.wall_model).at(size)
    if size >= measured_size:
        wall = max(wall, measured_wall)
    wall = max(wall, 1e-6)
    rate = records * size / measured_size / wall if records and measured_size else None
    return round(wall, 3), None if rate is None else round(rate, 1)


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

    The chosen model's prediction and 95% interval (residuals and the repeats' spread in
    quadrature), never narrower than the plausible models' predictions; with curvature and
    no clearly better model, up to the most pessimistic plausible model's upper end. Constant
    memory: the largest median measured, up to the worst repeat or 5% above (at least 1 MB,
    or two residual or repeat spreads). At and beyond the largest size measured, never below
    what was measured there.
    """
    curves = [Curve.from_dict(m) for m in fit.models]
    chosen = next((c for c in curves if c.model == fit.model), None)
    if chosen is None:  # below 4 sizes, or a file written before models: the verdict's line
        return _line_bounds(fit, size)
    peak, low, high = _reading(fit, chosen, size)
    for other in (c for c in curves if c.plausible and c is not chosen):
        centre, _, upper = _reading(fit, other, size)
        low, high = min(low, centre), max(high, upper if fit.pessimistic else centre)
    if size >= fit.points[-1][0]:
        peak = max(peak, float(fit.peak_max_bytes))
        high = max(high, peak, float(fit.worst_bytes))
    return peak, min(low, peak), high


def _reading(fit: ScalingFit, curve: Curve, size: float) -> tuple[float, float, float]:
    """One model's (peak, low, high) at `size`."""
    if curve.model == "constant":
        return _constant_bounds(fit)
    extra = fit.repeat_sd_bytes
    peak = curve.at(size)
    xs = [x for x, _ in fit.points]
    interval = curve.interval(size, extra_sd=extra, xs=xs, floor=noise_floor(fit))
    low, high = interval if interval is not None else (peak - 2 * extra, peak + 2 * extra)
    return peak, low, high


def _constant_bounds(fit: ScalingFit) -> tuple[float, float, float]:
    peak = float(fit.peak_max_bytes)
    low = min(y for _, y in fit.points)
    # "Constant" admits a rise below the growth threshold: the upper end allows it.
    noise = 2 * max(fit.repeat_sd_bytes, fit.residual_sd_bytes or 0.0)
    margin = max(noise, GROWTH_THRESHOLD * peak, MIN_GROWTH_BYTES)
    return peak, low, max(float(fit.worst_bytes), peak + margin)


def _line_bounds(fit: ScalingFit, size: float) -> tuple[float, float, float]:
    """The verdict's reading without candidate models: constant, or the line."""
    if fit.verdict == "constant":
        return _constant_bounds(fit)
    extra = fit.repeat_sd_bytes
    line = line_of(fit)
    peak = line.at(size)
    interval = line.prediction_interval(size, extra_sd=extra)
    low, high = interval if interval is not None else (peak - 2 * extra, peak + 2 * extra)
    if size >= fit.points[-1][0]:
        peak = max(peak, float(fit.peak_max_bytes))
        high = max(high, peak, float(fit.worst_bytes))
    return peak, min(low, peak), high


def _bounded(fit: ScalingFit) -> bool:
    """True when memory is constant and no plausible model says otherwise."""
    return fit.verdict == "constant" and not any(
        m["plausible"] and m["model"] != "constant" for m in fit.models
    )


def largest_fitting(fit: ScalingFit, allowed: float) -> int | None:
    """Return the largest size whose predicted upper bound is at most `allowed` bytes.

    None means no limit (constant memory within the allowance); 0 means not even the
    smallest input fits.
    """
    if _bounded(fit):
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
    elif fit.sizes < 4 and fit.verdict == "grows":
        warnings.append(
            "3 sizes: memory grows, and a curve cannot be told from a line below 4 sizes; "
            "measure 1 more size at least"
        )
    if fit.model == "linear_tail":
        scores = [m["loo_error"] for m in fit.models if m.get("loo_error") is not None]
        best = min(scores, default=0.0)
        warnings.append(
            f"no model predicts the sizes it did not see (the best misses them by "
            f"{format_size(best)}): the slope at the largest sizes is carried on, and budgets "
            "are checked against the most pessimistic plausible model; measure larger sizes"
        )
    elif fit.pessimistic:
        names = ", ".join(m["model"] for m in fit.models if m["plausible"])
        warnings.append(
            f"memory curves (curvature test F = {fit.curvature_f:,.1f}) and no model is clearly "
            f"better ({names}): the budget is checked against the most pessimistic"
        )
    if factor > FIRM_EXTRAPOLATION:
        goal = value / FIRM_EXTRAPOLATION
        more = max(1, math.ceil(math.log2(goal / largest)))
        warnings.append(
            f"extrapolated {factor:,.0f}× past the largest size measured ({largest:,.0f}); "
            f"{more} more size(s), doubling up to {goal:,.0f}, would make it firm"
        )
    firm = not warnings
    return round(factor, 2), firm, "; ".join(warnings) or None


def settled(fit: ScalingFit, value: float, budgets_bytes: list[int], headroom: float) -> bool:
    """Return True when more sizes would not change the answer at `value`: the plausible
    models agree within 15%, or the interval spans at most 15% of the budget it decides
    (the smallest whose headroom share holds its upper end, else the largest)."""
    if fit.sizes < 3 or (fit.sizes < 4 and fit.verdict == "grows"):
        return False
    peak, low, high = bounds(fit, value)
    centres = [Curve.from_dict(m).at(value) for m in fit.models if m["plausible"]]
    agree = not centres or max(centres) <= (1 + SETTLED_WITHIN) * max(min(centres), 1.0)
    if agree and not fit.pessimistic and high <= (1 + SETTLED_WITHIN) * max(peak, 1.0):
        return True
    if not budgets_bytes:
        return False
    fitting = [b for b in sorted(budgets_bytes) if high <= headroom * b]
    decided = fitting[0] if fitting else max(budgets_bytes)
    return high - low <= SETTLED_WITHIN * decided


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
        wall, rate = predicted_speed(fit, value)
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
                model=fit.model or None,
                settled=settled(fit, value, budgets_bytes, headroom),
                wall_s=wall,
                records_per_s=rate,
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
