"""How a memory series moves over time: slope, fit, verdict, and time spent above thresholds.

Pure functions over (seconds, bytes) series, shared by the monitor and the health endpoint.
"Growing" is the leak rule of `memdiag.analysis.leaks` (documented in docs/leaks.md, "The
rule"), with seconds as x instead of iterations: this module decides what it is applied to.

The first WARMUP_SHARE of the window is left out of the verdict: a service filling its
caches, or an interpreter importing its libraries, grows at start without leaking. So is a
release in the last two samples: a process that exits frees its memory as it goes, and that
says nothing about how it grew. Then, in order:

1. `stable` when the series' range is within noise: under `max(NOISE_FLOOR_BYTES,
   NOISE_SHARE x median)`.
2. `sawtooth` when memory is released periodically: at least two releases, a release being a
   drop from the running peak by at least `RELEASE_SHARE` of the range, with the memory
   rising gradually in between (most steps between releases go up, over several samples).
   If the troughs (the level each release returns to) grow by the leak rule, rising by more
   than the noise over their span, the verdict is `growing`: a leak under the sawtooth.
3. `growing` when the series grows by the leak rule, applied to the medians of `SLICES`
   equal slices of the window (so that sampling noise between two samples is not a step)
   with the noise over the window as the smallest rise.
4. `stable` otherwise.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from memdiag.analysis.fit import fit_line
from memdiag.analysis.leaks import LeakSettings, grows
from memdiag.analysis.leaks import trend as series_trend
from memdiag.model.monitor import Verdict

NOISE_FLOOR_BYTES = 2 * 1024 * 1024
NOISE_SHARE = 0.03
RELEASE_SHARE = 0.4
# The leak rule's thresholds; its floor on the slope is the noise, given per series.
RULE = LeakSettings(warmup=0)
SLICES = 10
MIN_RISE_SAMPLES = 2
WARMUP_SHARE = 0.15
RISING_SHARE = 0.6


@dataclass(frozen=True)
class Release:
    """One release: memory fell from `peak` (sample `peak_index`) to `trough` at `t_s`."""

    t_s: float
    peak: float
    trough: float
    peak_index: int
    trough_index: int


@dataclass(frozen=True)
class Trend:
    """A series' verdict with its growth in bytes per second, R^2, and releases found."""

    verdict: Verdict
    slope_bytes_per_s: float
    r2: float
    releases: tuple[Release, ...] = ()
    trough_slope_bytes_per_s: float | None = None
    intercept_bytes: float = 0.0
    from_s: float = 0.0

    @property
    def growth_mb_per_hour(self) -> float:
        """Return the fitted growth in MB (1,048,576 bytes) per hour."""
        return self.slope_bytes_per_s * 3600 / (1024 * 1024)

    @property
    def period_s(self) -> float | None:
        """Return the mean time between releases in seconds, or None with fewer than two."""
        if len(self.releases) < 2:
            return None
        times = [r.t_s for r in self.releases]
        return (times[-1] - times[0]) / (len(times) - 1)


def noise_bytes(values: Sequence[float]) -> float:
    """Return the change in bytes below which a series counts as flat."""
    return max(NOISE_FLOOR_BYTES, NOISE_SHARE * statistics.median(values))


