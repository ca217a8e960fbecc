"""`--sizes auto`: the next input size to measure so that the decision at `--at` settles.

Starting from the sizes measured, the next size doubles the largest one toward the `--at`
size, until every configuration's prediction there is settled (its interval within 15% of
the budget it decides, or its plausible models agree: see analysis/scaling.settled), the
`--at` size itself was measured, the next size would not fit the largest budget (the upper
end predicted there is above it for every configuration still unsettled), a run at the
largest size failed, or MAX_ADDED sizes were added.
"""

from __future__ import annotations

import math

from memdiag.analysis.scaling import bounds
from memdiag.model import Sweep
from memdiag.params import has_params

MAX_ADDED = 8
# Two small sizes to start from when none is given: --at / 64 and --at / 32.
FIRST_DIVISOR = 64


def first_sizes(at: float) -> list[int | float]:
    """Return the two sizes `--sizes auto` starts from without given ones: at/64 and at/32,
    rounded to two significant digits (whole numbers for a whole `at`)."""
    first = _round2(at / FIRST_DIVISOR)
    if at == int(at):
        start = max(1, int(first))
        return [start, 2 * start]
    return [first, 2 * first]


def next_size(sweep: Sweep) -> tuple[int | float | None, str]:
    """Return (the next size to measure along the `--at` axis, or None; why).

    `sweep` is analysed: its predictions and scaling are current.
    """
    if not sweep.sizes_auto or not sweep.predict:
        return None, ""
    axis, at = next(iter(sweep.predict.items()))
    sizes = sorted(sweep.axes.get(axis, []))
    if not sizes:
        return None, ""
    largest = sizes[-1]
    if largest >= at:
        return None, f"measured at {axis}={_text(at)}"
    if len(sizes) - len(sweep.sizes_auto.get("given", [])) >= MAX_ADDED:
        return None, f"stopped after {MAX_ADDED} sizes added"
    failed = [c for c in sweep.configs if c.params.get(axis) == largest and c.status != "ok"]
    if failed:
        return None, f"a run at {axis}={_text(largest)} did not finish ok ({failed[0].status})"
    unsettled = [p for p in sweep.predictions if p.axis == axis and not p.settled]
    if sweep.predictions and not unsettled:
        return None, f"settled at {axis}={_text(at)} with {len(sizes)} sizes"
    step = min(2 * largest, at)
    step = int(step) if isinstance(largest, int) and step == int(step) else step
    if sweep.budgets_bytes:
        ceiling = max(sweep.budgets_bytes)
        fits = [
            f
            for f in sweep.scaling
            if f.axis == axis and any(has_params(p.params, f.params) for p in unsettled)
        ]
        if fits and all(bounds(f, float(step))[2] > ceiling for f in fits):
            return None, (
                f"{axis}={_text(step)} would not fit the largest budget: not settled, "
                "decided on the upper end"
            )
    return step, f"measuring {axis}={_text(step)}"


def _round2(value: float) -> float:
    if value <= 0:
        return value
    digits = 1 - math.floor(math.log10(value))
    return round(value, digits)


def _text(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,}"
