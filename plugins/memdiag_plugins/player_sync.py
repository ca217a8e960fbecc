"""player-sync: a paged, checkpointed player sync that ran out of heap at 220k players.

Incident 000. Players come from a paged source API; each page is validated, upserted into
`players` and followed by a checkpoint row in the same transaction, so a killed run resumes
with nothing lost and nothing written twice.

- `variant=leaky`: every validation error (with the payload it quotes) is kept in the
  process-wide `STATS.errors`, and a new source client, with its own receive buffer, is
  created for every page and never closed.
- `variant=fixed`: at most `MAX_ERRORS_IN_MEMORY` errors are kept (every one is still
  logged), and one client serves the whole sync.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from sqlalchemy import Engine, inspect, select

from memdiag import probe
from memdiag_plugins import _common as common
from memdiag_plugins._data import Record, player
from memdiag_plugins._db import open_database, upsert
from memdiag_plugins._schema import Checkpoint, SyncedPlayer, reset, table

VARIANTS = ("leaky", "fixed")
MAX_ERRORS_IN_MEMORY = 100
# A page of 50 players is about 50 KB of JSON; clients size their buffer for a few pages.
CLIENT_BUFFER_BYTES = 256 * 1024
CHECKPOINT = "player-sync"

log = logging.getLogger(__name__)


@dataclass
class SyncStats:
    """Counters of the current sync and the error messages kept for its report."""

    written: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


# Process-wide, as in the incident: a status endpoint reads it while the sync runs.
STATS = SyncStats()


def player_record(seed: int, pid: int, error_rate: float) -> Record:
    """Return player `pid` as the source sends it; a fraction `error_rate` fails validation."""
    rng = common.seeded(seed, "player", pid)
    return player(rng, pid, invalid=rng.random() < error_rate)


class SourceClient:
    """A client of the players API: one connection with its own receive buffer."""

    # Clients register so that shutdown can close their connections: one never closed
    # stays reachable from here, buffer and all.
    open_clients: ClassVar[list[SourceClient]] = []

    def __init__(self, seed: int, error_rate: float, latency: float) -> None:
        self.seed, self.error_rate, self.latency = seed, error_rate, latency
        self.buffer = bytearray(CLIENT_BUFFER_BYTES)
        SourceClient.open_clients.append(self)

    def fetch(self, ids: range) -> list[Record]:
        """Return the players `ids`, received as JSON through this client's buffer."""
        common.fetch_delay(self.latency)
        body = json.dumps([player_record(self.seed, pid, self.error_rate) for pid in ids])
        raw = body.encode()
        self.buffer[: len(raw)] = raw
        page: list[Record] = json.loads(self.buffer[: len(raw)])
        return page

    def close(self) -> None:
        if self in SourceClient.open_clients:
            SourceClient.open_clients.remove(self)


def _start(engine: Engine, resume: bool) -> int:
    """Return the first record id to sync: the checkpoint's when resuming, else 0."""
    models = (SyncedPlayer, Checkpoint)
    present = all(inspect(engine).has_table(m.__tablename__) for m in models)
    if not (resume and present):
        reset(engine, *models)
        return 0
    with engine.connect() as conn:
        row = conn.execute(select(table(Checkpoint)).filter_by(name=CHECKPOINT)).first()
    return 0 if row is None else int(row.next_record)


def _validate(page: Sequence[Record], variant: str) -> list[Record]:
    """Return the valid players of `page`; record an error for every other one."""
    valid = []
    for record in page:
        if record.get("email"):
            valid.append(record)
            continue
        STATS.failed += 1
        message = f"player {record['id']}: email is required; payload {json.dumps(record)}"
        log.info(message)
        if variant == "leaky" or len(STATS.errors) < MAX_ERRORS_IN_MEMORY:
            STATS.errors.append(message)
    return valid


def _row(record: Record) -> Record:
    profile = {k: record[k] for k in ("nickname", "joined", "bio", "stats", "tags")}
    return {
        "id": record["id"],
        "name": record["name"],
        "email": record["email"],
        "country": record["country"],
        "rating": record["rating"],
        "profile": json.dumps(profile),
        "writes": 1,
    }


def _write(engine: Engine, valid: list[Record], batch: int, next_record: int) -> None:
    """Upsert one page and move the checkpoint past it, in one transaction."""
    with engine.begin() as conn:
        for chunk in common.chunks(valid, batch):
            upsert(conn, table(SyncedPlayer), [_row(r) for r in chunk], "id", "writes")
        STATS.written += len(valid)
        mark = {"name": CHECKPOINT, "next_record": next_record}
        upsert(conn, table(Checkpoint), [mark], "name")


def run(
    records: int = 20_000,
    page_size: int = 50,
    batch: int = 50,
    concurrency: int = 1,
    error_rate: float = 0.2,
    resume: bool = False,
    latency: float = 0.0,
    variant: str = "leaky",
    seed: int = 1,
    db: str = "",
) -> int:
    """Sync players page by page with a checkpoint per page (incident 000: 220k players)."""
    common.check_int("records", records, minimum=0)
    common.check_int("page_size", page_size)
    common.check_int("batch", batch)
    common.check_int("concurrency", concurrency)
    rate = common.check_fraction("error_rate", error_rate)
    common.check_bool("resume", resume)
    delay = common.check_seconds("latency", latency)
    common.check_variant(variant, VARIANTS)
    common.check_int("seed", seed, minimum=0)
    STATS.written = STATS.failed = 0
    if variant == "fixed":
        STATS.errors.clear()
    with open_database(db) as engine:
        with probe.phase("prepare"):
            start = _start(engine, resume)
        shared = SourceClient(seed, rate, delay) if variant == "fixed" else None

        def fetch(ids: range) -> list[Record]:
            client = shared or SourceClient(seed, rate, delay)
            return client.fetch(ids)

        probe.phase("sync")
        todo = range(start, records)
        pages = (todo[i : i + page_size] for i in range(0, len(todo), page_size))
        for page in common.map_bounded(fetch, pages, concurrency):
            valid = _validate(page, variant)
            _write(engine, valid, batch, page[-1]["id"] + 1)
            probe.progress(page[-1]["id"] + 1, records)
        if shared is not None:
            shared.close()
    return len(todo)
