"""Samples the memory of a process tree in a background thread, and enforces a memory limit.

The samples make the timeline. They are the reported peak only when the job ran several
processes at once and their sum is clearly above the kernel's per-process figure
(`peak_rss_source: sampled-tree`); otherwise the kernel's ru_maxrss is the peak.

A process's memory is its RSS. With several processes, pages they share (a forked worker
reading its parent's data) are counted once: the RSS sum is corrected by the proportional
set size (PSS, /proc/PID/smaps_rollup), which splits each shared page among its sharers.

With a limit the tree is checked from the moment it is started: every 20 ms far from the
limit, sooner as the tree nears 80% of it (before a job allocating 4 GB/s could get there),
and every 2 ms above 80%, looking for new processes at every check (procview.Descendants:
only the pids handed out since the previous check are read). A tree past the limit
is killed at once (SIGKILL to each of its processes), as a container's OOM killer would.
A figure past the limit that may count shared pages twice is confirmed by reading PSS
first: at once, and then, while confirmations keep finding the tree within the limit, no
more than PSS_MAX_SHARE of the time. When no smaps_rollup can be read at all, the tree's
memory is its RSS sum (never less than it uses) and the Run says so (`pss_unreadable`).
docs/run.md states how far past the limit a job can get: R x 10 ms + 2 MB at R bytes/s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from memdiag.measure.process.procview import PAGE, Descendants, ProcStat, read_rollup

FAR_CHECK_S = 0.02
NEAR_CHECK_S = 0.002
NEAR_FRACTION = 0.8
# Below NEAR_FRACTION, the next check comes before a job allocating this fast (bytes/s)
# could pass NEAR_FRACTION of the limit: from there on, checks are NEAR_CHECK_S apart.
DESIGN_RATE = 4 * 1024**3
# PSS costs about 20 us per resident MB (smaps_rollup walks the page tables: 4 ms for a
# 200 MB process), so it is read on a share of the time: this much far from the limit,
# more near it, and never more than PSS_MAX_SHARE even when processes keep starting; and
# not again while no process started, ended, or changed its RSS or page faults.
PSS_SHARE_FAR = 0.01
PSS_SHARE_NEAR = 0.1
PSS_MAX_SHARE = 0.25
# PSS is re-read sooner (within PSS_MAX_SHARE) once copies on write may have added this
# share to the tree's memory, and at once when they may have taken it past the limit.
STALE_FRACTION = 0.05
# A PSS read during which a process's RSS moved more than STEADY_BYTES (a fork, an exit)
# is repeated, up to PSS_READS times.
PSS_READS = 3
STEADY_BYTES = 1024**2


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
        # Held until stop(): the thread waits between checks by trying to take it, which
        # costs less CPU per wake-up than an Event (500 wake-ups a second near a limit).
        self._running = threading.Lock()
        self._running.acquire()
        self._shared_extra = 0  # bytes the RSS sum counts more than once, from the last PSS
        self._pss_cost = 0.0
        self._pss_at = float("-inf")
        self._base: dict[int, ProcStat] = {}  # each process's figures at the last PSS read
        self._cleared = False  # the last confirmation past the limit found the tree within it
        # No process's smaps_rollup could be read (a kernel without it, another user's
        # processes): the tree's memory is its RSS sum, shared pages counted in each.
        self.pss_unreadable = False

    def stop(self) -> None:
        """Stop sampling and wait for the thread; safe to call more than once."""
        if self._running.locked():
            self._running.release()
        if self.is_alive():
            self.join()
        elif self.ident is None:  # never started: run() will not close the tree's files
            self.tree.close()

    def run(self) -> None:
        try:
            self._sample()
        finally:
            self.tree.close()

    def _sample(self) -> None:
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
            if self._running.acquire(timeout=self.next_check_s(upper)):
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
        """Return the tree's memory in bytes, shared pages counted once, as a lower and an
        upper estimate: equal right after PSS was read, apart when processes have started
        or ended since, or may have copied shared pages on write."""
        changed = self.tree.refresh()
        stats = self.tree.stats()
        rss = sum(stat.rss_bytes for stat in stats.values())
        largest = max((stat.rss_bytes for stat in stats.values()), default=0)
        if len(stats) < 2 or self.pss_unreadable:
            # Without PSS the RSS sum: shared pages counted in each process, so never less
            # than the tree uses, and a limit is enforced on the whole tree.
            self._base, self._shared_extra = stats, 0
            return rss, rss
        low, high = self._estimate(stats, rss)
        limit = self.limit_bytes or 0
        share = PSS_SHARE_NEAR if limit and high >= NEAR_FRACTION * limit else PSS_SHARE_FAR
        since = now - self._pss_at
        # Nothing moved since the last read (same processes, RSS and page faults): the
        # estimate is that read, and reading again would only cost.
        moved = stats != self._base
        over = bool(limit) and high > limit
        if not over:
            self._cleared = False
        # Confirm before stopping (stop only on a sure figure): at once the first time, then,
        # while confirmations keep finding the tree within the limit, within PSS_MAX_SHARE.
        confirm = over and (not self._cleared or since >= self._pss_cost / PSS_MAX_SHARE)
        if confirm or (
            moved
            and (
                since >= self._pss_cost / share
                or (
                    (changed or high - low > STALE_FRACTION * low)
                    and since >= self._pss_cost / PSS_MAX_SHARE
                )
            )
        ):
            pss = self._read_pss(now, stats)
            if pss is None:  # no smaps_rollup could be read: the RSS sum from now on
                self.pss_unreadable = True
                self._shared_extra = 0
                return rss, rss
            low = high = pss
            self._shared_extra = sum(stat.rss_bytes for stat in self._base.values()) - low
            self._cleared = over and low <= limit
        return max(low, largest), max(high, largest)

    def _estimate(self, stats: dict[int, ProcStat], rss: int) -> tuple[int, int]:
        """Return the tree's memory as a lower and an upper bound, from the RSS now and
        what sharing was at the last PSS read (bytes)."""
        base = self._base
        known = sum(stat.rss_bytes for pid, stat in stats.items() if pid in base)
        low = max(0, known - self._shared_extra)
        if any(pid not in stats for pid in base):
            return low, rss  # what the departed shared is now someone's own: RSS alone bounds
        # A new process may share every page (a fresh fork). A page copied on write costs
        # its process a fault but no RSS: faults beyond the RSS growth bound those copies.
        copied = 0
        for pid, stat in stats.items():
            before = base.get(pid)
            if before is not None:
                faulted = (stat.faults - before.faults) * PAGE
                copied += max(0, faulted - (stat.rss_bytes - before.rss_bytes))
        return low, min(rss, low + copied + rss - known)

    def _read_pss(self, now: float, stats: dict[int, ProcStat]) -> int | None:
        """Return the tree's summed PSS in bytes now; a process that is exiting counts 0;
        None when no process's smaps_rollup could be read at all.

        Processes are read one after the other: a fork or an exit in between moves shares
        from one to another, so a read during which the tree changed is repeated, and the
        smallest of PSS_READS is kept (the peak must not count a page twice).
        """
        started = time.perf_counter()
        best = None
        read = False
        for _ in range(PSS_READS):
            pss = 0
            for pid in stats:
                try:
                    pss += read_rollup(pid).get("Pss", 0)
                    read = True
                except OSError:
                    continue
            best = pss if best is None else min(best, pss)
            changed = self.tree.refresh()
            after = self.tree.stats()
            if not changed and all(_steady(stats[pid], after.get(pid)) for pid in stats):
                break
            stats = after
        self._pss_cost = time.perf_counter() - started
        self._pss_at = now
        self._base = stats
        return (best or 0) if read else None


def _steady(before: ProcStat, after: ProcStat | None) -> bool:
    """Return whether a process's RSS held within STEADY_BYTES across a PSS read."""
    return after is not None and abs(after.rss_bytes - before.rss_bytes) <= STEADY_BYTES
