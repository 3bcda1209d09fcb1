"""The hot write path of the ledger: one batch, one transaction, straight through the driver.

Settlements are the one write every request makes, so they skip the ORM layer: on SQLite a
dedicated thread owns one sqlite3 connection (one thread hop per batch instead of one per
statement); on PostgreSQL an asyncpg pool runs the batch as two pipelined executemany calls.
Both insert with ON CONFLICT DO NOTHING, so a retried batch never doubles an entry.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import asyncpg
from sqlalchemy.engine import make_url

from tollway.db import tables

Row = tuple[Any, ...]

ENTRY_COLUMNS = tuple(c.name for c in tables.ledger_entries.columns if c.name != "id")
GENERATION_COLUMNS = tuple(c.name for c in tables.generations.columns)


def insert_sql(table: str, columns: Sequence[str], placeholder: str) -> str:
    marks = ", ".join(placeholder.format(index=i + 1) for i in range(len(columns)))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT DO NOTHING"


class BatchSink(Protocol):
    async def write(self, entries: Sequence[Row], generations: Sequence[Row]) -> None: ...

    async def close(self) -> None: ...


class SqliteSink:
    def __init__(self, path: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-sqlite")
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._entry_sql = insert_sql("ledger_entries", ENTRY_COLUMNS, "?")
        self._generation_sql = insert_sql("generations", GENERATION_COLUMNS, "?")

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=10000")
            self._connection = connection
        return self._connection

    def _write(self, entries: Sequence[Row], generations: Sequence[Row]) -> None:
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            if generations:
                connection.executemany(self._generation_sql, generations)
            if entries:
                connection.executemany(self._entry_sql, entries)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    async def write(self, entries: Sequence[Row], generations: Sequence[Row]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write, entries, generations)

    async def close(self) -> None:
        def shut() -> None:
            if self._connection is not None:
                self._connection.close()

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)


class PostgresSink:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._entry_sql = insert_sql("ledger_entries", ENTRY_COLUMNS, "${index}")
        self._generation_sql = insert_sql("generations", GENERATION_COLUMNS, "${index}")

    async def write(self, entries: Sequence[Row], generations: Sequence[Row]) -> None:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=2, command_timeout=10)
        async with self._pool.acquire() as connection, connection.transaction():
            if generations:
                await connection.executemany(self._generation_sql, generations)
            if entries:
                await connection.executemany(self._entry_sql, entries)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


def sink_for(database_url: str) -> BatchSink:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return SqliteSink(url.database or "")
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return PostgresSink(dsn)
