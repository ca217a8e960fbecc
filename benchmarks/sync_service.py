"""A sync service that has run for a while: 1,200,000 processed record keys already in its set
when it is imported, 200,000 more kept every call and never cleared (issue 21's classic leak).
After six calls its heap holds about 2.4 million objects."""

from __future__ import annotations

STARTED_WITH = 1_200_000


class SyncService:
    def __init__(self) -> None:
        self.processed_records: set[str] = {f"boot-{i}" for i in range(STARTED_WITH)}
        self.cycle = 0


SERVICE = SyncService()


def sync(cycles: int = 8, keys: int = 25_000) -> int:
    """One call: `cycles` sync cycles of `keys` new record keys each, all kept in the
    service's set (200,000 a call by default), the cycle's rows left as garbage."""
    for _ in range(cycles):
        SERVICE.cycle += 1
        rows = [{"id": f"{SERVICE.cycle}-{i}", "payload": "x" * 40} for i in range(keys)]
        for row in rows:
            SERVICE.processed_records.add(row["id"])
    return cycles * keys
