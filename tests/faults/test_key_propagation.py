"""Key changes reach every process: a key disabled while other keys are edited is refused everywhere within 1 s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from tests.conftest import make_database_url
from tests.support import Account, GatewayServer, start_gateway

pytestmark = pytest.mark.postgres

TRIALS = 10
CONCURRENT_EDITS = 24


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[GatewayServer]]:
    directory = tmp_path_factory.mktemp("propagation")
    urls = make_database_url("postgres", directory)
    database = next(urls)
    servers = [start_gateway(database, None, directory) for _ in range(3)]
    yield servers
    for server in servers:
        server.stop()
    for _ in urls:
        pass


def key_status(server: GatewayServer, key: str) -> int:
    return httpx.get(server.api + "/key", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code


async def edit_and_disable(
    servers: list[GatewayServer], owner: Account, others: list[str], target_hash: str
) -> tuple[int, float]:
    """Many concurrent PATCHes of other keys, spread over the processes, with the disable among them."""
    headers = {"Authorization": f"Bearer {owner.key}"}
    async with httpx.AsyncClient(timeout=30, headers=headers) as client:

        async def patch(index: int, key_hash: str, body: dict[str, object]) -> int:
            server = servers[index % len(servers)]
            return (await client.patch(server.api + f"/keys/{key_hash}", json=body)).status_code

        edits = [patch(i, others[i % len(others)], {"name": f"edit-{i}"}) for i in range(CONCURRENT_EDITS)]
        middle = CONCURRENT_EDITS // 2
        jobs = [*edits[:middle], patch(1, target_hash, {"disabled": True}), *edits[middle:]]
        statuses = await asyncio.gather(*jobs)
    assert set(statuses) == {200}, statuses
    return statuses[middle], time.monotonic()


def test_disabled_key_is_refused_by_every_process_within_a_second_under_concurrent_edits(
    processes: list[GatewayServer],
) -> None:
    owner = processes[0].new_account("5", management=True)
    others = [processes[0].post("/keys", owner.key, {"name": f"other-{i}"}).json()["data"]["hash"] for i in range(6)]
    late: list[tuple[int, int, float]] = []
    for trial in range(TRIALS):
        created = processes[trial % 3].post("/keys", owner.key, {"name": f"target-{trial}"}).json()
        key, key_hash = created["key"], created["data"]["hash"]
        for server in processes:  # every process has the key cached as usable
            assert key_status(server, key) == 200
        _status, disabled_at = asyncio.run(edit_and_disable(processes, owner, others, key_hash))
        pending = set(range(len(processes)))
        while pending and time.monotonic() - disabled_at < 1.0:
            for index in list(pending):
                if key_status(processes[index], key) == 401:
                    pending.discard(index)
        for index in pending:
            late.append((trial, index, time.monotonic() - disabled_at))
        # Refused for good, not just once.
        time.sleep(0.3)
        assert [key_status(server, key) for server in processes] == [401, 401, 401]
    assert not late, f"(trial, process, seconds) still serving a disabled key after 1 s: {late}"


def test_concurrent_key_edits_never_share_a_revision(processes: list[GatewayServer]) -> None:
    owner = processes[0].new_account("5", management=True)
    hashes = [processes[0].post("/keys", owner.key, {"name": f"k-{i}"}).json()["data"]["hash"] for i in range(4)]

    async def edits() -> None:
        async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {owner.key}"}) as client:
            await asyncio.gather(
                *[
                    client.patch(processes[i % 3].api + f"/keys/{hashes[i % 4]}", json={"name": f"n{i}"})
                    for i in range(40)
                ]
            )

    asyncio.run(edits())

    async def revisions() -> list[int]:
        dsn = processes[0].database_url
        connection = await asyncpg.connect(dsn)
        try:
            rows = await connection.fetch("SELECT revision FROM api_keys")
            log = await connection.fetch("SELECT id FROM change_revisions")
        finally:
            await connection.close()
        assert len({r["id"] for r in log}) == len(log)
        return [int(r["revision"]) for r in rows]

    values = asyncio.run(revisions())
    assert len(values) == len(set(values)), "two keys share a revision"


async def limit_among_edits(servers: list[GatewayServer], owner: Account, others: list[str], target_hash: str) -> None:
    """Rate-limit edits of other keys on every process, and a one-a-day limit on the target among them."""
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {owner.key}"}) as client:
        other_limit = {"rate_limit": {"concurrency": 5}}
        jobs = [client.patch(servers[i % 3].api + f"/keys/{others[i % 4]}", json=other_limit) for i in range(12)]
        target_limit = {"rate_limit": {"requests": 1, "per": "day"}}
        jobs.insert(6, client.patch(servers[2].api + f"/keys/{target_hash}", json=target_limit))
        statuses = [r.status_code for r in await asyncio.gather(*jobs)]
    assert set(statuses) == {200}, statuses


def test_a_rate_limit_set_among_concurrent_edits_binds_on_every_process_within_a_second(
    processes: list[GatewayServer],
) -> None:
    owner = processes[0].new_account("5", management=True)
    others = [processes[0].post("/keys", owner.key, {"name": f"rl-other-{i}"}).json()["data"]["hash"] for i in range(4)]
    echo = {"model": "tollway/offline-small", "max_tokens": 2, "messages": [{"role": "user", "content": "/echo a"}]}
    for trial in range(3):
        created = processes[0].post("/keys", owner.key, {"name": f"rl-target-{trial}"}).json()
        key, key_hash = created["key"], created["data"]["hash"]
        for server in processes:
            assert server.post("/chat/completions", key, echo).status_code == 200

        asyncio.run(limit_among_edits(processes, owner, others, key_hash))
        set_at = time.monotonic()
        pending = set(range(len(processes)))
        while pending and time.monotonic() - set_at < 1.0:
            for index in list(pending):
                if processes[index].post("/chat/completions", key, echo).status_code == 429:
                    pending.discard(index)
        assert not pending, f"trial {trial}: processes {sorted(pending)} still ignore the new limit after 1 s"
