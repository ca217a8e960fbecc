"""Candidate curves of a measure (peak bytes, wall seconds) against an input size, and the
choice among them by how well each predicts the sizes it did not see.

Every candidate is a line in a transformed size, y = a + b·g(n), with at most one shape
parameter, fitted by profile least squares (analysis/fit.py fits a and b for each shape):

| model        | g(n)                     | parameters                      |
| ------------ | ------------------------ | ------------------------------- |
| `constant`   | 0                        | a                               |
| `linear`     | n                        | a, b                            |
| `nlogn`      | n·ln n                   | a, b                            |
| `saturating` | 1 − exp(−n / s)          | a, b, s: levels off at a + b    |
| `power`      | n^k, k in [0.1, 3]       | a, b, k                         |
| `linear_tail`| n, the largest sizes only| a, b: the slope where measured last |

Sizes are divided by the largest one measured (`scale`) while fitting, so that every shape
is well conditioned; `params` gives the fit in the caller's units.

With 4 sizes or more each candidate is scored by its leave-one-out error: the root mean
square error of predicting each size from the others (the smallest always kept: a model is
used at and above the sizes measured), its shape refitted each time. Scores
are floored at the measurement's noise (differences below it say nothing). The curvature
test asks whether a quadratic term explains the line's residuals beyond their noise (an F
test at 95%; or the line misses the sizes it did not see by more than 3× the noise and 3× the
best curve, which the F test is too weak to see with 4 or 5 sizes): without curvature only a
constant or a line may be chosen, with it only a curve. The
simplest eligible candidate within 25% of the best score is chosen, so a parameter must earn
its place by predicting unseen sizes clearly better, and between candidates as simple as each
other the better score wins; eligible candidates within 2× of the best are plausible, and so
is the line when only the out-of-sample errors saw curvature.

A series that bends down (the curvature test's quadratic term 3× the noise at least, and the
slope at the largest sizes below the line's) has one more reading: `linear_tail`, the line
through the largest half of the sizes, the slope measured last going on. It is what real jobs
most often are, a start-up that levels off (buffers, caches and pools filling) on top of a
growth that goes on, and it is the most any curve that keeps bending down can reach further
out. It is chosen when even the best candidate misses the sizes it did not see by more than
2× the noise (none describes the series); it is plausible when a curve is chosen and another
candidate is plausible too (the caller then checks budgets against the most pessimistic).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memdiag.analysis.fit import LinearFit, fit_line, t_quantile

# The order of simplicity: the first candidate within SIMPLER_WITHIN of the best is chosen;
# between candidates of as many parameters, the better score.
MODELS = ("constant", "linear", "nlogn", "power", "saturating")
PARAMETERS = {"constant": 1, "linear": 2, "nlogn": 2, "saturating": 3, "power": 3, "linear_tail": 2}
CURVED = ("nlogn", "saturating", "power")
# Sizes needed before curves are told apart (a 3-parameter curve leaves one out of 4).
MODEL_SIZES = 4
SIMPLER_WITHIN = 1.25
# The line's leave-one-out error, over the best curve's and the noise, that is curvature too.
CLEARLY_WORSE = 3.0
PLAUSIBLE_WITHIN = 2.0
# The best candidate's leave-one-out error, over the noise, that no candidate describes.
UNDESCRIBED = 2.0
_SHAPES: dict[str, tuple[float, float, bool]] = {
    # model → (lowest, highest, searched on a log scale); s is in units of the largest size
    "power": (0.1, 3.0, False),
    "saturating": (0.02, 50.0, True),
}
_GRID = 16
_REFINE = 24
# A shape within this share of an end of its range sits on the edge: it was not estimated.
_EDGE = 0.01
# The two-sided 95% quantile of the normal distribution: for a spread known, not estimated.
Z_95 = 1.959964


@dataclass(frozen=True)
class Curve:
    """One fitted candidate: y = a + b·g(n / scale), and what its prediction interval needs.

    `score` is the leave-one-out error (the measure's unit), None before scoring or with too
    few sizes; `plausible` is set by the choice.
    """

    model: str
    a: float
    b: float
    shape: float | None
    scale: float
    n: int
    mean_g: float = 0.0
    sxx_g: float = 0.0
    residual_sd: float | None = None
    score: float | None = None
    plausible: bool = False

    def g(self, x: float) -> float:
        """Return the transformed size of `x`."""
        return _g(self.model, x / self.scale, self.shape, self.scale)

    def at(self, x: float) -> float:
        """Return the curve's value at size `x`."""
        return self.a + self.b * self.g(x)

    def interval(
        self,
        x: float,
        extra_sd: float = 0.0,
        xs: Sequence[float] = (),
        floor: float = 0.0,
    ) -> tuple[float, float] | None:
        """Return the 95% interval of a new observation at `x` (None without residual freedom).

        `xs`, the sizes the curve was fitted to, let the fitted shape's own uncertainty in
        (the delta method on a, b and the shape); without them the shape is taken as known.
        A shape at the edge of its range was not estimated and adds nothing. `floor` is the
        spread of one measurement known from elsewhere (the noise of RSS): the interval is
        never narrower than that spread alone gives, since residuals with one or two degrees
        of freedom can be small by chance.
        """
        params = PARAMETERS[self.model]
        if self.residual_sd is None or self.n <= params:
            return None
        centre = self.at(x)
        if self.model == "constant":
            leverage = 1 + 1 / self.n
        else:
            sxx = max(self.sxx_g, 1e-300)
            line = LinearFit(self.b, self.a, 0.0, self.n, self.mean_g, sxx, self.residual_sd)
            leverage = self._shape_leverage(x, xs) or line.leverage(self.g(x))
        fitted = t_quantile(self.n - params) * math.sqrt(
            self.residual_sd**2 * leverage + extra_sd**2
        )
        known = Z_95 * math.sqrt(floor**2 * leverage + extra_sd**2)
        half = max(fitted, known)
        return centre - half, centre + half

    def _shape_leverage(self, x: float, xs: Sequence[float]) -> float | None:
        """1 + j(x)ᵀ(JᵀJ)⁻¹j(x) over (a, b, shape), or None without an estimated shape."""
        if self.shape is None or self.model not in _SHAPES or len(xs) != self.n:
            return None
        low, high, _ = _SHAPES[self.model]
        if not low * (1 + _EDGE) < self.shape < high * (1 - _EDGE):
            return None
        rows = [self._gradient(u) for u in xs]
        # Each parameter in units of its own column: the leverage does not change, the
        # conditioning does (a, b and the shape differ by 15 orders of magnitude in bytes).
        norms = [math.sqrt(math.fsum(r[j] ** 2 for r in rows)) or 1.0 for j in range(3)]
        rows = [[r[j] / norms[j] for j in range(3)] for r in rows]
        normal = [[math.fsum(r[i] * r[j] for r in rows) for j in range(3)] for i in range(3)]
        here = [v / norms[j] for j, v in enumerate(self._gradient(x))]
        solved = _solve3(normal, here)
        if solved is None:
            return None
        return 1 + math.fsum(h * v for h, v in zip(here, solved, strict=True))

    def _gradient(self, x: float) -> list[float]:
        """∂y/∂(a, b, shape) at size `x`."""
        u = max(x / self.scale, 0.0)
        s = self.shape or 1.0
        if self.model == "power":
            dshape = self.b * u**s * math.log(u) if u > 0 else 0.0
        else:  # saturating
            dshape = -self.b * math.exp(-u / s) * u / (s * s)
        return [1.0, self.g(x), dshape]

    def params(self) -> dict[str, float]:
        """Return the parameters in the caller's units: y = a + b·g(n) with n unscaled."""
        if self.model == "constant":
            return {"a": self.a}
        if self.model in ("linear", "linear_tail"):
            return {"a": self.a, "b": self.b / self.scale}
        if self.model == "nlogn":
            return {"a": self.a, "b": self.b / (self.scale * math.log(self.scale))}
        if self.model == "power":
            k = self.shape or 1.0
            return {"a": self.a, "b": self.b / self.scale**k, "k": k}
        return {"a": self.a, "b": self.b, "s": (self.shape or 1.0) * self.scale}

    def to_dict(self) -> dict[str, Any]:
        """Return the saved form: model, params, score, plausible, and `fit` to re-evaluate."""
        return {
            "model": self.model,
            "params": {k: _round(v) for k, v in self.params().items()},
            "loo_error": None if self.score is None else _round(self.score),
            "plausible": self.plausible,
            "fit": {
                "a": self.a,
                "b": self.b,
                "shape": self.shape,
                "scale": self.scale,
                "n": self.n,
                "mean_g": self.mean_g,
                "sxx_g": self.sxx_g,
                "residual_sd": self.residual_sd,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Curve:
        """Return the curve saved by `to_dict`."""
        fit = data["fit"]
        return cls(
            model=data["model"],
            score=data.get("loo_error"),
            plausible=bool(data.get("plausible")),
            **fit,
        )


@dataclass(frozen=True)
class Choice:
    """The candidates fitted to one series, the one chosen, and the curvature found.

    `curvature` (None below 4 sizes) is the F test's verdict or the line clearly worse out of
    sample, `curvature_f` the F statistic; `clear` is False when another candidate is plausible;
    `described` is False when no candidate predicts the sizes it did not see within 2× the
    noise (the chosen one is then `linear_tail`).
    """

    chosen: Curve
    curves: list[Curve]
    curvature_f: float | None
    curvature: bool | None
    described: bool = True

    @property
    def plausible(self) -> list[Curve]:
        return [c for c in self.curves if c.plausible]

    @property
    def clear(self) -> bool:
        return all(c is self.chosen for c in self.plausible)


def fit_curve(model: str, xs: Sequence[float], ys: Sequence[float], scale: float) -> Curve | None:
    """Return the least-squares `model` through the points, or None when it cannot be fitted
    (fewer points than parameters, or n·log n on sizes up to 1)."""
    n = len(xs)
    if n < PARAMETERS[model] or (model == "nlogn" and scale <= 1):
        return None
    if model == "constant":
        mean = math.fsum(ys) / n
        sd = math.sqrt(math.fsum((y - mean) ** 2 for y in ys) / (n - 1)) if n >= 2 else None
        return Curve("constant", mean, 0.0, None, scale, n, residual_sd=sd)
    if model not in _SHAPES:
        return _fit_shape(model, xs, ys, scale, None)[1]
    low, high, log = _SHAPES[model]
    grid = [_between(low, high, i / (_GRID - 1), log) for i in range(_GRID)]
    ssrs = [_fit_shape(model, xs, ys, scale, s)[0] for s in grid]
    best = min(range(_GRID), key=lambda i: ssrs[i])
    left, right = grid[max(best - 1, 0)], grid[min(best + 1, _GRID - 1)]
    shape = _golden(lambda s: _fit_shape(model, xs, ys, scale, s)[0], left, right, log)
    return _fit_shape(model, xs, ys, scale, shape)[1]


def loo_error(model: str, xs: Sequence[float], ys: Sequence[float], scale: float) -> float | None:
    """Return the root mean square error of predicting each point from the others.

    The smallest size is never left out: a model is used at and above the sizes measured,
    and a 3-parameter curve through the 3 larger points extrapolated backwards says nothing
    about how it extrapolates forwards.
    """
    errors = []
    smallest = min(range(len(xs)), key=lambda i: xs[i])
    for i in range(len(xs)):
        if i == smallest:
            continue
        rest_x = [x for j, x in enumerate(xs) if j != i]
        rest_y = [y for j, y in enumerate(ys) if j != i]
        if len(set(rest_x)) < min(PARAMETERS[model], 2):
            return None
        curve = fit_curve(model, rest_x, rest_y, scale)
        if curve is None:
            return None
        errors.append((curve.at(xs[i]) - ys[i]) ** 2)
    return math.sqrt(math.fsum(errors) / len(errors)) if errors else None


def curvature_test(
    xs: Sequence[float], ys: Sequence[float], noise: float
) -> tuple[float, bool] | None:
    """Return (F, curved): does a quadratic term explain the line's residuals beyond both
    their own scatter and `noise` (F against F(1, n − 3) at 95%)? None below 4 sizes."""
    n = len(xs)
    scale = max(xs)
    if n < MODEL_SIZES or scale <= 0:
        return None
    us = [x / scale for x in xs]
    line = fit_line(us, ys)
    residuals = [y - line.at(u) for u, y in zip(us, ys, strict=True)]
    square = fit_line(us, [u * u for u in us])
    z = [u * u - square.at(u) for u in us]  # the square's part that a line cannot explain
    szz = math.fsum(v * v for v in z)
    if szz <= 0:
        return None
    rz = math.fsum(r * v for r, v in zip(residuals, z, strict=True))
    explained = rz * rz / szz
    left = max(math.fsum(r * r for r in residuals) - explained, 0.0)
    variance = max(left / (n - 3), noise * noise, 1e-300)
    f = explained / variance
    return f, f > t_quantile(n - 3) ** 2


def choose_curve(
    xs: Sequence[float],
    ys: Sequence[float],
    noise: float,
    allowed: Sequence[str] = MODELS,
) -> Choice | None:
    """Return every candidate among `allowed`, scored, and the one chosen; None below 4 sizes.

    The curvature test decides which candidates may be chosen: without curvature, a constant
    or a line (a curve fitted to noise extrapolates wildly); with curvature, only curves (a
    superlinear curve is never replaced by a line that merely fits the sizes measured). Among
    those, the simplest within 25% of the best score is chosen and those within 2× are
    plausible.
    """
    if len(set(xs)) < MODEL_SIZES:
        return None
    scale = max(xs)
    test = curvature_test(xs, ys, noise)
    curved = test is not None and test[1]
    scored = []
    for model in allowed:
        curve = fit_curve(model, xs, ys, scale)
        score = loo_error(model, xs, ys, scale)
        if curve is not None and score is not None:
            scored.append(dataclasses.replace(curve, score=score))
    # Curvature seen only out of sample leaves the line plausible: the F test did not refute it.
    weak = not curved and _line_clearly_worse(scored, noise)
    curved = curved or weak
    eligible = [c for c in scored if (c.model in CURVED) == curved] or scored
    if not eligible:
        return None
    floor = max(noise, 1e-12)
    effective = {c.model: math.hypot(c.score or 0.0, floor) for c in eligible}
    best = min(effective.values())
    near = [c for c in eligible if effective[c.model] <= SIMPLER_WITHIN * best]
    simplest = min(PARAMETERS[c.model] for c in near)
    chosen = min(
        (c for c in near if PARAMETERS[c.model] == simplest), key=lambda c: c.score or 0.0
    ).model
    curves = [
        dataclasses.replace(
            c,
            plausible=effective.get(c.model, math.inf) <= PLAUSIBLE_WITHIN * best
            or (weak and c.model == "linear"),
        )
        for c in scored
    ]
    pick = next(c for c in curves if c.model == chosen)
    bent = test is not None and test[0] >= CLEARLY_WORSE**2
    tail = _tail(xs, ys, scale, scored) if bent else None
    best_score = min(c.score or 0.0 for c in scored)
    described = tail is None or best_score <= UNDESCRIBED * floor
    unclear = sum(c.plausible for c in curves) > 1 and pick.model in CURVED
    if tail is not None and (not described or unclear):
        curves.append(tail)
    return Choice(
        tail if tail is not None and not described else pick,
        curves,
        None if test is None else round(test[0], 3),
        None if test is None else curved,
        described=described,
    )


def _tail(
    xs: Sequence[float], ys: Sequence[float], scale: float, scored: list[Curve]
) -> Curve | None:
    """Return `linear_tail`, plausible, for a series that bends down (the caller has seen the
    bend: the curvature test's F at 9 or more, a quadratic term 3× the noise): the line
    through the largest half of the sizes (two at least), its slope positive and below the
    line's through them all. None otherwise."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    upper = order[-max(2, len(order) // 2) :]
    tail_x, tail_y = [xs[i] for i in upper], [ys[i] for i in upper]
    if len(set(tail_x)) < 2:
        return None
    line = next((c for c in scored if c.model == "linear"), None)
    curve = _fit_shape("linear", tail_x, tail_y, scale, None)[1]
    if line is None or not 0 < curve.b < line.b:
        return None
    return dataclasses.replace(curve, model="linear_tail", plausible=True)


def _line_clearly_worse(scored: list[Curve], noise: float) -> bool:
    """True when the line misses the sizes it did not see by more than 3× the noise and 3×
    the best curve: evidence of curvature that the F test, with 1 or 2 degrees of freedom
    left at 4 or 5 sizes, is too weak to give."""
    line = next((c.score for c in scored if c.model == "linear"), None)
    curves = [c.score for c in scored if c.model in CURVED and c.score is not None]
    if line is None or not curves:
        return False
    return line >= CLEARLY_WORSE * max(min(curves), noise)


def _g(model: str, u: float, shape: float | None, scale: float) -> float:
    if model in ("linear", "linear_tail"):
        return u
    if model == "nlogn":
        return u * math.log(max(u * scale, 1.0)) / math.log(scale)
    if model == "power":
        return float(max(u, 0.0) ** (shape or 1.0))
    if model == "saturating":
        return 1.0 - math.exp(-max(u, 0.0) / (shape or 1.0))
    return 0.0


def _fit_shape(
    model: str, xs: Sequence[float], ys: Sequence[float], scale: float, shape: float | None
) -> tuple[float, Curve]:
    gs = [_g(model, x / scale, shape, scale) for x in xs]
    line = fit_line(gs, ys)
    ssr = math.fsum((y - line.at(g)) ** 2 for g, y in zip(gs, ys, strict=True))
    params = PARAMETERS[model]
    n = len(xs)
    sd = math.sqrt(max(ssr, 0.0) / (n - params)) if n > params else None
    curve = Curve(model, line.intercept, line.slope, shape, scale, n, line.mean_x, line.sxx, sd)
    return ssr, curve


def _between(low: float, high: float, t: float, log: bool) -> float:
    if log:
        return math.exp(math.log(low) + t * (math.log(high) - math.log(low)))
    return low + t * (high - low)


def _golden(cost: Any, left: float, right: float, log: bool) -> float:
    """Return the shape in [left, right] minimising `cost` (golden-section search)."""
    ratio = (math.sqrt(5) - 1) / 2
    lo, hi = (math.log(left), math.log(right)) if log else (left, right)
    point = math.exp if log else (lambda v: v)
    c, d = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fc, fd = cost(point(c)), cost(point(d))
    for _ in range(_REFINE):
        if fc < fd:
            hi, d, fd = d, c, fc
            c = hi - ratio * (hi - lo)
            fc = cost(point(c))
        else:
            lo, c, fc = c, d, fd
            d = lo + ratio * (hi - lo)
            fd = cost(point(d))
    middle: float = point((lo + hi) / 2)
    return middle


def _solve3(m: list[list[float]], v: list[float]) -> list[float] | None:
    """Solve the 3×3 system m·x = v (Gaussian elimination); None when it is singular."""
    rows = [[*m[i], v[i]] for i in range(3)]
    size = max(abs(c) for r in m for c in r) or 1.0
    for col in range(3):
        pivot = max(range(col, 3), key=lambda r: abs(rows[r][col]))
        if abs(rows[pivot][col]) <= 1e-9 * size:
            return None
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(3):
            if r != col:
                factor = rows[r][col] / rows[col][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=True)]
    return [rows[i][3] / rows[i][i] for i in range(3)]


def _round(value: float) -> float:
    return float(f"{value:.6g}")
