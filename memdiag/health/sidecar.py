"""`memdiag serve`'s engine: another process's memory behind the health endpoint's routes.

A sampling thread reads the process every `interval` seconds for the trend and recomputes it
there. A request reuses a reading younger than FRESH_S and the trend as last computed, so the
figures served are current (not one interval old) while a burst of requests costs no more
reads of /proc than one every FRESH_S, and never narrows the trend's window.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import psutil

from memdiag.health import HISTORY_POINTS, trend_of
from memdiag.measure.monitor.sample import MonitorSample, TreeWatcher, Watcher

# A reading this young is served again: /proc reads of a process tree cost milliseconds.
FRESH_S = 0.25


class Sidecar:
    """Serves `watcher`'s memory as the dict of `memdiag.health.memory_status()`."""

    def __init__(self, watcher: Watcher, interval: float) -> None:
        self.watcher, self.interval = watcher, interval
        self.history: deque[tuple[float, int]] = deque(maxlen=HISTORY_POINTS)
        self.last_uss: int | None = None
        self._started = time.monotonic()
        self._last: tuple[float, MonitorSample | None] | None = None
        self._trend: dict[str, Any] = trend_of(self.history)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memdiag-serve", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while True:
            sample = self.read(max_age_s=0.0)
            if sample is not None:
                with self._lock:
                    self.history.append((time.monotonic(), sample.rss_bytes))
                    history = list(self.history)
                trend = trend_of(history)
                with self._lock:
                    self._trend = trend
            if self._stop.wait(self.interval):
                return

    def read(self, max_age_s: float = FRESH_S) -> MonitorSample | None:
        """Return a sample at most `max_age_s` old (taken now if none is); None once the
        process is gone."""
        with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last[0] <= max_age_s:
                return self._last[1]
            sample = self.watcher.sample(round(now - self._started, 3))
            self._last = (now, sample)
            if sample is not None and sample.uss_bytes is not None:
                self.last_uss = sample.uss_bytes
        return sample

    def status(self) -> dict[str, Any]:
        """Return the followed process's memory in the shape of memory_status()."""
        sample = self.read()
        with self._lock:
            trend = self._trend
        root = self.watcher.root if isinstance(self.watcher, TreeWatcher) else None
        started = root.create_time() if root is not None else psutil.boot_time()
        return {
            "pid": root.pid if root is not None else None,
            "target": self.watcher.label,
            "running": sample is not None,
            "rss_bytes": sample.rss_bytes if sample else 0,
            "uss_bytes": self.last_uss,
            "heap_bytes": None,
            "limit_bytes": self.watcher.limit_bytes,
            "limit_source": self.watcher.limit_source,
            "utilization": sample.percent if sample else 0.0,
            "available_bytes": sample.available_bytes if sample else None,
            "processes": sample.processes if sample else 0,
            "gc": None,
            "uptime_s": round(time.time() - started, 1),
            "trend": trend,
        }
