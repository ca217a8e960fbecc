"""Jobs the benchmarks measure: CPU-bound for overhead, allocation-heavy for heap tracking."""

from __future__ import annotations

import time


def busy(seconds: float = 3.0) -> int:
    """Mixed work for `seconds`: arithmetic and short-lived containers, like a sync loop."""
    deadline = time.perf_counter() + seconds
    done = 0
    while time.perf_counter() < deadline:
        rows = [{"id": i, "v": i * 2} for i in range(1000)]
        done += sum(r["v"] for r in rows)
    return done


def dicts(rounds: int = 10, count: int = 200_000) -> int:
    """Allocation-heavy: build `count` small dicts, `rounds` times."""
    total = 0
    for _ in range(rounds):
        rows = [{"id": i, "name": "x", "score": 1.0} for i in range(count)]
        total += len(rows)
    return total


def dicts_tracemalloc(rounds: int = 10, count: int = 200_000, frames: int = 1) -> int:
    """The same job under tracemalloc, for comparison with memray's aggregated capture."""
    import tracemalloc

    tracemalloc.start(frames)
    try:
        return dicts(rounds, count)
    finally:
        tracemalloc.stop()


def hold(mb: int = 200) -> int:
    """Hold `mb` MB of touched memory for a moment."""
    block = bytearray(mb * 1024 * 1024)
    block[::4096] = b"\x01" * len(range(0, len(block), 4096))
    time.sleep(0.2)
    return mb


def line(batch: int = 1, records: int = 200) -> int:
    """Peak = interpreter + `batch` MB, touched: a known line in the batch size."""
    block = bytearray(batch * 1024 * 1024)
    block[::4096] = b"\x01" * len(range(0, len(block), 4096))
    time.sleep(0.05)
    return records


def migrate_then_free(items: int = 20_000) -> int:
    """The migration engine's `full` variant, its prefetch cache dropped before returning
    (the job store evicted at once instead of after its TTL): the cache is the peak's
    largest holder, and nothing of it is left at the end."""
    from memdiag_plugins import migration

    done = migration.run(items=items, variant="full")
    migration.JOBS.clear()
    return done


KEPT: list[dict[str, object]] = []


def dicts_kept(rounds: int = 4, count: int = 200_000, seed: int = 0) -> int:
    """Allocation-heavy and leaking: `rounds` × `count` small dicts, 1 in 100 kept forever."""
    total = 0
    for r in range(rounds):
        rows = [{"id": i, "name": f"n{seed}-{r}", "score": i * 0.5} for i in range(count)]
        KEPT.extend(rows[::100])
        total += len(rows)
    return total


def dedup(records: int = 1000) -> int:
    """Candidate pairs inside one block, 8 bytes per pair: memory grows with records²."""
    pairs = bytearray(8 * records * records)
    pairs[::4096] = b"\x01" * len(range(0, len(pairs), 4096))
    return records


def profiles(records: int = 10_000, users: int = 40_000) -> int:
    """Records from a pool of `users`, 4 KB kept per distinct user: memory levels off near
    users × 4 KB (distinct users seen grow as users · (1 − e^(−records/users)))."""
    import random

    draw = random.Random(0)
    kept: dict[int, bytearray] = {}
    for _ in range(records):
        user = draw.randrange(users)
        if user not in kept:
            kept[user] = bytearray(b"\x01" * 4096)
    return records
