"""A process-level memory view of any process, any language, read from `/proc`.

RSS counts shared library pages in every process that maps them; USS (private pages) is
what the process alone would give back if it exited, PSS shares the shared pages out. The
split by mapping says where the memory is: the `[heap]` of brk, anonymous mappings (large
mallocs, the Python arenas, V8's heap, thread stacks), and file-backed pages (code, mmap'd
files). Standard library only, so the measured child can read its own USS as well.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Kept here for their users: they live in rollup.py, which loads nothing.
from memdiag.measure.process.rollup import read_rollup as read_rollup
from memdiag.measure.process.rollup import uss_bytes as uss_bytes

KB = 1024
PAGE = os.sysconf("SC_PAGE_SIZE")
# smaps fields added up per region: resident pages and swapped-out pages.
_REGION_FIELDS = ("Rss", "Swap")


def _region(path: str, inode: str) -> str:
    if path == "[heap]":
        return "heap"
    if path == "[stack]" or path.startswith("[stack:"):
        return "stack"
    if path.startswith("[v") or path == "[vsyscall]":
        return "kernel"
    if inode != "0" and path.startswith("/"):
        return "file"
    return "anonymous"  # no path, [anon:...], deleted shared memory


def read_regions(pid: int | str) -> dict[str, int]:
    """Return resident bytes per region (heap, anonymous, file, stack) and `swap` from smaps."""
    regions: dict[str, int] = {"heap": 0, "anonymous": 0, "file": 0, "stack": 0, "swap": 0}
    current = "anonymous"
    with open(f"/proc/{pid}/smaps") as handle:
        for line in handle:
            head = line.split(None, 5)
            if head and "-" in head[0] and not head[0].endswith(":"):
                path = head[5].strip() if len(head) > 5 else ""
                current = _region(path, head[4] if len(head) > 4 else "0")
            elif head and head[0] == "Rss:":
                regions[current] = regions.get(current, 0) + int(head[1]) * KB
            elif head and head[0] == "Swap:":
                regions["swap"] += int(head[1]) * KB
    regions.pop("kernel", None)
    return regions


def process_view(pid: int) -> dict[str, Any]:
    """Return one process's RSS, USS, PSS, swap and regions in bytes, with its command line."""
    rollup = read_rollup(pid)
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
    except OSError:
        argv = []
    return {
        "pid": pid,
        "command": " ".join(argv)[:200],
        "rss_bytes": rollup.get("Rss", 0),
        "uss_bytes": rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0),
        "pss_bytes": rollup.get("Pss", 0),
        "swap_bytes": rollup.get("Swap", 0),
        "regions": read_regions(pid),
    }


