"""MemoryMonitor: a background thread that watches this process's memory and logs levels.

    monitor = MemoryMonitor(warning=75, critical=85, interval=30, auto_gc=True)
    with monitor.start("migration:job-42"):
        run_migration()

Every reading is a `logging` record on the `memdiag.monitor` logger with `rss`, `heap`,
`percent`, `limit`, `context` and `event` in its `extra`: periodic samples at DEBUG, crossing
warning at WARNING, crossing critical at CRITICAL, going back below at INFO.

`heap` is the bytes tracemalloc traces when it is already tracing, else None: Python keeps no
cheap "heap used" figure, and starting tracemalloc here would slow every allocation of the
service (about 2x on allocation-heavy code). `blocks` (sys.getallocatedblocks(), the number
of live pymalloc blocks) is cheap and follows the number of live objects.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from types import TracebackType
from typing import Any

import psutil

from memdiag.analysis.thresholds import ThresholdTracker
from memdiag.measure.monitor.sample import resolve_limit
from memdiag.units import parse_size

logger = logging.getLogger("memdiag.monitor")

EVENT_LEVELS = {"warning": logging.WARNING, "critical": logging.CRITICAL, "recovered": logging.INFO}


def traced_heap_bytes() -> int | None:
    """Return the bytes tracemalloc traces now, or None when it is not tracing."""
    return tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None


class MemoryMonitor:
    """Samples this process every `interval` seconds in a daemon thread `memdiag-monitor`.

    `warning` and `critical` are percentages of `limit` (bytes or a size such as "2GB"; by
    default the process's cgroup limit, else total memory). `on_event(event)` is called from
    the monitor thread for every crossing, with the same fields as the log record.
    """

    def __init__(
        self,
        warning: float = 75,
        critical: float = 85,
        interval: float = 30,
        auto_gc: bool = False,
        limit: int | str | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be above 0 seconds, got {interval}")
        given = parse_size(limit) if isinstance(limit, str) else limit
        self.limit_bytes, self.limit_source = resolve_limit(os.getpid(), given)
        self.tracker = ThresholdTracker(warning, critical)
        self.interval, self.auto_gc, self.on_event = interval, auto_gc, on_event
        self.context = ""
        self.last: dict[str, Any] | None = None
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, context: str = "") -> MemoryMonitor:
        """Start the thread (a no-op when running); return self, for `with`."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self.context = context
        self._stop.clear()
        self._log(logging.INFO, "memory monitor started", self.reading("start"))
        self._thread = threading.Thread(target=self._run, name="memdiag-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and wait for it; log a last reading. Safe to call twice."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._log(logging.INFO, "memory monitor stopped", self.reading("stop"))

    def __enter__(self) -> MemoryMonitor:
        return self.start(self.context)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def reading(self, event: str = "sample") -> dict[str, Any]:
        """Return one reading now: rss and heap in bytes, percent of the limit, context."""
        rss = self._process.memory_info().rss
        return {
            "event": event,
            "rss": rss,
            "heap": traced_heap_bytes(),
            "blocks": sys.getallocatedblocks(),
            "percent": round(100.0 * rss / self.limit_bytes, 2),
            "limit": self.limit_bytes,
            "context": self.context,
            "time": time.time(),
        }

    def check(self) -> dict[str, Any]:
        """Take a reading, log it, and handle a crossing; return the reading."""
        reading = self.reading()
        self.last = reading
        _feed_health(reading["rss"])
        self._log(logging.DEBUG, "memory usage", reading)
        crossing = self.tracker.update(reading["percent"])
        if crossing is not None:
            event = {**reading, "event": crossing.event, "previous": crossing.previous}
            if crossing.event == "critical" and self.auto_gc:
                event.update(collect_garbage(self._process))
            self._log(EVENT_LEVELS[crossing.event], f"memory {crossing.event}", event)
            if self.on_event is not None:
                self.on_event(event)
        return reading

    def _run(self) -> None:
        self.check()
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # a monitor must never take the service down
                logger.exception("memory monitor check failed")

    def _log(self, level: int, message: str, fields: dict[str, Any]) -> None:
        if logger.isEnabledFor(level):
            logger.log(level, message, extra=fields)


def collect_garbage(process: psutil.Process) -> dict[str, Any]:
    """Run a full gc.collect(); return objects collected and the RSS (and heap) it freed.

    RSS often drops less than the heap: freed memory stays in pymalloc's arenas until a whole
    arena is empty.
    """
    rss, heap = process.memory_info().rss, traced_heap_bytes()
    started = time.perf_counter()
    collected = gc.collect()
    after_heap = traced_heap_bytes()
    return {
        "gc_collected": collected,
        "gc_pause_s": round(time.perf_counter() - started, 4),
        "gc_freed_bytes": rss - process.memory_info().rss,
        "gc_heap_freed_bytes": None if heap is None or after_heap is None else heap - after_heap,
    }


def _feed_health(rss: int) -> None:
    """Give the reading to the health endpoint's trend, when that module is in use."""
    health = sys.modules.get("memdiag.health")
    if health is not None:
        health.observe(rss)
