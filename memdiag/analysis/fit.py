"""Least squares, once for the whole project: a line through points, its intervals, live fits.

Every slope memdiag reports comes from here: scaling of peak with input size, growth per
iteration in leak detection, and a monitored service's trend over time. Intervals use the
Student t distribution with n − 2 degrees of freedom, so a line through two points has a
slope but no interval and no fit quality: two points always lie on a line. A curve that is
a line in a transformed size (a + b·g(n), analysis/curves.py) is fitted here too, with one
degree of freedom fewer per shape parameter (`params`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95


@dataclass(frozen=True)
class LinearFit:
    """A least-squares line: `slope` per x unit, `intercept` at x = 0, `r2` in [0, 1].

    `n`, `mean_x`, `sxx` and `residual_sd` carry what the intervals need; `residual_sd` is
    None with fewer than three points, where residuals say nothing. `params` counts the
    fitted parameters (2 for a line; 3 when x was transformed by a fitted shape): the
    intervals have n − params degrees of freedom.
    """

    slope: float
    intercept: float
    r2: float
    n: int = 0
    mean_x: float = 0.0
    sxx: float = 0.0
    residual_sd: float | None = None
    params: int = 2

    def at(self, x: float) -> float:
        """Return the line's value at `x`."""
        return self.intercept + self.slope * x

    @property
    def slope_stderr(self) -> float | None:
        """Return the standard error of the slope, or None without residual freedom."""
        if self.residual_sd is None or self.sxx <= 0:
            return None
        return self.residual_sd / math.sqrt(self.sxx)

    def slope_interval(self, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
        """Return the slope's two-sided confidence interval, or None with fewer than 3 points."""
        stderr = self.slope_stderr
        if stderr is None or self.n <= self.params:
            return None
        half = t_quantile(self.n - self.params, confidence) * stderr
        return self.slope - half, self.slope + half

    def leverage(self, x: float) -> float:
        """Return 1 + 1/n + (x - mean)² / Sxx: a new observation's variance at `x` in units
        of the residuals' (the spread of the fitted line there, and the observation's own)."""
        return 1 + 1 / self.n + (x - self.mean_x) ** 2 / self.sxx

    def prediction_interval(
        self, x: float, confidence: float = CONFIDENCE, extra_sd: float = 0.0
    ) -> tuple[float, float] | None:
        """Return the interval a new observation at `x` falls in, or None with < 3 points.

        `extra_sd` adds a known spread of single observations (repeats of one point) to the
        residuals' own, in quadrature.
        """
        if self.residual_sd is None or self.sxx <= 0 or self.n <= self.params:
            return None
        sd = math.sqrt(self.residual_sd**2 * self.leverage(x) + extra_sd**2)
        half = t_quantile(self.n - self.params, confidence) * sd
        centre = self.at(x)
        return centre - half, centre + half


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> LinearFit:
    """Return the least-squares line of `ys` on `xs` (a flat line at the mean without spread).

    R² is 0 when the ys do not vary or the xs take a single value.
    """
    n = len(xs)
    if n < 2 or max(xs) == min(xs):
        return LinearFit(0.0, statistics.fmean(ys) if ys else 0.0, 0.0, n)
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = math.fsum((x - mean_x) ** 2 for x in xs)
    sxy = math.fsum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    syy = math.fsum((y - mean_y) ** 2 for y in ys)
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    r2 = min(max(sxy * sxy / (sxx * syy), 0.0), 1.0) if syy > 0 else 0.0
    residual_sd = None
    if n >= 3:
        ss_res = math.fsum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
        residual_sd = math.sqrt(max(ss_res, 0.0) / (n - 2))
    return LinearFit(slope, intercept, r2, n, mean_x, sxx, residual_sd)


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """Return t such that P(|T| <= t) = `confidence` for Student's t with `df` >= 1 freedom."""
    if df < 1:
        raise ValueError("t_quantile needs at least one degree of freedom")
    low, high = 0.0, 1.0
    while _t_central(high, df) < confidence:
        high *= 2
    for _ in range(100):
        mid = (low + high) / 2
        if _t_central(mid, df) < confidence:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _t_central(t: float, df: int) -> float:
    """Return P(|T| <= t) for integer `df` (Abramowitz and Stegun 26.7.3 and 26.7.4)."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 0:
        term = total = 1.0
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return math.sin(theta) * total
    if df == 1:
        return 2 * theta / math.pi
    term = total = 1.0
    for k in range(1, (df - 1) // 2):
        term *= c2 * (2 * k) / (2 * k + 1)
        total += term
    return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)


class RunningFit:
    """A least-squares line updated one point at a time in O(1), for a live trend."""

    def __init__(self) -> None:
        self.n = 0
        self.sx = self.sy = self.sxx = self.sxy = self.syy = 0.0
        self.x0: float | None = None

    def add(self, x: float, y: float) -> None:
        """Add one point."""
        # Shifted by the first x: epoch-sized x squared would lose all precision.
        if self.x0 is None:
            self.x0 = x
        x -= self.x0
        self.n += 1
        self.sx += x
        self.sy += y
        self.sxx += x * x
        self.sxy += x * y
        self.syy += y * y

    def line(self) -> LinearFit:
        """Return the line through the points so far (slope per x unit, R²)."""
        n = self.n
        sxx, syy = n * self.sxx - self.sx**2, n * self.syy - self.sy**2
        if n < 2 or sxx <= 0:
            return LinearFit(0.0, self.sy / n if n else 0.0, 0.0, n)
        sxy = n * self.sxy - self.sx * self.sy
        slope = sxy / sxx
        r2 = sxy * sxy / (sxx * syy) if syy > 0 else 0.0
        intercept = (self.sy - slope * self.sx) / n - slope * (self.x0 or 0.0)
        return LinearFit(slope, intercept, min(max(r2, 0.0), 1.0), n)
