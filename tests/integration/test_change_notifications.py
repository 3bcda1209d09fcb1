"""PostgreSQL + Redis: processes learn of other writers' changes by notification, not by polling.

The safety poll is set to ten minutes here, so anything seen within a second arrived through LISTEN/NOTIFY; an
idle process sends PostgreSQL nothing at all; a listening connection that is killed is opened again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import asyncpg
import httpx
import pytest
import redis

from tests.conftest import POSTGRES_ADMIN_DSN, make_database_url
from tests.support import Account, GatewayServer, nanos, run_cli, start_gateway
from tollway.changes.notifications import APPLICATION_NAME

pytestmark = pytest.mark.postgres

REDIS_URL = "redis://127.0.0.1:6379/11"  # a database of its own: flushed here
BOUND_S = 1.0  # the documented bound is one poll interval (0.1 s in tests); slack for a loaded machine


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[GatewayServer]]:
    directory = tmp_path_factory.mktemp("notifications")
    redis.Redis.from_url(REDIS_URL).flushdb()
    urls = make_database_url("postgres", directory)
    database = next(urls)
    env = {"TOLLWAY_REDIS_URL": REDIS_URL, "TOLLWAY_LEDGER_SAFETY_POLL_SECONDS": "600"}
    servers = [start_gateway(database, None, directory, env=env) for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()
    for _ in urls:
        pass


async def _query(sql: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


def activity(server: GatewayServer) -> dict[int, tuple[str, object]]:
    """Every connection to the gateways' database: pid -> (application name, when its last query began)."""
    rows = asyncio.run(
        _query(
            "SELECT pid, application_name, query_start FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            server.database_url.rsplit("/", 1)[1],
        )
    )
    return {row["pid"]: (row["application_name"], row["query_start"]) for row in rows}


def listeners(server: GatewayServer) -> set[int]:
    return {pid for pid, (name, _start) in activity(server).items() if name == APPLICATION_NAME}


def within(bound_s: float, condition: Callable[[], bool]) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < bound_s, f"not seen within {bound_s} s"
        time.sleep(0.02)
    return time.monotonic() - started


def key_status(server: GatewayServer, key: str) -> int:
    return httpx.get(server.api + "/key", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code


def credits_nanos(server: GatewayServer, account: Account) -> int:
    response = server.get("/credits", account.key)
    assert response.status_code == 200, response.text
    return nanos(response.json()["data"]["total_credits"])


def disable_elsewhere(servers: list[GatewayServer], owner: Account) -> None:
    """A key every process accepts is disabled through the first; the second refuses it within the bound."""
    created = servers[0].post("/keys", owner.key, {"name": "target"}).json()
    key, key_hash = created["key"], created["data"]["hash"]
    assert [key_status(server, key) for server in servers] == [200, 200]
    patched = httpx.patch(
        servers[0].api + f"/keys/{key_hash}",
        json={"disabled": True},
        headers={"Authorization": f"Bearer {owner.key}"},
        timeout=10,
    )
    assert patched.status_code == 200, patched.text
    within(BOUND_S, lambda: key_status(servers[1], key) == 401)


def test_an_idle_process_sends_postgresql_nothing(pair: list[GatewayServer]) -> None:
    within(10, lambda: len(listeners(pair[0])) == 2)
    time.sleep(0.5)  # start-up reads are done
    before = activity(pair[0])
    time.sleep(1.5)  # fifteen poll intervals
    assert activity(pair[0]) == before


def test_a_key_disabled_on_one_process_is_refused_by_the_other_at_once(pair: list[GatewayServer]) -> None:
    owner = pair[0].new_account("5", management=True)
    for _ in range(3):
        disable_elsewhere(pair, owner)


def test_credits_granted_from_the_cli_reach_the_running_processes(pair: list[GatewayServer]) -> None:
    account = pair[0].new_account("1")
    before = [credits_nanos(server, account) for server in pair]  # figures loaded in Redis
    assert before == [nanos("1"), nanos("1")]
    run_cli("credits", "grant", account.id, "2", database_url=pair[0].database_url)
    granted = time.monotonic()
    within(BOUND_S + 3, lambda: all(credits_nanos(server, account) == nanos("3") for server in pair))
    assert time.monotonic() - granted < BOUND_S


def test_a_killed_listening_connection_is_opened_again(pair: list[GatewayServer]) -> None:
    owner = pair[0].new_account("5", management=True)
    within(10, lambda: len(listeners(pair[0])) == 2)
    killed = listeners(pair[0])
    asyncio.run(_query("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", list(killed)))
    within(10, lambda: len(listeners(pair[0])) == 2 and not listeners(pair[0]) & killed)
    disable_elsewhere(pair, owner)
