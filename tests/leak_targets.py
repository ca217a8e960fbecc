"""Small targets for `memdiag leaks` and `memdiag snapshot`: Python, native and no leaks."""

from __future__ import annotations

import ctypes
import logging
import re
import time
from collections import OrderedDict
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


KEPT_FORMATTED: list[str] = []
KEPT_FSTRINGS: list[str] = []


def two_formats(kept: int = 3000, work: int = 1500, seed: int = 0) -> int:
    """Keeps `kept` strings of 28 characters a call from each of two lines: %-formatted
    (finished by a realloc) and f-strings (one malloc), among `work` small strings of
    garbage per kept pair."""
    junk = 0
    for i in range(kept):
        n = seed * kept + i
        KEPT_FORMATTED.append("record %08d of the batch" % n)  # noqa: UP031 (the realloc)
        KEPT_FSTRINGS.append(f"record {n:08d} of the batch")
        for _ in range(work):
            junk += len(str(i) * 3)
    return kept


LOG = logging.getLogger("leak_targets")


def named_loggers(count: int = 2000, seed: int = 0) -> int:
    """A logger per request, never let go by logging (its manager's table keeps them all),
    beside a module logger of its own, through which the table is reached too."""
    for i in range(count):
        logging.getLogger(f"job.request-{seed}-{i}").debug("start")
    LOG.debug("done")
    return count


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


CALLS = [0]


def fails_on(call: int = 6, error: str = "value", rounds: int = 3) -> int:
    """Leaks as `churn_kept` does, allocation-heavy (its traced call goes to slices), and
    raises at the end of call number `call`: ValueError, or MemoryError for "memory"."""
    CALLS[0] += 1
    churn_kept(rounds, 30_000, CALLS[0])
    if CALLS[0] == call:
        raise (
            MemoryError("no room for record 7") if error == "memory" else ValueError("bad record 7")
        )
    return rounds * 30_000


def tracing_seen(path: str, records: int = 300) -> int:
    """Leaks as `leak` does; appends to `path` whether tracemalloc traced this call."""
    import tracemalloc

    with open(path, "a") as out:
        out.write(f"{tracemalloc.is_tracing()}\n")
    return leak(records)


class SyncService:
    """Keeps every processed record's key and never clears them."""

    def __init__(self) -> None:
        self.processed_records: set[str] = set()
        self.calls = 0


SYNC = SyncService()


def processed_keys(keys: int = 60_000) -> int:
    """Adds `keys` new keys a call: the set's table doubles every few calls."""
    SYNC.calls += 1
    for i in range(keys):
        SYNC.processed_records.add(f"record-{SYNC.calls}-{i}")
    return keys


class Lookups:
    """Every record goes into two caches: a bounded LRU that keeps the newest 4,000 and an
    unbounded one that keeps them all (the leak). The bounded one comes first everywhere:
    in the class, in the call, and it holds every record of the last call."""

    recent: ClassVar[OrderedDict[str, dict[str, str]]] = OrderedDict()
    everything: ClassVar[dict[str, dict[str, str]]] = {}
    calls = 0


def two_caches(records: int = 3000) -> int:
    Lookups.calls += 1
    for i in range(records):
        key = f"{Lookups.calls}-{i}"
        row = {"key": key, "body": "x" * 64}
        Lookups.recent[key] = row
        if len(Lookups.recent) > 4000:
            Lookups.recent.popitem(last=False)
        Lookups.everything[key] = row
    return records


class Pair:
    """One of two objects that refer to each other: freed by the collector alone."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.other: Pair | None = None


RECENT_PAIRS: list[Pair] = []


def evicts_cycles(pairs: int = 500) -> int:
    """A bounded cache of cyclic pairs: each call adds `pairs` and drops the oldest past
    1,000, which become garbage only a full collection frees (they are old by then)."""
    for i in range(pairs):
        first, second = Pair(f"pair-{len(RECENT_PAIRS)}-{i}"), Pair("x" * 64)
        first.other, second.other = second, first
        RECENT_PAIRS.append(first)
    del RECENT_PAIRS[: max(0, len(RECENT_PAIRS) - 1000)]
    return pairs


def paced(seconds: float = 0.2) -> int:
    """Calls that mostly wait, as a service waits on its sources: each snapshot's copy of
    this small heap is done long before the next call ends."""
    time.sleep(seconds)
    return 1


ENDINGS: list[str] = []


def ends_its_way(path: str) -> int:
    """A job that leaves work for the interpreter's exit: an atexit handler, a thread that
    is not a daemon and finishes after the last call, output not yet flushed."""
    import atexit
    import sys
    import threading

    def write(what: str) -> None:
        with open(path, "a") as handle:
            handle.write(what + "\n")

    if not ENDINGS:
        atexit.register(write, "atexit")
        ENDINGS.append("registered")
    else:
        threading.Thread(target=lambda: (time.sleep(0.3), write("thread"))).start()
    sys.stdout.write("unflushed ")
    ENDINGS.extend("kept" for _ in range(300))
    return 1
