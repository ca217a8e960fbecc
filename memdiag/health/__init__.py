"""The service side: a memory health endpoint for long-running services (status dict, cache hooks,
WSGI app), its HTTP routes (`http.py`), the in-process `MemoryMonitor` (`monitor.py`) and
`memdiag serve`'s view of another process (`sidecar.py`).

    from memdiag import health
    health.register_cache_clearer("processed-records", service.processed.clear)
    # mount health.app in the service's WSGI server, or serve it on its own:
    waitress.serve(health.app, host="127.0.0.1", port=9105)
    # or expose the figures in the service's own Prometheus registry:
    prometheus_client.REGISTRY.register(health.collector())

Routes of `app`:
- `GET /api/health/memory`: `memory_status()` as JSON.
- `POST /api/health/memory/clear-cache`: runs the registered hooks, then a gc.collect().
  Needs the token of the environment variable MEMDIAG_HEALTH_TOKEN, sent as
  `Authorization: Bearer TOKEN` or `X-Memdiag-Token: TOKEN`: 403 without it, and 404 when no
  token is configured, so an endpoint that frees memory is never open by accident.
- `GET /metrics`: the same figures through prometheus_client (`collector()`): the
  Prometheus text format, or OpenMetrics when the Accept header asks for it.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import psutil

from memdiag.analysis.trend import classify
from memdiag.health.http import MemoryCollector, make_app
from memdiag.health.monitor import collect_garbage, traced_heap_bytes
from memdiag.measure.monitor.sample import resolve_limit

__all__ = [
    "MemoryCollector",
    "app",
    "clear_caches",
    "collector",
    "memory_status",
    "observe",
    "register_cache_clearer",
]

# The trend's window: one point per HISTORY_STEP_S at most, the last HISTORY_POINTS of them:
# the last 2 hours when readings come at least every 5 s, longer when they are rarer.
HISTORY_STEP_S = 5.0
HISTORY_POINTS = 1440

_process = psutil.Process()
_limit = resolve_limit(os.getpid(), None)
_history: deque[tuple[float, int]] = deque(maxlen=HISTORY_POINTS)
_lock = threading.Lock()
_clearers: dict[str, Callable[[], object]] = {}


def observe(rss_bytes: int) -> None:
    """Add a reading to the trend (MemoryMonitor and memory_status() call this)."""
    now = time.monotonic()
    with _lock:
        if not _history or now - _history[-1][0] >= HISTORY_STEP_S:
            _history.append((now, rss_bytes))


def trend_of(history: deque[tuple[float, int]] | list[tuple[float, int]]) -> dict[str, Any]:
    """Return the trend of (monotonic seconds, rss bytes) points: verdict, MB/hour, R^2."""
    points = list(history)
    trend = classify([t for t, _ in points], [r for _, r in points])
    window = points[-1][0] - points[0][0] if points else 0.0
    return {
        "verdict": trend.verdict,
        "growth_mb_per_hour": round(trend.growth_mb_per_hour, 3),
        "r2": round(trend.r2, 4),
        "points": len(points),
        "window_s": round(window, 1),
    }


def memory_status() -> dict[str, Any]:
    """Return this process's memory: rss, heap (bytes), limit, utilization (%), gc, uptime, trend.

    `heap` is tracemalloc's traced bytes when it is tracing, else None.
    """
    rss = _process.memory_info().rss
    observe(rss)
    limit, source = _limit
    with _lock:
        trend = trend_of(_history)
    return {
        "pid": os.getpid(),
        "rss_bytes": rss,
        "heap_bytes": traced_heap_bytes(),
        "limit_bytes": limit,
        "limit_source": source,
        "utilization": round(100.0 * rss / limit, 2),
        "gc": {
            "counts": list(gc.get_count()),
            "collections": [s["collections"] for s in gc.get_stats()],
            "uncollectable": sum(s["uncollectable"] for s in gc.get_stats()),
        },
        "uptime_s": round(time.time() - _process.create_time(), 1),
        "trend": trend,
        "cache_clearers": sorted(_clearers),
    }


def register_cache_clearer(name: str, fn: Callable[[], object]) -> None:
    """Register `fn` (no arguments) to run on POST /api/health/memory/clear-cache."""
    _clearers[name] = fn


def clear_caches() -> dict[str, Any]:
    """Run every registered hook, then a gc.collect(); return each hook's outcome and the
    bytes freed. A failing hook is reported and does not stop the others."""
    results: dict[str, Any] = {}
    before = _process.memory_info().rss
    for name, fn in list(_clearers.items()):
        try:
            fn()
            results[name] = {"ok": True}
        except Exception as exc:
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    collected = collect_garbage(_process)
    return {
        "cleared": results,
        **collected,
        "rss_before_bytes": before,
        "rss_after_bytes": _process.memory_info().rss,
    }


def collector() -> MemoryCollector:
    """Return a prometheus_client collector of this process's memory_status(), for a
    registry of the service's own (`REGISTRY.register(health.collector())`)."""
    return MemoryCollector(memory_status)


app = make_app(memory_status, clear_caches)
