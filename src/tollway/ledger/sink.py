"""The hot write path of the ledger: one batch, one transaction, straight through the driver.

Settlements are the one write every request makes, so they skip the ORM layer: on SQLite a
dedicated thread owns one sqlite3 connection (one thread hop per batch instead of one per
statement); on PostgreSQL an asyncpg pool runs the batch as one statement (see `batch_sql`).
Both insert with ON CONFLICT DO NOTHING, so a retried batch never doubles an entry.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from tollway.db import tables
from tollway.db.engine import driver_dsn

if TYPE_CHECKING:  # the driver is imported where a pool is made: SQLite and the command line never load it
    import asyncpg

Row = tuple[Any, ...]

_WAL_SIZE_LIMIT_BYTES = 64 << 20
_RESTART_AFTER_FRAMES = 16_384  # about 64 MB of write-ahead log at 4 KiB pages
_RESTART_WAIT_MS = 100
_WAITING_BUSY_TIMEOUT_MS = 10_000

ENTRY_COLUMNS = tuple(c.name for c in tables.ledger_entries.columns if c.name != "id")
GENERATION_COLUMNS = tuple(c.name for c in tables.generations.columns)


def insert_sql(table: str, columns: Sequence[str], placeholder: str) -> str:
    marks = ", ".join(placeholder.format(index=i + 1) for i in range(len(columns)))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT DO NOTHING"


class BatchSink(Protocol):
    async def write(self, entries: Sequence[Row], generations: Sequence[Row]) -> None: ...

    def changed_elsewhere(self) -> bool: ...

    async def checkpoint(self) -> None: ...

    async def close(self) -> None: ...


class SqliteSink:
    """Writes on the event loop's own thread: a WAL commit takes tens of microseconds, far less than
    the two thread wake-ups a hand-off costs. If another process holds the write lock (the CLI, a
    checkpoint), the batch moves to a helper thread that waits for the lock instead of the loop.
    """

    def __init__(self, path: str, synchronous: str = "NORMAL") -> None:
        self._path = path
        # NORMAL: a commit survives a crash of the process, not of the machine (the last commits before a
        # power loss may roll back). FULL: also a power loss, at one fsync per commit (see the README).
        self._synchronous = "FULL" if synchronous.upper() == "FULL" else "NORMAL"
        self._inline: sqlite3.Connection | None = None
        self._data_version: int | None = None
        self._waiting: sqlite3.Connection | None = None
        self._written_since_checkpoint = True  # other processes may have left a log behind
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-sqlite")
        self._entry_sql = insert_sql("ledger_entries", ENTRY_COLUMNS, "?")
        self._generation_sql = insert_sql("generations", GENERATION_COLUMNS, "?")

    def _connect(self, busy_timeout_ms: int) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={self._synchronous}")
        connection.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        # Checkpoints copy pages and fsync: tens of milliseconds that must not stall the loop.
        # They run on the helper thread instead (`checkpoint`).
        connection.execute("PRAGMA wal_autocheckpoint=0")
        connection.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT_BYTES}")
        return connection

    def _write(self, connection: sqlite3.Connection, entries: Sequence[Row], generations: Sequence[Row]) -> None:
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

    def _write_waiting(self, entries: Sequence[Row], generations: Sequence[Row]) -> None:
        if self._waiting is None:
            self._waiting = self._connect(busy_timeout_ms=_WAITING_BUSY_TIMEOUT_MS)
        self._write(self._waiting, entries, generations)

    async def write(self, entries: Sequence[Row], generations: Sequence[Row]) -> None:
        if self._inline is None:
            self._inline = self._connect(busy_timeout_ms=0)
        self._written_since_checkpoint = True
        try:
            self._write(self._inline, entries, generations)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write_waiting, entries, generations)

    def changed_elsewhere(self) -> bool:
        """Whether another connection committed since the last call (SQLite's data_version, microseconds).

        The poller asks this first and skips its queries when nothing changed, which keeps an idle
        gateway idle; our own inline commits do not count, as they come through this connection.
        """
        if self._inline is None:
            self._inline = self._connect(busy_timeout_ms=0)
        version = int(self._inline.execute("PRAGMA data_version").fetchone()[0])
        changed = version != self._data_version
        self._data_version = version
        return changed

    def _checkpoint(self) -> None:
        """Copy the log into the database; when it has grown, also make the next writer start it over.

        Under steady load a passive checkpoint never catches the log's tail, so the log never rewinds:
        it grew past 700 MB in two minutes of the bench, and commits got three times slower once it no
        longer fit the page cache. RESTART waits for the writer lock (the loop's writes move to this
        thread meanwhile) and guarantees the rewind; journal_size_limit then trims the file.
        """
        if self._waiting is None:
            self._waiting = self._connect(busy_timeout_ms=_WAITING_BUSY_TIMEOUT_MS)
        _busy, log_frames, _done = self._waiting.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if log_frames > _RESTART_AFTER_FRAMES:
            # RESTART holds writers off while it waits for readers: wait briefly, else try next round.
            self._waiting.execute(f"PRAGMA busy_timeout={_RESTART_WAIT_MS}")
            try:
                self._waiting.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            finally:
                self._waiting.execute(f"PRAGMA busy_timeout={_WAITING_BUSY_TIMEOUT_MS}")

    async def checkpoint(self) -> None:
        """Move the write-ahead log into the database file, off the event loop (and not at all when idle)."""
        if not self._written_since_checkpoint:
            return
        self._written_since_checkpoint = False
        await asyncio.get_running_loop().run_in_executor(self._executor, self._checkpoint)

    async def close(self) -> None:
        if self._inline is not None:
            self._inline.close()
        if self._waiting is not None:
            self._waiting.close()
        self._executor.shutdown(wait=True)


def _array_type(column: Any) -> str:
    """The PostgreSQL array type a column's values travel in (`varchar[]`, `bigint[]`, ...)."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return str(column.type.compile(dialect=dialect)).split("(")[0].lower() + "[]"


def batch_sql() -> str:
    """A whole batch as one statement: each table's rows as one array per column, unnested.

    One statement is one implicit transaction, so both tables take the batch or neither does, in a
    single round trip; `BEGIN`, two pipelined inserts and `COMMIT` were four, each waking the server.
    """
    index = itertools.count(1)

    def rows_of(table: Any, columns: Sequence[str]) -> str:
        arrays = ", ".join(f"${next(index)}::{_array_type(table.columns[name])}" for name in columns)
        return f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) ON CONFLICT DO NOTHING"

    generations = rows_of(tables.generations, GENERATION_COLUMNS)
    return f"WITH written AS ({generations}) {rows_of(tables.ledger_entries, ENTRY_COLUMNS)}"


def _columns(rows: Sequence[Row], width: int) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


async def _nothing_to_reset(_connection: asyncpg.Connection) -> None:
    """These connections run one kind of statement and set no session state (no LISTEN, advisory lock,
    cursor or SET), so the reset query asyncpg sends on every release, a round trip per batch, is skipped;
    asyncpg still rolls back a transaction left open."""


class PostgresSink:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._batch_sql = batch_sql()

    async def write(self, entries: Sequence[Row], generations: Sequence[Row]) -> None:
        if self._pool is None:
            import asyncpg

            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=2, command_timeout=10, reset=_nothing_to_reset
            )
        arguments = _columns(generations, len(GENERATION_COLUMNS)) + _columns(entries, len(ENTRY_COLUMNS))
        async with self._pool.acquire() as connection:
            await connection.execute(self._batch_sql, *arguments)

    def changed_elsewhere(self) -> bool:
        return True  # PostgreSQL has no cheap local signal; the poller always looks

    async def checkpoint(self) -> None:
        """PostgreSQL checkpoints on its own."""

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


def sink_for(database_url: str, sqlite_synchronous: str = "normal") -> BatchSink:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return SqliteSink(url.database or "", sqlite_synchronous)
    return PostgresSink(driver_dsn(database_url))
