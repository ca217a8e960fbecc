"""Summarising a monitored series: levels, growth, verdict, and time above thresholds."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

from memdiag.analysis.trend import classify, time_above
from memdiag.model import MonitorSummary

if TYPE_CHECKING:
    from memdiag.measure.monitor.sample import MonitorSample


def summarize(
    times: Sequence[float],
    rss: Sequence[float],
    percents: Sequence[float],
    thresholds: tuple[float, float],
    limit_bytes: int,
    uss: Sequence[float] = (),
) -> MonitorSummary | None:
    """Return the summary of samples (seconds, RSS bytes, percent); None without samples.

    `thresholds` is (warn, critical) in percent of `limit_bytes`.
    """
    if not rss:
        return None
    warn, critical = thresholds
    trend = classify(times, rss)
    hourly = 3600 / (1024 * 1024)
    trough = trend.trough_slope_bytes_per_s
    return MonitorSummary(
        samples=len(rss),
        duration_s=round(times[-1] - times[0], 3),
        min_rss_bytes=int(min(rss)),
        mean_rss_bytes=int(statistics.fmean(rss)),
        max_rss_bytes=int(max(rss)),
        last_rss_bytes=int(rss[-1]),
        max_percent=round(max(percents), 2),
        limit_bytes=limit_bytes,
        verdict=trend.verdict,
        growth_mb_per_hour=round(trend.growth_mb_per_hour, 3),
        r2=round(trend.r2, 4),
        intercept_bytes=round(trend.intercept_bytes),
        fit_from_s=round(trend.from_s, 3),
        releases=len(trend.releases),
        period_s=None if trend.period_s is None else round(trend.period_s, 3),
        trough_growth_mb_per_hour=None if trough is None else round(trough * hourly, 3),
        warn=warn,
        critical=critical,
        above_warn_s=round(time_above(times, percents, warn), 3),
        above_critical_s=round(time_above(times, percents, critical), 3),
        max_uss_bytes=int(max(uss)) if uss else None,
    )


def summarize_samples(
    samples: Sequence[MonitorSample], thresholds: tuple[float, float], limit_bytes: int
) -> MonitorSummary | None:
    """Return the summary of saved monitor samples (see summarize); None without samples."""
    return summarize(
        [s.t_s for s in samples],
        [s.rss_bytes for s in samples],
        [s.percent for s in samples],
        thresholds,
        limit_bytes,
        [s.uss_bytes for s in samples if s.uss_bytes is not None],
    )
