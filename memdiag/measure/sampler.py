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


class ProcessTree:
    """A process's descendants, and the process itself with `include_root`.

    psutil's children() scans every process in /proc (about 2 ms): the tree is rescanned at
    most every `refresh_s`, or while no process was found yet (a launcher's job starting).
    """

    def __init__(self, root: psutil.Process, refresh_s: float, include_root: bool = False) -> None:
        self.root, self.refresh_s, self.include_root = root, refresh_s, include_root
        self._procs: dict[int, psutil.Process] = {}
        self._refreshed = float("-inf")

    def processes(self) -> list[psutil.Process]:
        """Return the processes of the tree as of the last scan."""
        now = time.monotonic()
        if now - self._refreshed >= self.refresh_s or not self._procs:
            self._refreshed = now
            try:
                found = self.root.children(recursive=True)
            except psutil.Error:
                found = []
            if self.include_root:
                found = [self.root, *found]
            # Known Process objects are kept: psutil caches what it has read about them.
            self._procs = {p.pid: self._procs.get(p.pid, p) for p in found}
        return list(self._procs.values())

    def rss(self) -> tuple[int, int]:
        """Return the tree's summed RSS in bytes and how many processes it covers."""
        total = counted = 0
        for proc in self.processes():
            try:
                total += proc.memory_info().rss
                counted += 1
            except psutil.Error:
                self._procs.pop(proc.pid, None)
        return total, counted


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
    ) -> None:
        super().__init__(name="memdiag-sampler", daemon=True)
        self.tree = ProcessTree(psutil.Process(root_pid), TREE_REFRESH_S)
        self.interval = interval
        self.limit_bytes = limit_bytes
        self.on_limit = on_limit
        self.samples: list[tuple[float, int]] = []
        self.max_rss = 0
        self.limit_hit: int | None = None
        self._stop_event = threading.Event()

    def stop(self) -> None:
        """Stop sampling and wait for the thread; safe to call more than once."""
        self._stop_event.set()
        if self.is_alive():
            self.join()

    def run(self) -> None:
        step = min(self.interval, LIMIT_CHECK_S) if self.limit_bytes else self.interval
        next_record = 0.0
        while True:
            now = time.monotonic()
            rss = self.tree.rss()[0]
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
