"""How peak memory grows with the input: a least-squares line along each numeric size axis.

For every numeric axis other than the tuning knobs (batch, concurrency), and for every
combination of the other axes, fit peak = intercept + bytes_per_unit × size over the ok
configurations' median peaks. The verdict is "grows" when the fitted line rises across the
measured range by at least GROWTH_THRESHOLD of the smallest size's peak and by at least
MIN_GROWTH_BYTES, else "constant": a job that streams keeps its peak within noise of its
baseline whatever the input (repeats of one config differ by well under 5%, and by less than
1 MB for small jobs), while one that accumulates rises in proportion to it.
"""

from __future__ import annotations

from typing import Any

from memdiag.model import SIZE_AXES, ConfigSummary, Prediction, ScalingFit

GROWTH_THRESHOLD = 0.05
MIN_GROWTH_BYTES = 1024 * 1024


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
) -> list[ScalingFit]:
    """Return one fit per size axis and combination of the other axes (two sizes at least)."""
    fits = []
    for axis in size_axes(axes, declared):
        groups: dict[str, tuple[dict[str, Any], list[list[float]]]] = {}
        for c in configs:
            if c.status != "ok" or c.peak_rss_bytes is None:
                continue
            others = {k: v for k, v in c.params.items() if k != axis}
            entry = groups.setdefault(repr(sorted(others.items())), (others, []))
            entry[1].append([float(c.params[axis]), float(c.peak_rss_bytes)])
        for others, points in groups.values():
            if len({x for x, _ in points}) >= 2:
                fits.append(_fit(axis, others, sorted(points)))
    return fits


def _fit(axis: str, params: dict[str, Any], points: list[list[float]]) -> ScalingFit:
    """Ordinary least squares of peak on size; R² is None when the peaks do not vary."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    ss_tot = sum((y - mean_y) ** 2 for _, y in points)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in points)
    r2 = None if ss_tot == 0 else round(1 - ss_res / ss_tot, 4)
    low, high = points[0][0], points[-1][0]
    start = max(intercept + slope * low, 1.0)
    rise = slope * (high - low)
    grows = rise / start >= GROWTH_THRESHOLD and rise >= MIN_GROWTH_BYTES
    return ScalingFit(
        axis=axis,
        params=params,
        points=points,
        intercept_bytes=round(intercept, 1),
        bytes_per_unit=round(slope, 3),
        r2=r2,
        growth_fraction=round(rise / start, 4),
        verdict="grows" if grows else "constant",
    )


def predict(
    fits: list[ScalingFit], at: dict[str, float], budgets_bytes: list[int], headroom: float
) -> list[Prediction]:
    """Return each matching fit's predicted peak at `at` and the budgets it would fit in."""
    predictions = []
    for fit in fits:
        if fit.axis not in at:
            continue
        value = at[fit.axis]
        peak = int(fit.intercept_bytes + fit.bytes_per_unit * value)
        fits_in = [b for b in sorted(budgets_bytes) if peak <= headroom * b]
        predictions.append(Prediction(fit.axis, value, fit.params, peak, fits_in))
    return predictions
