"""Small targets for `memdiag leaks` and `memdiag snapshot`: Python, native and no leaks."""

from __future__ import annotations

import ctypes
import re
from typing import ClassVar

from memdiag import probe

ERRORS: list[str] = []
_COMPILED: dict[str, re.Pattern[str]] = {}


class Registry:
    """Keeps every buffer it is given: a class attribute that only grows."""

    buffers: ClassVar[list[bytearray]] = []


def leak(records: int = 300) -> int:
    for i in range(records):
        ERRORS.append(f"record {i}: email is required; payload " + "x" * 400)
    Registry.buffers.append(bytearray(128 * 1024))
    return records


BUFFER = bytearray()
ROWS: list[int] = []
KEPT_DICTS: list[dict[str, object]] = []


def churn_kept(rounds: int = 3, count: int = 100_000, seed: int = 0) -> int:
    """Allocation-heavy: `rounds` × `count` small rows a call, 1 in 100 kept for good."""
    for r in range(rounds):
        rows = [{"id": i, "name": f"n{seed}-{r}-{i}", "score": i * 0.5} for i in range(count)]
        KEPT_DICTS.extend(rows[::100])
    return rounds * count


def one_buffer(mb: int = 1) -> None:
    """Extends one buffer by `mb` MB per call: one object that grows, never a new one."""
    BUFFER.extend(bytes(mb * 1024 * 1024))


def one_list(mb: int = 1) -> None:
    """Extends one list by `mb` MB of references (to the same int) per call."""
    ROWS.extend([0] * (mb * 1024 * 1024 // 8))


def clean(records: int = 300) -> int:
    """Warms caches (a regex, a dict filled once), keeps nothing across calls."""
    pattern = _COMPILED.setdefault("email", re.compile(r"[^@]+@[^@]+"))
    rows = [{"id": i, "email": f"user{i}@example.org"} for i in range(records)]
    return sum(1 for row in rows if pattern.match(row["email"]))


_libc = ctypes.CDLL(None)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]


def native(mb: int = 4) -> None:
    """malloc without free, touched so that the pages are resident: RSS grows, no Python."""
    size = mb * 1024 * 1024
    ctypes.memset(_libc.malloc(size), 1, size)


def phased(records: int = 2000) -> int:
    with probe.phase("fetch"):
        rows = [{"id": i, "payload": "y" * 200} for i in range(records)]
    with probe.phase("write"):
        kept = [bytearray(4096) for _ in range(200)]
    ERRORS.extend(str(r["id"]) for r in rows[:10])
    del kept
    return len(rows)
