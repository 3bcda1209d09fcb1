"""Schema migrations: an ordered list of steps, each applied once and recorded in schema_migrations.

Every command and `tollway serve` call `migrate` at start; concurrent starters are serialised by an
advisory lock on PostgreSQL and by SQLite's write lock.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.db import tables
from tollway.db.revisions import continue_after_existing

Migration = Callable[[AsyncConnection], Awaitable[None]]

_ADVISORY_LOCK_ID = 0x7011A7


async def _initial_schema(connection: AsyncConnection) -> None:
    await connection.run_sync(tables.metadata.create_all, checkfirst=True)


async def _rate_limits(connection: AsyncConnection) -> None:
    await connection.run_sync(tables.rate_limits.create, checkfirst=True)


async def _refusals(connection: AsyncConnection) -> None:
    await connection.run_sync(tables.refusals.create, checkfirst=True)


async def _payments(connection: AsyncConnection) -> None:
    for table in (tables.payments, tables.payment_events, tables.auto_recharge):
        await connection.run_sync(table.create, checkfirst=True)


async def _dashboard(connection: AsyncConnection) -> None:
    for table in (tables.users, tables.web_sessions, tables.settings_store):
        await connection.run_sync(table.create, checkfirst=True)


_APPEND_ONLY_SQLITE = (
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_{verb} BEFORE {verb} ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
)
_APPEND_ONLY_POSTGRES = "CREATE OR REPLACE RULE audit_log_no_{verb} AS ON {verb} TO audit_log DO INSTEAD NOTHING"


async def _dashboard_security(connection: AsyncConnection) -> None:
    for table in (tables.invites, tables.audit_log):
        await connection.run_sync(table.create, checkfirst=True)
    # Session ids are now stored hashed: sessions kept in clear are dropped (their users sign in again).
    await connection.execute(tables.web_sessions.delete())
    template = _APPEND_ONLY_POSTGRES if connection.dialect.name == "postgresql" else _APPEND_ONLY_SQLITE
    for verb in ("UPDATE", "DELETE"):
        await connection.execute(text(template.format(verb=verb)))


async def _change_revisions(connection: AsyncConnection) -> None:
    await connection.run_sync(tables.change_revisions.create, checkfirst=True)
    await continue_after_existing(connection)


async def _presets_and_sessions(connection: AsyncConnection) -> None:
    await connection.run_sync(tables.presets.create, checkfirst=True)
    await _add_missing_columns(
        connection, tables.generations.name, (("session_id", "VARCHAR(256)"), ("preset_id", "VARCHAR(40)"))
    )


async def _add_missing_columns(connection: AsyncConnection, table: str, columns: tuple[tuple[str, str], ...]) -> None:
    """ALTER TABLE for the columns a database made by an earlier version lacks (a new one has them all)."""
    existing = await connection.run_sync(lambda sync: {column["name"] for column in inspect(sync).get_columns(table)})
    for name, kind in columns:
        if name not in existing:
            await connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))


async def _usage_kinds(connection: AsyncConnection) -> None:
    await _add_missing_columns(
        connection,
        tables.generations.name,
        (
            ("tokens_cache_write", "INTEGER NOT NULL DEFAULT 0"),
            ("tokens_cache_write_1h", "INTEGER NOT NULL DEFAULT 0"),
            ("images", "INTEGER NOT NULL DEFAULT 0"),
            ("web_searches", "INTEGER NOT NULL DEFAULT 0"),
            ("usage_estimated", "BOOLEAN NOT NULL DEFAULT FALSE"),
            ("hold_nanos", "BIGINT NOT NULL DEFAULT 0"),
            ("hold_overrun_nanos", "BIGINT NOT NULL DEFAULT 0"),
            ("cost_details", "TEXT"),
        ),
    )


async def _generations_by_key(connection: AsyncConnection) -> None:
    index = next(i for i in tables.generations.indexes if i.name == "ix_generations_key_time")
    await connection.run_sync(index.create, checkfirst=True)


MIGRATIONS: list[tuple[int, str, Migration]] = [
    (1, "initial schema", _initial_schema),
    (2, "rate limits per account and key", _rate_limits),
    (3, "refusal log", _refusals),
    (4, "payments, webhook events, auto-recharge", _payments),
    (5, "dashboard users and sessions", _dashboard),
    (6, "invites, audit log, hashed session ids", _dashboard_security),
    (7, "revisions of key and limit changes from one sequence", _change_revisions),
    (8, "presets; the session and preset of each generation", _presets_and_sessions),
    (
        9,
        "every usage kind of a generation: cache writes, images, searches, estimated usage, hold and cost split",
        _usage_kinds,
    ),
    (10, "generations by key and time (a key's last use, activity per key)", _generations_by_key),
]


def latest_version() -> int:
    return MIGRATIONS[-1][0]


async def _applied_versions(connection: AsyncConnection) -> set[int]:
    has_table = await connection.run_sync(lambda sync: inspect(sync).has_table(tables.schema_migrations.name))
    if not has_table:
        await connection.run_sync(tables.schema_migrations.create, checkfirst=True)
        return set()
    rows = await connection.execute(select(tables.schema_migrations.c.version))
    return {row[0] for row in rows}


async def migrate(engine: AsyncEngine) -> list[int]:
    """Apply every migration not yet recorded; returns the versions applied now."""
    applied_now: list[int] = []
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK_ID})"))
        else:
            # Take SQLite's write lock first so two starting processes do not both create tables.
            await connection.execute(text("CREATE TABLE IF NOT EXISTS _migration_lock (id INTEGER)"))
        done = await _applied_versions(connection)
        for version, _description, step in MIGRATIONS:
            if version in done:
                continue
            await step(connection)
            await connection.execute(
                tables.schema_migrations.insert().values(version=version, applied_at_us=int(time.time() * 1_000_000))
            )
            applied_now.append(version)
    return applied_now
