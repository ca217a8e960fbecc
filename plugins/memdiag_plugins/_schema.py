"""The tables the reference engines write, one set per engine so they can share a database.

The import engine goes through the ORM (its incident is about what an ORM session keeps);
the others write with Core statements.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Engine, Float, ForeignKey, Integer, String, Table, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


# player-sync ---------------------------------------------------------------------------


class SyncedPlayer(Base):
    """A player written by the sync; `writes` counts overwrites (1 = written once)."""

    __tablename__ = "players"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2))
    rating: Mapped[float] = mapped_column(Float)
    profile: Mapped[str] = mapped_column(Text)
    writes: Mapped[int] = mapped_column(Integer, default=1)


class Checkpoint(Base):
    """Where a sync stopped: the next record to fetch, committed with the page before it."""

    __tablename__ = "checkpoints"
    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    next_record: Mapped[int] = mapped_column(Integer)


# import --------------------------------------------------------------------------------


class ImportedPlayer(Base):
    __tablename__ = "import_players"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(120))
    country: Mapped[str] = mapped_column(String(2))
    rating: Mapped[float] = mapped_column(Float)
    profile: Mapped[dict[str, object]] = mapped_column(JSON)


class Game(Base):
    __tablename__ = "games"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tournament: Mapped[str] = mapped_column(String(120))
    played_at: Mapped[str] = mapped_column(String(40))
    result: Mapped[str] = mapped_column(String(20))
    participants: Mapped[list[Participant]] = relationship(back_populates="game")


class Participant(Base):
    __tablename__ = "game_participants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    game_id: Mapped[int] = mapped_column(ForeignKey("games.id"))
    player_id: Mapped[int] = mapped_column(Integer)
    seat: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(20))
    score: Mapped[float] = mapped_column(Float)
    details: Mapped[dict[str, object]] = mapped_column(JSON)
    game: Mapped[Game] = relationship(back_populates="participants")


# migration -----------------------------------------------------------------------------


class SourceItem(Base):
    __tablename__ = "source_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    match_value: Mapped[str] = mapped_column(String(60))
    title: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    body: Mapped[dict[str, object]] = mapped_column(JSON)


class TargetItem(Base):
    __tablename__ = "target_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    match_value: Mapped[str] = mapped_column(String(60), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    body: Mapped[dict[str, object]] = mapped_column(JSON)


# record-sync ---------------------------------------------------------------------------


class SyncRecord(Base):
    __tablename__ = "sync_records"
    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    cycle: Mapped[int] = mapped_column(Integer)
    value: Mapped[str] = mapped_column(Text)


# parallel ------------------------------------------------------------------------------


class Fixture(Base):
    __tablename__ = "fixtures"
    game_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    team: Mapped[int] = mapped_column(Integer)
    away: Mapped[int] = mapped_column(Integer)
    kickoff: Mapped[str] = mapped_column(String(40))
    venue: Mapped[str] = mapped_column(String(120))


def table(model: type[Base]) -> Table:
    """Return the Core table of `model`, for Core statements."""
    return Base.metadata.tables[model.__tablename__]


def reset(engine: Engine, *models: type[Base]) -> None:
    """Drop and create the tables of `models`: a rerun on the same database ends the same."""
    chosen = [table(model) for model in models]
    Base.metadata.drop_all(engine, tables=chosen)
    Base.metadata.create_all(engine, tables=chosen)