def tree_pids(pid: int) -> list[int]:
    """Return `pid` and all its descendants (psutil, imported here: the parent side only)."""
    import psutil

    try:
        root = psutil.Process(pid)
        return [pid, *(p.pid for p in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def tree_view(pids: Iterable[int]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Return the view of every process still readable and the regions summed over them."""
    views = []
    for pid in pids:
        try:
            views.append(process_view(pid))
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited between the listing and the read
    totals: dict[str, int] = {}
    for view in views:
        for name, size in view["regions"].items():
            totals[name] = totals.get(name, 0) + size
    return views, totals


@dataclass(frozen=True)
class ProcStat:
    """What /proc/PID/stat says of a process: its parent, session, page faults (minor and
    major: every page it got since it started) and resident set size in bytes."""

    parent: int
    session: int
    faults: int
    rss_bytes: int


def _read_small(path: str) -> bytes:
    """Return the first 4 kB of a /proc file: one os.read costs half of what open() does."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _parse_stat(data: bytes) -> ProcStat:
    # After the command name, which may hold spaces: field 4 (ppid) is index 1.
    fields = data.rpartition(b")")[2].split()
    return ProcStat(
        int(fields[1]), int(fields[3]), int(fields[7]) + int(fields[9]), int(fields[21]) * PAGE
    )


def read_stat(pid: int) -> ProcStat | None:
    """Return the process's /proc/PID/stat figures, None once it is gone."""
    try:
        return _parse_stat(_read_small(f"/proc/{pid}/stat"))
    except (OSError, IndexError, ValueError):
        return None


def is_process(pid: int) -> bool:
    """Return whether `pid` is a process (a thread group's leader), not another thread of one:
    /proc/TID answers for every thread, although listing /proc shows processes only."""
    try:
        for line in _read_small(f"/proc/{pid}/status").splitlines():
            if line.startswith(b"Tgid:"):
                return int(line.split()[1]) == pid
    except (OSError, IndexError, ValueError):
        pass
    return False


def last_pid() -> int | None:
    """Return the pid the kernel handed out last (to a process or a thread), as the last field
    of /proc/loadavg says; None when it cannot be read."""
    try:
        return int(_read_small("/proc/loadavg").split()[-1])
    except (OSError, IndexError, ValueError):
        return None


def _pids_in_order() -> bool:
    """Return whether new pids can be found from last_pid(): /proc is this process's pid
    namespace (the one /proc/loadavg counts in) and /proc/loadavg names a pid."""
    try:
        return os.readlink("/proc/self") == str(os.getpid()) and last_pid() is not None
    except OSError:
        return False


def marked_pids(name: str, value: str) -> list[int]:
    """Return the processes (this user's, readable) whose environment holds NAME=VALUE: the
    processes of one run, wherever they were reparented, for the run's unique marker."""
    entry = f"{name}={value}".encode()
    found = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if entry in handle.read().split(b"\0"):
                    found.append(pid)
        except OSError:
            continue  # gone, or another user's
    return found


# Descendants lists all of /proc at least this often (seconds), whatever else finds processes.
FULL_SCAN_S = 1.0
# More pids handed out than this since the last refresh: listing /proc is cheaper.
RANGE_MAX = 512
# Members whose /proc/PID/stat stays open, re-read with one pread (6 us instead of 12; and
# the file follows its process: it reads ESRCH once the pid is gone, even if reused).
OPEN_STATS = 64
# After a listing, pids this close below the last one handed out that were not listed are
# read once more at the next refresh: a forked process has its pid a moment before it shows.
RECENT_PIDS = 16


class Descendants:
    """The processes below `root`, followed incrementally from /proc.

    A process belongs when its parent does or when it is in the session of one of root's
    children (the launcher's job leads a session of its own), so an orphan whose parent has
    exited is still counted. New processes are found without listing /proc: the kernel hands
    out pids in order and /proc/loadavg names the last one, so a refresh reads the stat of
    only the pids handed out since the previous one (about 10 us each, once per pid on the
    whole machine), then the stat of each process of the tree. Listing /proc (about 60 us for
    70 processes, and growing with every process on the machine) happens at the first
    refresh, at least every FULL_SCAN_S, after more than RANGE_MAX new pids or a wrap of the
    pid numbers, and at every refresh when /proc is another pid namespace's.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.pids: set[int] = set()
        self._stats: dict[int, ProcStat] = {}
        self._sessions: set[int] = set()
        self._leaders: set[int] = set()  # root's children not yet seen leading a session
        self._seen: set[int] = set()  # pids read since they were last listed
        self._in_order = _pids_in_order()
        self._cursor: int | None = None  # the last pid handed out, as of the last refresh
        self._retry: set[int] = set()  # handed out, but not in /proc yet at the last refresh
        self._listed_at = float("-inf")
        self._listed: set[int] = set()
        self._fds: dict[int, int] = {}  # pid: its open /proc/PID/stat
        self._loadavg = os.open("/proc/loadavg", os.O_RDONLY) if self._in_order else None

    def refresh(self) -> bool:
        """Find the processes that joined the tree and read every process's stat; return
        whether processes joined or left the tree since the last refresh."""
        now = time.monotonic()
        last = self._last_pid()
        new, checking, cursor = None, False, self._cursor
        if last is not None and cursor is not None:
            if now - self._listed_at < FULL_SCAN_S:
                new = self._handed_out(cursor, last)
            else:
                checking = True  # a listing the pids handed out should have left nothing for
        if new is None:
            fresh = self._list(now, last)
            gone = self.pids - self._listed
            for pid in gone:
                self._drop(pid)
        else:
            fresh, gone = self._read_new(new), set()
        self._cursor = last
        joined = self._adopt(fresh)
        if joined and checking:
            # The pids handed out missed a process (this /proc/loadavg does not count them
            # as the kernel's does): list /proc at every refresh from now on.
            self._in_order = False
        left = self._read_members()
        return joined or bool(gone) or left

    def _last_pid(self) -> int | None:
        if self._loadavg is None or not self._in_order:
            return None
        try:
            return int(os.pread(self._loadavg, 4096, 0).split()[-1])
        except (OSError, IndexError, ValueError):
            return None

    def _handed_out(self, cursor: int, last: int) -> list[int] | None:
        """Return the pids handed out after `cursor` up to `last`; None when /proc must be
        listed instead: too many of them, or the numbers wrapped (old pids are new again)."""
        if last < cursor:
            self._seen.clear()
            return None
        if last - cursor > RANGE_MAX:
            self._seen = {pid for pid in self._seen if not cursor < pid <= last}
            return None
        return list(range(cursor + 1, last + 1))

    def _list(self, now: float, last: int | None) -> dict[int, tuple[int, int, bool]]:
        """List /proc; return (parent, session, False) of each process not read before."""
        self._listed_at = now
        self._listed = {int(name) for name in os.listdir("/proc") if name.isdigit()}
        self._seen &= self._listed  # a pid that disappears may come back as another process
        fresh = {}
        for pid in self._listed - self._seen:
            stat = read_stat(pid)
            if stat is not None:
                fresh[pid] = (stat.parent, stat.session, False)
        self._seen |= fresh.keys()
        self._retry = set()
        if last is not None:
            recent = range(last - RECENT_PIDS, last + 1)
            self._retry = {pid for pid in recent if pid not in self._listed}
        return fresh

    def _read_new(self, new: list[int]) -> dict[int, tuple[int, int, bool]]:
        """Return (parent, session, True: maybe a thread) of each pid handed out since the
        last refresh; one not in /proc yet is read once more at the next refresh."""
        retry, self._retry = self._retry, set()
        fresh = {}
        for pid in [*retry, *new]:
            stat = read_stat(pid)
            if stat is None:
                if pid not in retry:
                    self._retry.add(pid)
                continue
            self._seen.add(pid)
            fresh[pid] = (stat.parent, stat.session, True)
        return fresh

    def _adopt(self, fresh: dict[int, tuple[int, int, bool]]) -> bool:
        """Add the fresh processes that belong, parents first; return whether any did."""
        joined = False
        # Parents first, whatever their pid order after a wrap-around: repeat until stable.
        while fresh:
            members = [
                pid for pid, (parent, session, _) in fresh.items() if self._belongs(parent, session)
            ]
            if not members:
                break
            for pid in members:
                parent, session, maybe_thread = fresh.pop(pid)
                # A thread's stat names its process's parent and session: tell them apart
                # here, for the few pids that would belong.
                if maybe_thread and not is_process(pid):
                    continue
                if parent == self.root:
                    # Its session at once when it leads one: orphans read in this same
                    # refresh belong through it.
                    (self._sessions if session == pid else self._leaders).add(pid)
                self.pids.add(pid)
                joined = True
        return joined

    def _belongs(self, parent: int, session: int) -> bool:
        return parent == self.root or parent in self.pids or session in self._sessions

    def _read_members(self) -> bool:
        """Read every member's stat; return whether some had left."""
        stats, left = {}, False
        for pid in list(self.pids):
            stat = self._read_member(pid)
            if stat is None:
                self._drop(pid)
                left = True
            else:
                stats[pid] = stat
        self._stats = stats
        # Only a session root's child leads itself: before its setsid() it is still in the
        # caller's session, which holds other processes (memdiag, other runs' launchers).
        for pid in list(self._leaders):
            stat = stats.get(pid)
            if stat is None or stat.session == pid:
                self._leaders.discard(pid)
                if stat is not None:
                    self._sessions.add(pid)
        return left

    def _read_member(self, pid: int) -> ProcStat | None:
        fd = self._fds.get(pid)
        try:
            if fd is None:
                if len(self._fds) >= OPEN_STATS:
                    return read_stat(pid)
                fd = self._fds[pid] = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
            return _parse_stat(os.pread(fd, 4096, 0))
        except (OSError, IndexError, ValueError):
            return None

    def _drop(self, pid: int) -> None:
        self.pids.discard(pid)
        fd = self._fds.pop(pid, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        """Close the files kept open (later refreshes list /proc and open them again)."""
        for pid in list(self._fds):
            os.close(self._fds.pop(pid))
        if self._loadavg is not None:
            os.close(self._loadavg)
            self._loadavg, self._in_order = None, False

    def stats(self) -> dict[int, ProcStat]:
        """Return each process's stat figures as of the last refresh."""
        return dict(self._stats)

    def kill(self) -> None:
        """Send SIGKILL to every process of the tree, as of the last refresh."""
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
