"""The PostgreSQL engine hands out live connections without a ping round trip on every checkout."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import POSTGRES_ADMIN_DSN, make_database_url
from tollway.db import engine as engine_module
from tollway.db.engine import create_engine

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    urls = make_database_url("postgres", tmp_path_factory.mktemp("engine"))
    yield next(urls)
    for _ in urls:
        pass


async def _read(engine: AsyncEngine) -> Any:
    """One read as the stores make it; returns the asyncpg connection it ran on."""
    async with engine.connect() as connection:
        assert (await connection.execute(text("SELECT 1"))).scalar() == 1
        raw = await connection.get_raw_connection()
        return raw.driver_connection


def _statements(driver: Any) -> int:
    """Statements this asyncpg connection sent (each one round trip): BEGIN, queries, ROLLBACK, pings."""
    return int(driver._protocol.queries_count)


async def _round_trips_per_read(url: str) -> tuple[int, int]:
    engine = create_engine(url)
    try:
        driver = await _read(engine)  # connects and prepares
        before = _statements(driver)
        assert await _read(engine) is driver
        hot = _statements(driver) - before
        engine_module._PING_AFTER_IDLE_S = 0.0  # now every checkout counts as idle
        before = _statements(driver)
        await _read(engine)
        return hot, _statements(driver) - before
    finally:
        await engine.dispose()


def test_a_read_costs_begin_query_rollback_and_no_ping(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "_PING_AFTER_IDLE_S", engine_module._PING_AFTER_IDLE_S)
    hot, idle = asyncio.run(_round_trips_per_read(database))
    assert hot == 3  # pool_pre_ping made it 6: its own BEGIN, ping and ROLLBACK on every checkout
    assert idle == 4  # a connection idle for a while is pinged once


async def _terminate_others(database_name: str) -> int:
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                database_name,
            )
        )
    finally:
        await connection.close()


async def _survives_server_restart(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as first, engine.connect() as second:  # two pooled connections
            for connection in (first, second):
                await connection.execute(text("SELECT 1"))
        driver = await _read(engine)
        closed = asyncio.Event()
        driver.add_termination_listener(lambda _connection: closed.set())
        assert await _terminate_others(url.rsplit("/", 1)[1]) == 2  # what a restart does to every backend
        await asyncio.wait_for(closed.wait(), 5)  # PostgreSQL says so before closing; asyncpg reads it
        for _ in range(3):  # no error: each closed connection is replaced at checkout
            assert await _read(engine) is not driver
    finally:
        await engine.dispose()


def test_connections_postgresql_closed_are_replaced_without_an_error(database: str) -> None:
    asyncio.run(_survives_server_restart(database))
