"""Samples the memory of a process tree in a background thread, and enforces a memory limit.

The samples make the timeline. They are the reported peak only when the job ran several
processes at once and their sum is clearly above the kernel's per-process figure
(`peak_rss_source: sampled-tree`); otherwise the kernel's ru_maxrss is the peak.

A process's memory is its RSS. With several processes, pages they share (a forked worker
reading its parent's data) are counted once: the RSS sum is corrected by the proportional
set size (PSS, /proc/PID/smaps_rollup), which splits each shared page among its sharers.

With a limit the tree is checked from the moment it is started: every 20 ms far from the
limit, sooner as the tree nears 80% of it (before a job allocating 4 GB/s could get there),
and every 2 ms above 80%, re-reading the process list at every check. A tree past the limit
is killed at once (SIGKILL to each of its processes), as a container's OOM killer would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from memdiag.measure.procview import PAGE, Descendants, ProcStat, read_rollup

if TYPE_CHECKING:
    import psutil

FAR_CHECK_S = 0.02
NEAR_CHECK_S = 0.002
NEAR_FRACTION = 0.8
# Below NEAR_FRACTION, the next check comes before a job allocating this fast (bytes/s)
# could pass NEAR_FRACTION of the limit: from there on, checks are NEAR_CHECK_S apart.
DESIGN_RATE = 4 * 1024**3
# PSS costs about 20 us per resident MB (smaps_rollup walks the page tables: 4 ms for a
# 200 MB process), so it is read on a share of the time: this much far from the limit,
# more near it, and never more than PSS_MAX_SHARE even when processes keep starting.
PSS_SHARE_FAR = 0.01
PSS_SHARE_NEAR = 0.1
PSS_MAX_SHARE = 0.25
# PSS is re-read sooner (within PSS_MAX_SHARE) once copies on write may have added this
# share to the tree's memory, and at once when they may have taken it past the limit.
STALE_FRACTION = 0.05


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
            import psutil

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
        import psutil

        total = counted = 0
        for proc in self.processes():
            try:
                total += proc.memory_info().rss
                counted += 1
            except psutil.Error:
                self._procs.pop(proc.pid, None)
        return total, counted


class TreeSampler(threading.Thread):
    """Records (epoch seconds, memory of `root`'s descendants in bytes) every `interval` s.

    `on_limit(bytes)` is called once, from this thread, right after the tree was killed for
    passing `limit_bytes`. Standard library only: it can start before memdiag loads psutil.
    """

    def __init__(
        self,
        root_pid: int,
        interval: float,
        limit_bytes: int | None = None,
        on_limit: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(name="memdiag-sampler", daemon=True)
        self.tree = Descendants(root_pid)
        self.interval = interval
        self.limit_bytes = limit_bytes
        self.on_limit = on_limit
        self.samples: list[tuple[float, int]] = []
        self.max_rss = 0
        self.last_bytes = 0  # at the last check that found a process: what a killer saw
        self.limit_hit: int | None = None
        self._stop_event = threading.Event()
        self._shared_extra = 0  # bytes the RSS sum counts more than once, from the last PSS
        self._pss_cost = 0.0
        self._pss_at = float("-inf")
        self._base: dict[int, ProcStat] = {}  # each process's figures at the last PSS read

    def stop(self) -> None:
        """Stop sampling and wait for the thread; safe to call more than once."""
        self._stop_event.set()
        if self.is_alive():
            self.join()

    def run(self) -> None:
        next_record = 0.0
        while True:
            now = time.monotonic()
            used, upper = self.measure(now)
            self.max_rss = max(self.max_rss, used)
            if used:
                self.last_bytes = used
            if now >= next_record:
                self.samples.append((time.time(), used))
                next_record = now + self.interval
            if self.limit_bytes and used > self.limit_bytes and self.limit_hit is None:
                self.limit_hit = used
                self.tree.kill()  # at once: every millisecond here is memory past the limit
                if self.on_limit is not None:
                    self.on_limit(used)
            if self._stop_event.wait(self.next_check_s(upper)):
                return

    def next_check_s(self, used: int) -> float:
        """Return the seconds until the next check, given the tree's memory now (bytes)."""
        limit = self.limit_bytes
        if not limit or self.limit_hit is not None:
            return self.interval
        near = NEAR_FRACTION * limit
        if used >= near:
            return NEAR_CHECK_S
        return min(self.interval, FAR_CHECK_S, max(NEAR_CHECK_S, (near - used) / DESIGN_RATE))

    def measure(self, now: float) -> tuple[int, int]:
        """Return the tree's memory in bytes, shared pages counted once, and an upper bound
        of it: what pages copied on write since the last PSS read may have added."""
        changed = self.tree.refresh()
        stats = self.tree.stats()
        if len(stats) < 2:
            self._shared_extra = 0
            used = sum(stat.rss_bytes for stat in stats.values())
            return used, used
        largest = max(stat.rss_bytes for stat in stats.values())
        used = sum(stat.rss_bytes for stat in stats.values()) - self._shared_extra
        copied = self._copied_since_pss(stats)
        limit = self.limit_bytes or 0
        share = PSS_SHARE_NEAR if limit and used >= NEAR_FRACTION * limit else PSS_SHARE_FAR
        since = now - self._pss_at
        if (
            # Confirm before stopping: a fresh fork shares all its pages, the estimate
            # counts them twice until PSS is read; copies on write count only in PSS.
            (limit and used + copied > limit)
            or since >= self._pss_cost / share
            or (
                (changed or copied > STALE_FRACTION * used)
                and since >= self._pss_cost / PSS_MAX_SHARE
            )
        ):
            self._shared_extra = self._read_shared_extra(now, stats)
            used = sum(stat.rss_bytes for stat in stats.values()) - self._shared_extra
            copied = 0
        return max(used, largest), max(used + copied, largest)

    def _copied_since_pss(self, stats: dict[int, ProcStat]) -> int:
        # A page copied on write costs its process a fault but no RSS: faults beyond the
        # RSS growth bound (from above) what became private since PSS was last read.
        copied = 0
        for pid, stat in stats.items():
            base = self._base.get(pid)
            if base is not None:
                faulted = (stat.faults - base.faults) * PAGE
                copied += max(0, faulted - (stat.rss_bytes - base.rss_bytes))
        return copied

    def _read_shared_extra(self, now: float, stats: dict[int, ProcStat]) -> int:
        """Return RSS sum minus PSS sum over the tree now: what sharing counts twice."""
        started = time.perf_counter()
        rss = pss = 0
        for pid in stats:
            try:
                rollup = read_rollup(pid)
            except OSError:
                continue
            rss += rollup.get("Rss", 0)
            pss += rollup.get("Pss", 0)
        self._pss_cost = time.perf_counter() - started
        self._pss_at = now
        self._base = stats
        return max(0, rss - pss)
