"""Builds SQLAlchemy engines for Lyceum's two backends: a SQLite file, or PostgreSQL via psycopg 3."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry

from lyceum_core.errors import InvalidArgument

# Applied to every new SQLite connection. busy_timeout (first, so it covers the others) makes a second writer
# wait for the lock instead of failing at once; WAL lets readers run beside one writer; foreign keys are off
# by default in SQLite.
SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout=5000",
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
)


def create_engine(url: str) -> Engine:
    """An engine for `sqlite:///path` or `postgresql[+psycopg]://...`; anything else is InvalidArgument."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        return _postgres_engine(parsed)
    raise InvalidArgument(f"unsupported database backend {backend!r}", field="url")


def _sqlite_engine(url: URL) -> Engine:
    if url.get_driver_name() != "pysqlite":
        raise InvalidArgument(f"unsupported SQLite driver {url.drivername!r}", field="url")
    if not url.database or url.database == ":memory:":
        raise InvalidArgument("SQLite needs a file path: sqlite:///path/to/lyceum.db", field="url")
    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    # Pooled connections are shared across threads, one thread at a time.
    engine = sa.create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _set_sqlite_pragmas)
    return engine


def _set_sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _postgres_engine(url: URL) -> Engine:
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    elif url.drivername != "postgresql+psycopg":
        raise InvalidArgument(f"unsupported PostgreSQL driver {url.drivername!r}; use psycopg", field="url")
    # pre-ping replaces connections the server dropped (restarts, idle timeouts) before they are used.
    return sa.create_engine(url, pool_pre_ping=True)
