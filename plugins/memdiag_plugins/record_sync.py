"""record-sync: a long-running sync service whose processed-records set grew forever.

Incident 003 (a peer-to-peer sync service crashing after hours). Each of `cycles` sync cycles
receives `batch` new records plus a share of the previous cycle's records sent again (peers
gossip updates more than once); a record is applied to `sync_records` only if its key is not
in the processed-records set. `concurrency` workers compute the keys of each cycle.

- `variant=leaky`: the set, a class attribute shared by every service in the process, only
  ever grows.
- `variant=cleared`: the set is cleared every `max_age` cycles and when the service stops:
  memory follows the incident's sawtooth, and a record sent again after a clearing is simply
  upserted again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import ClassVar

from sqlalchemy import Engine

from memdiag import probe
from memdiag_plugins import _common as common
from memdiag_plugins._data import Record, text
from memdiag_plugins._db import open_database, upsert
from memdiag_plugins._schema import SyncRecord, reset, table

VARIANTS = ("leaky", "cleared")
RESENT_SHARE = 0.2


def cycle_records(seed: int, cycle: int, batch: int) -> list[Record]:
    """Return the `batch` new records of one cycle (the same every time it is asked)."""
    rng = common.seeded(seed, "cycle", cycle)
    return [
        {
            "soul": f"records/{rng.getrandbits(128):032x}/{rng.choice(('profile', 'post'))}",
            "version": rng.randrange(1, 50),
            "value": text(rng, 12),
        }
        for _ in range(batch)
    ]


def record_key(record: Record) -> str:
    """Return the key a delivery is recognised by: record, version and content digest."""
    digest = hashlib.sha1(record["value"].encode()).hexdigest()
    return f"{record['soul']}@{record['version']}#{digest}"


class RecordSyncService:
    """Applies each cycle's deliveries once, remembering which keys it has processed."""

    # Shared by every service in the process, so a restarted service skips old records.
    processed: ClassVar[set[str]] = set()
    # Cycles run by earlier services in this process: a restarted service picks up where
    # they stopped, so it receives new records rather than the same ones again.
    cycles_done: ClassVar[int] = 0

    def __init__(self, engine: Engine, concurrency: int, max_age: int | None) -> None:
        self.engine, self.concurrency, self.max_age = engine, concurrency, max_age

    def handle(self, cycle: int, deliveries: Sequence[Record], batch: int) -> int:
        """Apply one cycle's deliveries not processed before; return how many were applied."""
        if self.max_age and cycle % self.max_age == 0:
            RecordSyncService.processed.clear()
        parts = [deliveries[i :: self.concurrency] for i in range(self.concurrency)]
        keyed = common.map_bounded(
            lambda part: [(record_key(r), r) for r in part], parts, self.concurrency
        )
        fresh = []
        for pairs in keyed:
            for key, record in pairs:
                if key not in RecordSyncService.processed:
                    RecordSyncService.processed.add(key)
                    fresh.append(
                        {"key": record["soul"], "cycle": cycle, "value": json.dumps(record)}
                    )
        with self.engine.begin() as conn:
            for chunk in common.chunks(fresh, batch):
                upsert(conn, table(SyncRecord), chunk, "key")
        return len(fresh)

    def stop(self) -> None:
        if self.max_age:
            RecordSyncService.processed.clear()


def run(
    cycles: int = 240,
    batch: int = 500,
    concurrency: int = 2,
    max_age: int = 10,
    variant: str = "leaky",
    seed: int = 1,
    db: str = "",
) -> int:
    """Run `cycles` sync cycles of `batch` new records each (incident 003)."""
    common.check_int("cycles", cycles, minimum=0)
    common.check_int("batch", batch)
    common.check_int("concurrency", concurrency)
    common.check_int("max_age", max_age)
    cleared = common.check_variant(variant, VARIANTS) == "cleared"
    common.check_int("seed", seed, minimum=0)
    resent = int(batch * RESENT_SHARE)
    delivered = 0
    with open_database(db) as engine:
        with probe.phase("prepare"):
            reset(engine, SyncRecord)
        service = RecordSyncService(engine, concurrency, max_age if cleared else None)
        probe.phase("sync")
        previous: list[Record] = []
        first = RecordSyncService.cycles_done
        for cycle in range(first, first + cycles):
            new = cycle_records(seed, cycle, batch)
            deliveries = new + previous[:resent]
            service.handle(cycle, deliveries, batch)
            delivered += len(deliveries)
            previous = new
            RecordSyncService.cycles_done += 1
            probe.progress(cycle + 1 - first, cycles)
        service.stop()
    return delivered
