"""Deterministic synthetic records of realistic size, the same for the same seed and id.

Sizes as JSON (measured, see docs/engines.md): a player about 1 KB, a game with its ten
participants about 3 KB, a migration item about 2 KB, a fixture about 5 KB. Text is drawn
from a fixed word list, so generating is cheap and the data compresses no better than real
prose would.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

WORDS = [
    "table",
    "night",
    "club",
    "final",
    "league",
    "round",
    "seat",
    "vote",
    "sheriff",
    "don",
    "civilian",
    "mafia",
    "win",
    "loss",
    "draw",
    "bonus",
    "penalty",
    "foul",
    "judge",
    "host",
    "city",
    "cup",
    "open",
    "spring",
    "autumn",
    "winter",
    "summer",
    "series",
    "rating",
    "points",
    "streak",
    "best",
    "worst",
    "first",
    "last",
    "early",
    "late",
    "quick",
    "slow",
    "calm",
    "loud",
    "clever",
]
COUNTRIES = ("RU", "UA", "KZ", "BY", "GE", "AM", "DE", "PL", "LT", "LV", "EE", "US")
ROLES = ("civilian",) * 6 + ("mafia", "mafia", "don", "sheriff")
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)

Record = dict[str, Any]


def text(rng: random.Random, words: int) -> str:
    """Return `words` words of filler prose."""
    return " ".join(rng.choices(WORDS, k=words))


def player(rng: random.Random, pid: int, invalid: bool = False) -> Record:
    """Return one player as a source API sends it (about 1 KB of JSON).

    An `invalid` player has no email: the record the sync's validation rejects.
    """
    name = f"{text(rng, 1).title()} {text(rng, 1).title()}"
    return {
        "id": pid,
        "name": name,
        "nickname": f"{text(rng, 1)}_{pid}",
        "email": None if invalid else f"player{pid}@example.org",
        "country": rng.choice(COUNTRIES),
        "rating": round(rng.uniform(800, 2400), 2),
        "joined": (EPOCH + timedelta(days=rng.randrange(2000))).isoformat(),
        "bio": text(rng, 110),
        "stats": {
            "games": rng.randrange(2000),
            "wins": rng.randrange(1000),
            "best_move": rng.randrange(100),
            "roles": {role: rng.randrange(300) for role in ("civilian", "mafia", "don")},
        },
        "tags": rng.choices(WORDS, k=8),
    }


def game(rng: random.Random, gid: int, players: int) -> Record:
    """Return one game with its ten participants and their nested data (about 3 KB)."""
    seats = rng.sample(range(players), 10) if players >= 10 else list(range(10))
    roles = rng.sample(ROLES, len(ROLES))
    return {
        "id": gid,
        "tournament": f"{text(rng, 2).title()} Cup",
        "played_at": (EPOCH + timedelta(minutes=rng.randrange(2_000_000))).isoformat(),
        "table": rng.randrange(1, 40),
        "result": rng.choice(("civilians", "mafia")),
        "participants": [
            {
                "player_id": seats[seat] % max(players, 1),
                "seat": seat + 1,
                "role": roles[seat],
                "score": round(rng.uniform(-1, 3), 2),
                "extra": {"bonus": round(rng.random(), 2), "fouls": rng.randrange(4)},
                "notes": text(rng, 25),
            }
            for seat in range(10)
        ],
    }


def item(rng: random.Random, iid: int, match: str) -> Record:
    """Return one migration item: ten fields, nested metadata, datetimes (about 2 KB)."""
    created = EPOCH + timedelta(seconds=rng.randrange(100_000_000))
    return {
        "item_id": iid,
        "match_value": match,
        "title": text(rng, 6),
        "status": rng.choice(("open", "closed", "archived")),
        "owner": f"{text(rng, 1)}@example.org",
        "amount": round(rng.uniform(0, 10_000), 2),
        "created_at": created,
        "updated_at": created + timedelta(hours=rng.randrange(10_000)),
        "description": text(rng, 200),
        "metadata": {
            "app_id": 42,
            "revision": rng.randrange(50),
            "labels": rng.choices(WORDS, k=6),
            "fields": [{"field_id": f, "value": text(rng, 3)} for f in range(8)],
        },
    }


def fixture(rng: random.Random, team: int, number: int) -> Record:
    """Return one scraped fixture with line-ups, events and stats (about 5 KB of JSON)."""

    def lineup() -> list[Record]:
        return [
            {"name": text(rng, 2).title(), "number": n + 1, "position": rng.choice(WORDS)}
            for n in range(11)
        ]

    return {
        "gameID": team * 100 + number,
        "id": f"fx-{team}-{number}",
        "home": team,
        "away": rng.randrange(10_000),
        "kickoff": (EPOCH + timedelta(hours=rng.randrange(50_000))).isoformat(),
        "venue": text(rng, 3).title(),
        "lineups": {"home": lineup(), "away": lineup()},
        "events": [
            {"minute": rng.randrange(90), "kind": rng.choice(WORDS), "note": text(rng, 8)}
            for _ in range(16)
        ],
        "stats": {k: rng.randrange(100) for k in WORDS[:20]},
        "report": text(rng, 260),
    }
