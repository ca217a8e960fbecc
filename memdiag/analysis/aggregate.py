"""Per-configuration summaries of a sweep's runs: medians with their min-max spread."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from memdiag.model import ConfigSummary, Run, Status
from memdiag.params import ParamsKey, index_of, params_key

# A Node configuration that spends more than this share of its wall time in GC pauses fits
# its heap limit only just: it is flagged in the tables.
GC_SHARE_HIGH = 0.5


def config_params(run: Run, axes: dict[str, list[Any]]) -> dict[str, Any]:
    """Return the run's values of the sweep's axes, in axis order: its configuration."""
    return {name: run.params.get(name) for name in axes}


def summarise(runs: list[Run], axes: dict[str, list[Any]]) -> list[ConfigSummary]:
    """Return one summary per configuration that has runs, in the axes' cartesian order."""
    groups: dict[ParamsKey, list[Run]] = {}
    for run in runs:
        key = params_key(config_params(run, axes))
        groups.setdefault(key, []).append(run)

    def order(group: list[Run]) -> list[int]:
        params = config_params(group[0], axes)
        return [_position(axes[name], params[name]) for name in axes]

    return [summarise_config(g, axes) for g in sorted(groups.values(), key=order)]


def _position(values: list[Any], value: Any) -> int:
    found = index_of(values, value)
    if found is None:
        raise ValueError(f"{value!r} is not an axis value")
    return found


def summarise_config(runs: list[Run], axes: dict[str, list[Any]]) -> ConfigSummary:
    """Return the medians and spreads of one configuration's repeats (see ConfigSummary)."""
    statuses = Counter(run.status for run in runs)
    ok = [run for run in runs if run.ok]
    basis = ok or runs
    failures = [(n, s) for s, n in statuses.items() if s != "ok"]
    status: Status = "ok" if not failures else max(failures)[1]
    peaks = [run.peak_rss_bytes for run in basis]
    walls = [run.wall_s for run in basis]
    rates = [run.records_per_s for run in ok if run.records_per_s is not None]
    records = [run.records for run in ok if run.records is not None]
    heaps = [run.peak_heap_bytes for run in basis if run.peak_heap_bytes is not None]
    shares = [run.v8.gc_share for run in basis if run.v8 and run.v8.gc_share is not None]
    first_error = next((run.error for run in runs if run.error is not None), None)
    return ConfigSummary(
        params=config_params(runs[0], axes),
        status=status,
        runs=len(runs),
        statuses={str(k): n for k, n in statuses.items()},
        peak_rss_bytes=int(statistics.median(peaks)),
        peak_rss_spread=[min(peaks), max(peaks)],
        wall_s=round(statistics.median(walls), 4),
        wall_spread=[min(walls), max(walls)],
        records=int(statistics.median(records)) if records else None,
        records_per_s=round(statistics.median(rates), 2) if rates else None,
        records_per_s_spread=[min(rates), max(rates)] if rates else None,
        error=f"{first_error.type}: {first_error.message}" if first_error else None,
        peak_heap_bytes=int(statistics.median(heaps)) if heaps else None,
        peak_heap_spread=[min(heaps), max(heaps)] if heaps else None,
        gc_share=round(statistics.median(shares), 4) if shares else None,
    )


def worst_peak(config: ConfigSummary) -> int:
    """Return the highest repeat's peak in bytes (the median when no spread was kept): the
    worst case a budget must hold."""
    if config.peak_rss_spread:
        return int(config.peak_rss_spread[1])
    return int(config.peak_rss_bytes or 0)


def by_throughput(configs: list[ConfigSummary]) -> bool:
    """Return True when every ok config reports records/s, so throughput ranks configs.

    Otherwise configs are ranked by wall time (shorter is better).
    """
    ok = [c for c in configs if c.status == "ok"]
    return bool(ok) and all(c.records_per_s is not None for c in ok)


def run_fits(run: Run, allowed: float, limit: float | None = None) -> bool | None:
    """Return True when the run finished ok with its peak within `allowed` bytes, False when
    it went over or failed, None when it says nothing about a run under `limit` (default:
    `allowed`): stopped as `oom` under a lower limit (not at V8's heap limit), or not
    measured at all (infrastructure).
    """
    if run.infrastructure is not None:
        return None
    if run.ok:
        return run.peak_rss_bytes <= allowed
    below = run.limit_bytes is not None and run.limit_bytes < (allowed if limit is None else limit)
    # A death at V8's heap limit is the job's own, whatever memdiag's limit was.
    return None if run.status == "oom" and run.oom_kind != "heap-limit" and below else False
