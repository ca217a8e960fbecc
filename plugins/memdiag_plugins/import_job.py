"""import: players and games, each game with ten participants, written through the ORM.

Incident 001 (10k players and 50k games, sized for 1 GB serverless). Pages of `batch`
records are fetched by `concurrency` workers and written to `import_players`, `games` and
`game_participants`.

- `variant=accumulate`: every page is fetched into one list before anything is written
  (`ImportJob.fetched`, a class attribute, so the list is shared by every import in the
  process), then one ORM session adds everything and commits once: until that commit the
  session holds every pending object strongly.
- `variant=stream`: pages flow through a generator; each batch gets its own session and
  commit, after which nothing of it stays reachable.

SQLAlchemy's identity map holds persistent objects weakly, so a session that commits per
batch does not grow; what grows is pending objects of one long transaction and rows kept in
a list, which is what `accumulate` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import ClassVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from memdiag import probe
from memdiag_plugins import _common as common
from memdiag_plugins._data import Record, game, player
from memdiag_plugins._db import open_database
from memdiag_plugins._schema import Game, ImportedPlayer, Participant, reset

VARIANTS = ("accumulate", "stream")
PARTICIPANTS_PER_GAME = 10


class ImportJob:
    """One import: fetches pages of players and games and writes them as ORM objects."""

    # Every record fetched, for the import report; a class attribute, so it outlives the job.
    fetched: ClassVar[list[Record]] = []

    def __init__(self, players: int, games: int, batch: int, seed: int, latency: float):
        self.players, self.games, self.batch = players, games, batch
        self.seed, self.latency = seed, latency

    def fetch(self, page: tuple[str, range]) -> list[Record]:
        """Return one page of the source: players or games, by id."""
        kind, ids = page
        common.fetch_delay(self.latency)
        if kind == "player":
            return [player(common.seeded(self.seed, kind, i), i) for i in ids]
        return [game(common.seeded(self.seed, kind, i), i, self.players) for i in ids]

    def pages(self) -> Iterator[tuple[str, range]]:
        """Yield every page to fetch: all players first, then all games."""
        for kind, total in (("player", self.players), ("game", self.games)):
            for start in range(0, total, self.batch):
                yield kind, range(start, min(total, start + self.batch))


def to_objects(record: Record) -> ImportedPlayer | Game:
    """Return the ORM object for one fetched record (a game with its participants)."""
    if "participants" not in record:
        profile = {k: record[k] for k in ("nickname", "joined", "bio", "stats", "tags")}
        return ImportedPlayer(
            id=record["id"],
            name=record["name"],
            country=record["country"],
            rating=record["rating"],
            profile=profile,
        )
    return Game(
        id=record["id"],
        tournament=record["tournament"],
        played_at=record["played_at"],
        result=record["result"],
        participants=[
            Participant(
                player_id=p["player_id"],
                seat=p["seat"],
                role=p["role"],
                score=p["score"],
                details={"extra": p["extra"], "notes": p["notes"]},
            )
            for p in record["participants"]
        ],
    )


def _accumulate(engine: Engine, job: ImportJob, concurrency: int) -> int:
    start = len(ImportJob.fetched)
    with probe.phase("fetch"):
        for page in common.map_bounded(job.fetch, job.pages(), concurrency):
            ImportJob.fetched.extend(page)
            probe.progress(len(ImportJob.fetched) - start, job.players + job.games)
    mine = ImportJob.fetched[start:]
    with probe.phase("write"), Session(engine) as session:
        for chunk in common.chunks(mine, job.batch):
            session.add_all(to_objects(r) for r in chunk)
        session.commit()
    return len(mine)


def _stream(engine: Engine, job: ImportJob, concurrency: int) -> int:
    done = 0
    probe.phase("fetch+write")
    pages: Iterable[list[Record]] = common.map_bounded(job.fetch, job.pages(), concurrency)
    for page in pages:
        with Session(engine) as session:
            session.add_all(to_objects(r) for r in page)
            session.commit()
        done += len(page)
        probe.progress(done, job.players + job.games)
    return done


def run(
    records: int = 1_000,
    games_per_player: int = 5,
    batch: int = 100,
    concurrency: int = 2,
    latency: float = 0.0,
    variant: str = "accumulate",
    seed: int = 1,
    db: str = "",
) -> int:
    """Import `records` players, `games_per_player` games each of ten players (incident 001)."""
    common.check_int("records", records, minimum=0)
    common.check_int("games_per_player", games_per_player, minimum=0)
    common.check_int("batch", batch)
    common.check_int("concurrency", concurrency)
    delay = common.check_seconds("latency", latency)
    write = {"accumulate": _accumulate, "stream": _stream}[common.check_variant(variant, VARIANTS)]
    common.check_int("seed", seed, minimum=0)
    job = ImportJob(records, records * games_per_player, batch, seed, delay)
    with open_database(db) as engine:
        with probe.phase("prepare"):
            reset(engine, ImportedPlayer, Game, Participant)
        return write(engine, job, concurrency)
