"""A process's memory from /proc/PID/smaps_rollup (Rss, Pss, USS), standard library only.

Imported by the code that snapshots a Python process from inside (a job's child, a running
service): nothing here may load more than the standard library's `os`.
"""

from __future__ import annotations

KB = 1024


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


def give_back() -> None:
    """Return the memory this process freed to the system: glibc keeps freed blocks of a few
    MB in its heap, and a process that freed hundreds of MB of temporary arrays stays that
    large (`malloc_trim`; nothing where the C library has none)."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def map_large_blocks(threshold: int = 4 * KB * KB) -> None:
    """Have glibc give every block of `threshold` bytes or more its own mapping, returned to
    the system when freed (`M_MMAP_THRESHOLD`). By default glibc raises that threshold after
    each large block freed, up to 32 MB, and then keeps freed arrays of that size in its heap:
    a process working through arrays of tens of MB (a heap snapshot's analysis) holds them
    all at its peak. Nothing where the C library has no `mallopt`."""
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-3, threshold)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass
