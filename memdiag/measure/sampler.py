"""Samples the RSS of a process tree in a background thread, and enforces a memory limit.

The samples make the timeline; they are never the reported peak (the kernel's ru_maxrss is).
With a limit, the tree is checked more often than it is recorded, so a job that runs past its
budget is stopped within about 20 ms, as a container's OOM killer would stop it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psutil

LIMIT_CHECK_S = 0.02
# psutil's children() scans every process in /proc: refresh the tree no more often than this.
TREE_REFRESH_S = 0.1


class TreeSampler(threading.Thread):
    """Records (epoch seconds, RSS of `root`'s descendants) every `interval` seconds.

    `on_limit(rss)` is called once, from this thread, when the tree's RSS passes `limit_bytes`.
    """

    def __init__(
        self,
        root_pid: int,
        interval: float,
        limit_bytes: int | None = None,
        on_limit: Callable[[int], None] | None = None,
        include_root: bool = False,
    ) -> None:
        super().__init__(name="memdiag-sampler", daemon=True)
        self.root = psutil.Process(root_pid)
        self.interval = interval
        self.limit_bytes = limit_bytes
        self.on_limit = on_limit
        self.include_root = include_root
        self.samples: list[tuple[float, int]] = []
        self.max_rss = 0
        self.limit_hit: int | None = None
        self._stop_event = threading.Event()
        self._procs: dict[int, psutil.Process] = {}
        self._refreshed = 0.0

    def stop(self) -> None:
        """Stop sampling and wait for the thread; safe to call more than once."""
        self._stop_event.set()
        if self.is_alive():
            self.join()

    def tree_rss(self) -> int:
        """Return the summed RSS of the tree in bytes (0 when it is gone)."""
        now = time.monotonic()
        if now - self._refreshed >= TREE_REFRESH_S or not self._procs:
            self._refreshed = now
            try:
                found = self.root.children(recursive=True)
                if self.include_root:
                    found.append(self.root)
            except psutil.Error:
                found = []
            self._procs = {p.pid: self._procs.get(p.pid, p) for p in found}
        total = 0
        for pid, proc in list(self._procs.items()):
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                del self._procs[pid]
        return total

    def run(self) -> None:
        step = min(self.interval, LIMIT_CHECK_S) if self.limit_bytes else self.interval
        next_record = 0.0
        while True:
            now = time.monotonic()
            rss = self.tree_rss()
            self.max_rss = max(self.max_rss, rss)
            if now >= next_record:
                self.samples.append((time.time(), rss))
                next_record = now + self.interval
            if self.limit_bytes and rss > self.limit_bytes and self.limit_hit is None:
                self.limit_hit = rss
                if self.on_limit is not None:
                    self.on_limit(rss)
            if self._stop_event.wait(step):
                return
