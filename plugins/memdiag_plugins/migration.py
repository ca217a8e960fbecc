"""migration: items copied from a source app to a target app, duplicates found in a cache.

Incident 002 (10,000+ items, a prefetch cache of whole items). The run seeds `source_items`
with `items` items and `target_items` with the half of them migrated before; then it
prefetches every target item into a cache keyed by match value and migrates the source in
batches of `batch`, `concurrency` workers checking each batch against the cache.

- `variant=full`: cache entries keep the whole item (ten fields, nested metadata, datetime
  objects) plus two datetimes, and the job's cache stays in the process-wide `JOBS` store for
  its 12-hour TTL after the job ends.
- `variant=slim`: entries keep the item id, the match value and a float timestamp, and the
  job's cache is dropped when it ends.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Row, insert, select

from memdiag import probe
from memdiag_plugins import _common as common
from memdiag_plugins._data import Record, item
from memdiag_plugins._db import open_database
from memdiag_plugins._schema import SourceItem, TargetItem, reset, table

VARIANTS = ("full", "slim")
CACHE_TTL_S = 12 * 3600
SEED_CHUNK = 1_000


@dataclass
class FullEntry:
    value: Record
    created_at: datetime
    last_accessed_at: datetime


@dataclass(slots=True)
class SlimEntry:
    item_id: int
    match_value: str
    created_at: float


@dataclass
class PrefetchCache:
    """Target items by match value, for duplicate detection during one migration job."""

    slim: bool
    created: float = field(default_factory=time.time)
    entries: dict[str, FullEntry | SlimEntry] = field(default_factory=dict)

    def add(self, row: Row[Any]) -> None:
        if self.slim:
            self.entries[row.match_value] = SlimEntry(
                row.id, row.match_value, row.created_at.timestamp()
            )
            return
        now = datetime.now(UTC)
        value = {**row._asdict(), **row.body}  # the whole item, metadata parsed
        self.entries[row.match_value] = FullEntry(value, now, now)

    def existing_id(self, match_value: str) -> int | None:
        entry = self.entries.get(match_value)
        if entry is None:
            return None
        if isinstance(entry, FullEntry):
            entry.last_accessed_at = datetime.now(UTC)
            return int(entry.value["id"])
        return entry.item_id


# Every job's cache by job id, as the migration service's state store keeps them: a rerun
# within the TTL could reuse it. Expired caches are evicted when the next job starts.
JOBS: dict[str, PrefetchCache] = {}


def _source_row(rng_seed: int, iid: int) -> Record:
    data = item(common.seeded(rng_seed, "item", iid), iid, f"ext-{iid:08d}")
    fields = ("item_id", "match_value", "title", "created_at", "updated_at")
    body = {k: v for k, v in data.items() if k not in fields}
    return {**{k: data[k] for k in fields[1:]}, "id": iid, "body": body}


def _seed(engine: Engine, items: int, seed: int) -> None:
    """Write the source items, and every second one to the target as already migrated."""
    reset(engine, SourceItem, TargetItem)
    for start in range(0, items, SEED_CHUNK):
        rows = [_source_row(seed, i) for i in range(start, min(items, start + SEED_CHUNK))]
        with engine.begin() as conn:
            conn.execute(insert(table(SourceItem)), rows)
            conn.execute(insert(table(TargetItem)), rows[::2])


def _prefetch(engine: Engine, cache: PrefetchCache) -> None:
    target = table(TargetItem)
    columns = [target.c.id, target.c.match_value, target.c.created_at]
    query = select(*columns) if cache.slim else select(target)
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=SEED_CHUNK).execute(query)
        for row in result:
            cache.add(row)


def _check(cache: PrefetchCache, rows: Sequence[Row[Any]]) -> tuple[int, list[Record]]:
    """Return the size of one batch and its rows the target does not hold yet."""
    return len(rows), [r._asdict() for r in rows if cache.existing_id(r.match_value) is None]


def _migrate(engine: Engine, cache: PrefetchCache, batch: int, concurrency: int) -> int:
    done = 0
    with engine.connect() as reader:
        result = reader.execution_options(yield_per=batch).execute(select(table(SourceItem)))
        batches = result.partitions(batch)
        checked = common.map_bounded(lambda rows: _check(cache, rows), batches, concurrency)
        for size, new in checked:
            if new:
                with engine.begin() as conn:
                    conn.execute(insert(table(TargetItem)), new)
            done += size
            probe.progress(done)
    return done


def run(
    items: int = 20_000,
    batch: int = 500,
    concurrency: int = 2,
    variant: str = "full",
    seed: int = 1,
    db: str = "",
) -> int:
    """Migrate `items` items, duplicates found in a prefetch cache (incident 002)."""
    common.check_int("items", items, minimum=0)
    common.check_int("batch", batch)
    common.check_int("concurrency", concurrency)
    common.check_variant(variant, VARIANTS)
    common.check_int("seed", seed, minimum=0)
    now = time.time()
    for job_id in [j for j, c in JOBS.items() if now - c.created > CACHE_TTL_S]:
        del JOBS[job_id]
    with open_database(db) as engine:
        job_id = uuid.uuid4().hex
        JOBS[job_id] = cache = PrefetchCache(slim=variant == "slim")
        try:
            with probe.phase("seed"):
                _seed(engine, items, seed)
            with probe.phase("prefetch"):
                _prefetch(engine, cache)
            with probe.phase("migrate"):
                _migrate(engine, cache, batch, concurrency)
        finally:
            if cache.slim:
                del JOBS[job_id]
    return items