def slice_medians(
    times: Sequence[float], values: Sequence[float], slices: int = SLICES
) -> tuple[list[float], list[float]]:
    """Return (time, value) medians of up to `slices` consecutive equal slices of a series."""
    count = min(slices, len(values))
    bounds = [round(i * len(values) / count) for i in range(count + 1)]
    pairs = [(lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo]
    return (
        [statistics.median(times[lo:hi]) for lo, hi in pairs],
        [statistics.median(values[lo:hi]) for lo, hi in pairs],
    )


def rises(times: Sequence[float], values: Sequence[float], noise: float) -> bool:
    """Return whether the series grows by the leak rule, by more than `noise` over its span."""
    span = times[-1] - times[0]
    if span <= 0:
        return False
    return grows(series_trend(values, times), RULE, min_slope=noise / span)


def find_releases(times: Sequence[float], values: Sequence[float]) -> list[Release]:
    """Return the drops from the running peak by at least RELEASE_SHARE of the range."""
    drop = RELEASE_SHARE * (max(values) - min(values))
    if drop <= 0:
        return []
    releases: list[Release] = []
    top, i = 0, 1
    while i < len(values):
        if values[i] >= values[top]:
            top = i
        elif values[top] - values[i] >= drop:
            # The trough is where the fall stops, so a release spread over samples counts once.
            while i + 1 < len(values) and values[i + 1] <= values[i]:
                i += 1
            releases.append(Release(times[i], values[top], values[i], top, i))
            top = i
        i += 1
    return releases


def rises_gradually(values: Sequence[float], releases: Sequence[Release]) -> bool:
    """Return whether memory climbs steadily from each trough to the next peak.

    A cycle counts when it spans more than MIN_RISE_SAMPLES samples and its net rise is at
    least RISING_SHARE of all the movement in it: random jumps move a lot and get nowhere.
    """
    for before, after in itertools.pairwise(releases):
        segment = values[before.trough_index : after.peak_index + 1]
        if len(segment) <= MIN_RISE_SAMPLES:
            return False
        moved = sum(abs(b - a) for a, b in itertools.pairwise(segment))
        if segment[-1] - segment[0] < RISING_SHARE * moved:
            return False
    return True


def after_warmup(
    times: Sequence[float], values: Sequence[float], share: float = WARMUP_SHARE
) -> tuple[Sequence[float], Sequence[float]]:
    """Return the points after the first `share` of the time window."""
    start = times[0] + share * (times[-1] - times[0])
    first = next(i for i, t in enumerate(times) if t >= start)
    return times[first:], values[first:]


def without_final_release(
    times: Sequence[float], values: Sequence[float]
) -> tuple[Sequence[float], Sequence[float]]:
    """Return the points up to the last peak when the series ends by falling from it."""
    if len(values) < 3:
        return times, values
    releases = find_releases(times, values)
    if releases and releases[-1].trough_index >= len(values) - 2:
        cut = releases[-1].peak_index + 1
        return times[:cut], values[:cut]
    return times, values


def classify(
    times: Sequence[float], values: Sequence[float], warmup_share: float = WARMUP_SHARE
) -> Trend:
    """Return the series' Trend: verdict, slope in bytes/s, R^2 (see the module docstring)."""
    if len(values) < 3 or times[-1] <= times[0]:
        return Trend("unknown", 0.0, 0.0)
    times, values = without_final_release(*after_warmup(times, values, warmup_share))
    if len(values) < 3:
        return Trend("unknown", 0.0, 0.0)
    line = fit_line(times, values)
    start = times[0]
    noise = noise_bytes(values)
    if max(values) - min(values) < noise:
        return Trend("stable", line.slope, line.r2, (), None, line.intercept, start)
    releases = tuple(find_releases(times, values))
    if len(releases) >= 2 and rises_gradually(values, releases):
        trough_times, trough_values = [r.t_s for r in releases], [r.trough for r in releases]
        troughs = fit_line(trough_times, trough_values)
        climbing = rises(trough_times, trough_values, noise)
        verdict: Verdict = "growing" if climbing else "sawtooth"
        return Trend(verdict, line.slope, line.r2, releases, troughs.slope, line.intercept, start)
    verdict = "growing" if rises(*slice_medians(times, values), noise) else "stable"
    return Trend(verdict, line.slope, line.r2, (), None, line.intercept, start)


def time_above(times: Sequence[float], values: Sequence[float], threshold: float) -> float:
    """Return the seconds during which `values` was at or above `threshold`.

    Each sample stands for the time until the next one; the last sample counts for nothing.
    """
    return sum(
        t1 - t0 for t0, t1, v in zip(times, times[1:], values, strict=False) if v >= threshold
    )
