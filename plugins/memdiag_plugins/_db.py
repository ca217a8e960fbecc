"""The engines' database: a SQLite file in a fresh temporary directory, or any URL given.

`db=""` (the default) creates a SQLite file that is deleted after the run;
`db=sqlite:///path.db` keeps it for inspection; `db=postgresql://user:pw@host/name` goes
through psycopg 3. The connection is opened at once with a short timeout, so an unreachable
server is an error within seconds, never a hang.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

CONNECT_TIMEOUT_S = 5


def _url(db: str, tmpdir: str | None) -> str:
    if not db:
        return f"sqlite:///{tmpdir}/engine.db"
    if db.startswith("postgresql://") or db.startswith("postgres://"):
        # Plain postgresql:// would mean psycopg2, which is not installed; psycopg 3 is.
        return "postgresql+psycopg://" + db.split("://", 1)[1]
    if db.startswith("sqlite://") or db.startswith("postgresql+psycopg://"):
        return db
    raise ValueError(
        f"db must be empty (a temporary SQLite file), sqlite:///PATH or "
        f"postgresql://USER:PASSWORD@HOST/NAME (got {db!r})"
    )


def _create(url: str) -> Engine:
    try:
        dialect = make_url(url).get_backend_name()
    except ArgumentError as exc:
        raise ValueError(f"db is not a database URL: {exc}") from None
    if dialect == "sqlite":
        engine = create_engine(url, connect_args={"timeout": CONNECT_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    # WAL with synchronous=NORMAL: a commit survives the process being killed (what the
    # resume test does) without an fsync per page, which would dominate the run time.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@contextmanager
def open_database(db: str) -> Iterator[Engine]:
    """Yield a connected Engine for `db`; a temporary SQLite file is removed afterwards.

    ValueError for a malformed URL, ConnectionError when the database cannot be reached.
    """
    if not isinstance(db, str):
        raise ValueError(f"db must be a database URL or empty (got {db!r})")
    tmpdir = None if db else tempfile.mkdtemp(prefix="memdiag-engine-")
    try:
        engine = _create(_url(db, tmpdir))
        try:
            with engine.connect():
                pass
        except SQLAlchemyError as exc:
            shown = engine.url.render_as_string(hide_password=True)
            raise ConnectionError(f"cannot connect to {shown}: {exc.__cause__ or exc}") from None
        try:
            yield engine
        finally:
            engine.dispose()
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    key: str,
    increment: str | None = None,
) -> None:
    """Insert `rows`, updating the row already stored under the same `key`.

    `increment` names a counter column raised by one on every overwrite: how the tests see
    that a resumed sync wrote no player twice.
    """
    if not rows:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table)
    updates: dict[str, Any] = {
        c.name: stmt.excluded[c.name] for c in table.columns if c.name not in (key, increment)
    }
    if increment:
        updates[increment] = table.c[increment] + 1
    conn.execute(stmt.on_conflict_do_update(index_elements=[key], set_=updates), list(rows))
