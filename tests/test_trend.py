"""Trend analysis on hand-built series: linear growth, sawtooth, flat with noise."""

from __future__ import annotations

import random

import pytest

from memdiag.analysis.fit import RunningFit, fit_line
from memdiag.analysis.monitor import summarize
from memdiag.analysis.thresholds import ThresholdTracker
from memdiag.analysis.trend import classify, time_above
from memdiag.errors import MemdiagError

MB = 1024 * 1024


def series(n: int, step_s: float, value: object) -> tuple[list[float], list[float]]:
    times = [i * step_s for i in range(n)]
    return times, [value(i) for i in range(n)]  # type: ignore[operator]


def test_linear_growth_is_growing_with_its_slope() -> None:
    noise = random.Random(1)
    # 200 MB + 1 MB a minute, sampled every 10 s for an hour, +-1 MB of noise.
    times, values = series(360, 10.0, lambda i: 200 * MB + i * MB / 6 + noise.uniform(-1, 1) * MB)
    trend = classify(times, values)
    assert trend.verdict == "growing"
    assert trend.growth_mb_per_hour == pytest.approx(60, rel=0.03)
    assert trend.r2 > 0.99


def test_sawtooth_is_found_with_its_period() -> None:
    # Grows 5 MB a sample for 20 samples, then released to 100 MB: a 60 s cycle at 3 s.
    times, values = series(200, 3.0, lambda i: 100 * MB + (i % 20) * 5 * MB)
    trend = classify(times, values)
    assert trend.verdict == "sawtooth"
    assert len(trend.releases) >= 7
    assert trend.period_s == pytest.approx(60, rel=0.01)
    assert trend.trough_slope_bytes_per_s == pytest.approx(0, abs=1)


def test_sawtooth_whose_floor_climbs_is_growing() -> None:
    times, values = series(200, 3.0, lambda i: 100 * MB + (i % 20) * 5 * MB + i * 0.5 * MB)
    trend = classify(times, values)
    assert trend.verdict == "growing"
    assert trend.releases and trend.trough_slope_bytes_per_s is not None
    assert trend.trough_slope_bytes_per_s * 3600 / MB == pytest.approx(600, rel=0.05)


def test_one_rise_then_flat_is_not_growing() -> None:
    # A cache loaded once, half-way: one step up, then flat. A line fits it (R^2 0.75), but it
    # grew in one slice of the window, not in nearly every one (the leak rule).
    noise = random.Random(5)
    times, values = series(
        200, 1.0, lambda i: 200 * MB + (80 * MB if i >= 110 else 0) + noise.uniform(-1, 1) * MB
    )
    trend = classify(times, values)
    assert trend.r2 > 0.5 and trend.verdict == "stable"


def test_growth_in_steps_is_growing() -> None:
    # 10 MB more every 20 samples: a staircase, as a leak freed to the allocator in chunks.
    noise = random.Random(6)
    times, values = series(
        200, 1.0, lambda i: 200 * MB + (i // 20) * 10 * MB + noise.uniform(-1, 1) * MB
    )
    assert classify(times, values).verdict == "growing"


def test_flat_with_noise_is_stable() -> None:
    noise = random.Random(2)
    times, values = series(500, 1.0, lambda i: 300 * MB + noise.gauss(0, 0.3) * MB)
    assert classify(times, values).verdict == "stable"


def test_large_random_jumps_are_not_a_sawtooth() -> None:
    noise = random.Random(3)
    times, values = series(300, 1.0, lambda i: 300 * MB + noise.uniform(-40, 40) * MB)
    assert classify(times, values).verdict == "stable"


def test_warmup_and_final_release_do_not_decide() -> None:
    # Imports ramp to 100 MB in the first 10%, flat after, then the process exits.
    def value(i: int) -> float:
        return min(i, 10) * 10 * MB if i < 99 else 5 * MB

    times, values = series(100, 1.0, value)
    assert classify(times, values).verdict == "stable"


def test_too_few_samples_is_unknown() -> None:
    assert classify([0.0, 1.0], [1.0, 2.0]).verdict == "unknown"


def test_running_fit_matches_least_squares() -> None:
    noise = random.Random(4)
    xs = [1.7e9 + i * 0.5 for i in range(100)]
    ys = [3.0 * i + noise.uniform(-5, 5) for i in range(100)]
    running = RunningFit()
    for x, y in zip(xs, ys, strict=True):
        running.add(x, y)
    exact = fit_line(xs, ys)
    assert running.line().slope == pytest.approx(exact.slope, rel=1e-6)
    assert running.line().r2 == pytest.approx(exact.r2, rel=1e-6)


def test_time_above_counts_each_sample_until_the_next() -> None:
    times = [0.0, 1.0, 2.0, 4.0, 5.0]
    percents = [50.0, 80.0, 90.0, 70.0, 95.0]
    assert time_above(times, percents, 75) == 3.0
    assert time_above(times, percents, 85) == 2.0


def test_thresholds_report_each_crossing_once_with_hysteresis() -> None:
    tracker = ThresholdTracker(75, 85)
    levels = [50, 76, 80, 86, 90, 84.5, 83, 74.5, 73, 76]
    events = [(p, c.event) for p in levels if (c := tracker.update(p)) is not None]
    assert events == [
        (76, "warning"),
        (86, "critical"),
        (83, "recovered"),
        (73, "recovered"),
        (76, "warning"),
    ]


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(MemdiagError):
        ThresholdTracker(85, 75)


def test_summary_of_a_series() -> None:
    times, values = series(100, 1.0, lambda i: 100 * MB + i * MB)
    percents = [v / (200 * MB) * 100 for v in values]
    summary = summarize(times, values, percents, (75, 85), 200 * MB)
    assert summary is not None
    assert summary.min_rss_bytes == 100 * MB and summary.max_rss_bytes == 199 * MB
    assert summary.verdict == "growing"
    assert summary.growth_mb_per_hour == pytest.approx(3600)
    # 150 MB (75%) is reached at t = 50, 170 MB (85%) at t = 70; the last sample counts 0 s.
    assert summary.above_warn_s == 49 and summary.above_critical_s == 29
    assert summarize([], [], [], (75, 85), MB) is None
