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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

KB = 1024
PAGE = os.sysconf("SC_PAGE_SIZE")
# smaps fields added up per region: resident pages and swapped-out pages.
_REGION_FIELDS = ("Rss", "Swap")


def read_rollup(pid: int | str = "self") -> dict[str, int]:
    """Return /proc/PID/smaps_rollup's fields in bytes (`Rss`, `Pss`, `Private_Dirty`, ...)."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            name, sep, rest = line.partition(":")
            parts = rest.split()
            if sep and len(parts) == 2 and parts[1] == "kB":
                fields[name] = int(parts[0]) * KB
    return fields


def uss_bytes(pid: int | str = "self") -> int | None:
    """Return the process's unique set size (private clean + dirty pages), None if unreadable."""
    try:
        fields = read_rollup(pid)
    except OSError:
        return None
    return fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)


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


def read_stat(pid: int) -> ProcStat | None:
    """Return the process's /proc/PID/stat figures, None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            # After the command name, which may hold spaces: field 4 (ppid) is index 1.
            fields = handle.read().rpartition(b")")[2].split()
        return ProcStat(
            int(fields[1]), int(fields[3]), int(fields[7]) + int(fields[9]), int(fields[21]) * PAGE
        )
    except (OSError, IndexError, ValueError):
        return None


class Descendants:
    """The processes below `root`, followed incrementally from /proc.

    Each `refresh()` lists /proc (about 0.1 ms) and reads only the processes it has not seen
    yet, where psutil's children() reads every process's stat file (about 2 ms): cheap
    enough to run at every check of a limit. A process belongs when its parent does or when
    it is in the session of one of root's children (the launcher's job leads a session of
    its own), so an orphan whose parent has exited is still counted.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.pids: set[int] = set()
        self._sessions: set[int] = set()
        self._leaders: set[int] = set()  # root's children not yet seen leading a session
        self._seen: set[int] = set()

    def refresh(self) -> bool:
        """Rescan /proc; return whether processes joined or left the tree since the last scan."""
        listed = {int(name) for name in os.listdir("/proc") if name.isdigit()}
        gone = self.pids - listed
        self.pids -= gone
        self._seen &= listed  # a pid that disappears may come back as another process
        fresh = {}
        for pid in listed - self._seen:
            stat = read_stat(pid)
            if stat is not None:
                fresh[pid] = (stat.parent, stat.session)
        self._seen |= fresh.keys()
        joined = False
        # Parents first, whatever their pid order after a wrap-around: repeat until stable.
        while fresh:
            members = [pid for pid, ids in fresh.items() if self._belongs(*ids)]
            if not members:
                break
            for pid in members:
                if fresh.pop(pid)[0] == self.root:
                    self._leaders.add(pid)
                self.pids.add(pid)
            joined = True
        self._note_sessions()
        return joined or bool(gone)

    def _belongs(self, parent: int, session: int) -> bool:
        return parent == self.root or parent in self.pids or session in self._sessions

    def _note_sessions(self) -> None:
        # Only a session root's child leads itself: before its setsid() it is still in the
        # caller's session, which holds other processes (memdiag, other runs' launchers).
        for pid in list(self._leaders):
            stat = read_stat(pid)
            if stat is None or stat.session == pid:
                self._leaders.discard(pid)
                if stat is not None:
                    self._sessions.add(pid)

    def stats(self) -> dict[int, ProcStat]:
        """Return each process's stat figures; processes that have exited are dropped."""
        stats = {}
        for pid in list(self.pids):
            stat = read_stat(pid)
            if stat is None:
                self.pids.discard(pid)
            else:
                stats[pid] = stat
        return stats

    def kill(self) -> None:
        """Send SIGKILL to every process of the tree, as of the last scan."""
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
