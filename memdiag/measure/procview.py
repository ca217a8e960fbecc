"""A process-level memory view of any process, any language, read from `/proc`.

RSS counts shared library pages in every process that maps them; USS (private pages) is
what the process alone would give back if it exited, PSS shares the shared pages out. The
split by mapping says where the memory is: the `[heap]` of brk, anonymous mappings (large
mallocs, the Python arenas, V8's heap, thread stacks), and file-backed pages (code, mmap'd
files). Standard library only, so the measured child can read its own USS as well.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

KB = 1024
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
