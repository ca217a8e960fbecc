"""parallel: teams scraped by parallel workers, each returning ten fixtures of about 5 KB.

Incident 004 (memory went from 900 MB to 2 GB+ once processing went parallel). `items`
teams are processed in batches of `batch` by `concurrency` workers; each worker returns the
team's fixtures, which end up in the `fixtures` table.

- `variant=accumulate`: every full result is appended to the process-wide `ALL_RESULTS`
  (the incident's `allResults`) and written only when all teams are done.
- `variant=stream`: each result goes to a callback as soon as it is ready; the callback
  keeps only the minimal rows the table needs, written and dropped once per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, insert

from memdiag import probe
from memdiag_plugins import _common as common
from memdiag_plugins._data import Record, fixture
from memdiag_plugins._db import open_database
from memdiag_plugins._schema import Fixture, reset, table

VARIANTS = ("accumulate", "stream")
FIXTURES_PER_TEAM = 10
WRITE_CHUNK = 1_000


@dataclass
class TeamResult:
    team: int
    fixtures: list[Record]


# Every batch's results, kept for the summary at the end, as the incident's `allResults`.
ALL_RESULTS: list[TeamResult] = []


def scrape(seed: int, team: int, latency: float) -> TeamResult:
    """Return one team's fixtures, full objects as the scraper builds them."""
    common.fetch_delay(latency)
    rng = common.seeded(seed, "team", team)
    return TeamResult(team, [fixture(rng, team, n) for n in range(FIXTURES_PER_TEAM)])


def minimal(item: Record) -> Record:
    """Return the fields of a fixture the table stores: ids, teams, kick-off, venue."""
    return {
        "game_id": item["gameID"],
        "team": item["home"],
        "away": item["away"],
        "kickoff": item["kickoff"],
        "venue": item["venue"],
    }


def process_in_parallel(
    teams: Sequence[int],
    processor: Callable[[int], TeamResult],
    concurrency: int,
    on_result: Callable[[TeamResult], None] | None = None,
) -> list[TeamResult]:
    """Return every team's result; with `on_result`, hand each over and return none."""
    results = []
    for result in common.map_bounded(processor, teams, concurrency):
        if on_result is None:
            results.append(result)
        else:
            on_result(result)
    return results


def _write(engine: Engine, rows: Sequence[Record]) -> None:
    with engine.begin() as conn:
        for chunk in common.chunks(rows, WRITE_CHUNK):
            conn.execute(insert(table(Fixture)), list(chunk))


def _accumulate(
    engine: Engine, teams: range, batch: int, scraper: Callable[[int], TeamResult], concurrency: int
) -> int:
    start = len(ALL_RESULTS)
    with probe.phase("process"):
        for first in range(0, len(teams), batch):
            ALL_RESULTS.extend(
                process_in_parallel(teams[first : first + batch], scraper, concurrency)
            )
            probe.progress(len(ALL_RESULTS) - start, len(teams))
    mine = ALL_RESULTS[start:]
    with probe.phase("write"):
        _write(engine, [minimal(f) for result in mine for f in result.fixtures])
    return len(mine)


def _stream(
    engine: Engine, teams: range, batch: int, scraper: Callable[[int], TeamResult], concurrency: int
) -> int:
    pending: list[Record] = []

    def keep_minimal(result: TeamResult) -> None:
        pending.extend(minimal(f) for f in result.fixtures)

    probe.phase("process+write")
    for first in range(0, len(teams), batch):
        process_in_parallel(teams[first : first + batch], scraper, concurrency, keep_minimal)
        _write(engine, pending)
        pending.clear()
        probe.progress(min(first + batch, len(teams)), len(teams))
    return len(teams)


def run(
    items: int = 2_000,
    batch: int = 10,
    concurrency: int = 3,
    latency: float = 0.0,
    variant: str = "accumulate",
    seed: int = 1,
    db: str = "",
) -> int:
    """Process `items` teams with parallel workers, ten ~5 KB fixtures each (incident 004)."""
    common.check_int("items", items, minimum=0)
    common.check_int("batch", batch)
    common.check_int("concurrency", concurrency)
    delay = common.check_seconds("latency", latency)
    process = {"accumulate": _accumulate, "stream": _stream}[
        common.check_variant(variant, VARIANTS)
    ]
    common.check_int("seed", seed, minimum=0)
    with open_database(db) as engine:
        with probe.phase("prepare"):
            reset(engine, Fixture)
        return process(engine, range(items), batch, lambda t: scrape(seed, t, delay), concurrency)
