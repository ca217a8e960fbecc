"""What `memdiag monitor` and `memdiag serve` read: a process tree's memory, or the machine's.

Costs measured on a 2-CPU Linux machine (psutil 7, a 200 MB process): `memory_info()` 12 us,
`memory_full_info()` (USS, read from smaps) 2.7 ms, a recursive `children()` 2 ms (it scans
/proc), `virtual_memory()` 70 us, every process's RSS 9 ms for 90 processes. So RSS is read
every sample, while USS and the top processes are refreshed on a time budget. The tree is
followed as the run sampler follows it (procview.Descendants: only the pids handed out since
the last sample are read, orphans of the tree included).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import psutil

from memdiag.errors import MemdiagError
from memdiag.measure.process.env import cgroup_limit_bytes
from memdiag.measure.process.procview import Descendants, read_stat

# USS may use at most this share of wall time: at 0.1 s a 2.7 ms read would cost 2.7% alone,
# and read every second on a two-process tree it cost 0.5% of a core, half the 1% goal.
USS_BUDGET = 0.002
TOP_REFRESH_S = 2.0
TOP_COUNT = 5


@dataclass
class MonitorSample:
    """One sample: seconds since the start, tree RSS and USS, available memory, % of limit."""

    t_s: float
    time: float
    rss_bytes: int
    available_bytes: int
    percent: float
    uss_bytes: int | None = None
    processes: int = 1
    top: list[list[Any]] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (one line of samples.jsonl), without empty fields."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MonitorSample:
        """Build a sample from its JSON form, every field checked (SchemaError when one is
        bad), ignoring fields it does not know."""
        from memdiag.model.schema import build

        return build(cls, data)


class Watcher(Protocol):
    """Something to sample: `sample()` returns None once the followed process is gone."""

    label: str
    limit_bytes: int
    limit_source: str

    def alive(self) -> bool: ...

    def sample(self, t_s: float) -> MonitorSample | None: ...


def resolve_limit(pid: int | None, given: int | None) -> tuple[int, str]:
    """Return (limit in bytes, where it came from): --limit, the cgroup, else total memory."""
    if given:
        return given, "--limit"
    found = cgroup_limit_bytes(pid) if pid else None
    if found:
        return found, "cgroup"
    return psutil.virtual_memory().total, "total memory"


class TreeWatcher:
    """Samples a process and its descendants: RSS every time, USS within USS_BUDGET."""

    def __init__(self, pid: int, limit_bytes: int | None = None) -> None:
        try:
            self.root = psutil.Process(pid)
            name = self.root.name()
        except psutil.NoSuchProcess:
            raise MemdiagError(f"--pid {pid}: no such process") from None
        except psutil.AccessDenied:
            raise MemdiagError(f"--pid {pid}: not allowed to read this process") from None
        self.label = f"pid {pid} ({name})"
        self.limit_bytes, self.limit_source = resolve_limit(pid, limit_bytes)
        self.uss_cost_s = 0.0
        self.tree = Descendants(pid)
        self._procs: dict[int, psutil.Process] = {pid: self.root}
        self._next_uss = 0.0

    def alive(self) -> bool:
        """Return whether the followed process still runs (a zombie has ended)."""
        try:
            return self.root.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def _uss(self, procs: list[psutil.Process], now: float) -> int | None:
        if now < self._next_uss:
            return None
        started = time.perf_counter()
        total = 0
        for proc in procs:
            try:
                total += proc.memory_full_info().uss
            except psutil.Error:
                continue
        cost = time.perf_counter() - started
        self.uss_cost_s += cost
        self._next_uss = now + cost / USS_BUDGET
        return total

    def sample(self, t_s: float) -> MonitorSample | None:
        """Return one sample of the tree, or None when the followed process has ended."""
        if not self.alive():
            return None
        rss, procs = self._rss()
        uss = self._uss(procs, time.monotonic())
        available = psutil.virtual_memory().available
        percent = 100.0 * rss / self.limit_bytes
        return MonitorSample(t_s, time.time(), rss, available, round(percent, 2), uss, len(procs))

    def _rss(self) -> tuple[int, list[psutil.Process]]:
        """Return the tree's summed RSS in bytes and its processes, the root first."""
        self.tree.refresh()
        stats = self.tree.stats()
        root = read_stat(self.root.pid)
        if root is not None:
            stats = {self.root.pid: root, **stats}
        # Known Process objects are kept: psutil caches what it has read about them.
        self._procs = {pid: self._procs.get(pid) or psutil.Process(pid) for pid in stats}
        return sum(s.rss_bytes for s in stats.values()), list(self._procs.values())


class MachineWatcher:
    """Samples the machine: memory in use (total - available) and the top processes by RSS."""

    def __init__(self, limit_bytes: int | None = None) -> None:
        self.label = "machine"
        self.limit_bytes, self.limit_source = resolve_limit(None, limit_bytes)
        self._top: list[list[Any]] = []
        self._refreshed = -TOP_REFRESH_S

    def alive(self) -> bool:
        """Return True: the machine is always there."""
        return True

    def top_processes(self) -> list[list[Any]]:
        """Return [pid, name, rss bytes] of the TOP_COUNT largest processes."""
        rows = []
        for proc in psutil.process_iter(["name", "memory_info"]):
            info = proc.info
            if info.get("memory_info") is not None:
                rows.append([proc.pid, info.get("name") or "?", info["memory_info"].rss])
        return sorted(rows, key=lambda row: -int(row[2]))[:TOP_COUNT]

    def sample(self, t_s: float) -> MonitorSample:
        """Return one sample of the machine; `top` is set when it was refreshed."""
        memory = psutil.virtual_memory()
        used = memory.total - memory.available
        now, top = time.monotonic(), None
        if now - self._refreshed >= TOP_REFRESH_S:
            self._refreshed, top = now, self.top_processes()
        percent = 100.0 * used / self.limit_bytes
        available = memory.available
        return MonitorSample(t_s, time.time(), used, available, round(percent, 2), None, 0, top)
