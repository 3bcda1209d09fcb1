"""Database engines: one URL setting picks SQLite (embedded default) or PostgreSQL (ledger of record at scale)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

# A pooled PostgreSQL connection unused for longer than this is pinged (one round trip) before it is handed out.
_PING_AFTER_IDLE_S = 10.0


class DatabaseUrlError(ValueError):
    pass


def async_url(url: str) -> str:
    """Map the URL users write (sqlite:///x.db, postgresql://...) to the async driver SQLAlchemy needs."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a terse message
        raise DatabaseUrlError(f"not a database URL: {url!r} (try sqlite:///./tollway.db)") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise DatabaseUrlError(f"unsupported database {backend!r}: use sqlite:///FILE or postgresql://...")


def driver_dsn(url: str) -> str:
    """The DSN asyncpg takes, for the connections Tollway opens beside the engine (settlements, notifications)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the single writer; NORMAL sync is durable across process crashes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    target = async_url(url)
    parsed = make_url(target)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(target, pool_size=5, max_overflow=5)
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        return engine
    # No pool_pre_ping: SQLAlchemy's costs three round trips (BEGIN, a query, ROLLBACK) on every checkout,
    # 15 of the 30 round trips of a change poll. Instead a connection asyncpg already knows is closed (PostgreSQL
    # restarted: it says so before closing) is replaced for free, and only one idle for a while is pinged.
    # LIFO reuses the most recent connection, so the others idle and are pinged before their next use.
    engine = create_async_engine(target, pool_size=10, max_overflow=10, pool_timeout=5, pool_use_lifo=True)
    event.listen(engine.sync_engine, "checkin", _note_checkin)
    event.listen(engine.sync_engine, "checkout", _check_on_checkout)
    return engine


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _check_on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Hand out a live connection; raising DisconnectionError makes the pool connect anew (up to twice)."""
    driver = dbapi_connection.driver_connection
    if driver.is_closed():
        raise exc.DisconnectionError("the PostgreSQL connection was closed")
    checked_in_at = record.info.get("checked_in_at")
    if checked_in_at is None or time.monotonic() - checked_in_at < _PING_AFTER_IDLE_S:
        return
    try:
        await_only(driver.execute("SELECT 1"))
    except Exception as error:  # any failure: the pool tries a new connection
        raise exc.DisconnectionError(f"the PostgreSQL connection did not answer: {error}") from error
