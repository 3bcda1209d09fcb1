"""Several gateway processes on one PostgreSQL and one Redis: one balance, exact totals, crash safety."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_database_url
from tests.support import GatewayServer, free_port, nanos, run_cli, start_gateway

REDIS_URL = "redis://127.0.0.1:6379/0"
ECHO = {
    "model": "tollway/offline-small",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "/echo " + " ".join(f"w{i}" for i in range(30))}],
}
PER_REQUEST = 36 * 1000 + 20 * 2000


def flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter("tw:*"):
        client.delete(key)
    client.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[GatewayServer]]:
    flush_redis()
    urls = make_database_url("postgres", tmp_path)
    database = next(urls)
    env = {"TOLLWAY_REDIS_URL": REDIS_URL, "TOLLWAY_HOLD_TTL_SECONDS": "2", "TOLLWAY_OFFLINE_STREAM_DELAY_MS": "5"}
    servers = [start_gateway(database, None, tmp_path, env=env) for _ in range(3)]
    yield servers
    for server in servers:
        server.stop()
    for _ in urls:
        pass


def spread(servers: list[GatewayServer], key: str, body: dict[str, object], count: int) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            return await asyncio.gather(
                *[
                    client.post(
                        servers[i % len(servers)].api + "/chat/completions",
                        json=body,
                        headers={"Authorization": f"Bearer {key}"},
                    )
                    for i in range(count)
                ],
                return_exceptions=False,
            )

    return asyncio.run(run())


def reconcile(server: GatewayServer) -> dict[str, object]:
    result = run_cli("reconcile", "--json", database_url=server.database_url, check=False)
    assert result.returncode in (0, 1), result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_three_processes_share_one_balance_exactly(cluster: list[GatewayServer]) -> None:
    os.environ["TOLLWAY_REDIS_URL"] = REDIS_URL
    try:
        account = cluster[0].new_account(f"{30 * PER_REQUEST / 1e9:.9f}")
        body = {**ECHO, "stream": False}
        responses = spread(cluster, account.key, body, 150)
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 402}
        assert statuses.count(200) == 30  # each costs exactly its hold, across all three processes
        billed = sum(nanos(r.json()["usage"]["cost"]) for r in responses if r.status_code == 200)
        for server in cluster:
            figures = server.balance(account.id)
            assert nanos(figures["total_usage"]) == billed == 30 * PER_REQUEST
            assert nanos(figures["balance"]) == 0
            assert nanos(figures["held_in_flight"]) == 0
        report = reconcile(cluster[0])
        assert report["clean"], report
    finally:
        os.environ.pop("TOLLWAY_REDIS_URL", None)


def test_kill_9_mid_load_leaves_the_ledger_reconcilable(cluster: list[GatewayServer]) -> None:
    os.environ["TOLLWAY_REDIS_URL"] = REDIS_URL
    try:
        account = cluster[0].new_account("1")
        stream_body = {**ECHO, "stream": True}
        victim = cluster[2]

        async def load() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as client:

                async def one(index: int) -> int:
                    server = cluster[index % 3]
                    try:
                        async with client.stream(
                            "POST",
                            server.api + "/chat/completions",
                            json=stream_body,
                            headers={"Authorization": f"Bearer {account.key}"},
                        ) as response:
                            async for _ in response.aiter_bytes():
                                pass
                            return response.status_code
                    except httpx.HTTPError:
                        return -1

                tasks = [asyncio.create_task(one(i)) for i in range(60)]
                await asyncio.sleep(0.05)
                os.kill(victim.process.pid, signal.SIGKILL)
                return list(await asyncio.gather(*tasks))

        results = asyncio.run(load())
        assert results.count(-1) > 0  # some requests died with the victim
        assert results.count(200) > 0  # the others kept serving
        time.sleep(2.5)  # the victim's holds expire
        report = reconcile(cluster[0])
        assert report["clean"], report
        figures = cluster[0].balance(account.id)
        assert nanos(figures["held_in_flight"]) == 0
        assert nanos(figures["balance"]) >= 0
    finally:
        os.environ.pop("TOLLWAY_REDIS_URL", None)


def test_key_disabled_on_one_process_is_refused_by_the_others_within_a_second(cluster: list[GatewayServer]) -> None:
    owner = cluster[0].new_account("1", management=True)
    created = cluster[0].post("/keys", owner.key, {"name": "shared"}).json()
    key, key_hash = created["key"], created["data"]["hash"]
    for server in cluster:
        assert server.post("/chat/completions", key, ECHO).status_code == 200
    patched = httpx.patch(
        cluster[0].api + f"/keys/{key_hash}", json={"disabled": True}, headers={"Authorization": f"Bearer {owner.key}"}
    )
    assert patched.status_code == 200
    disabled_at = time.monotonic()
    pending = {1, 2}
    while pending and time.monotonic() - disabled_at < 1.0:
        for index in list(pending):
            if cluster[index].post("/chat/completions", key, ECHO).status_code == 401:
                pending.discard(index)
    assert not pending


def test_workers_flag_runs_several_processes(tmp_path: Path) -> None:
    flush_redis()
    port = free_port()
    import subprocess
    import sys

    database = f"sqlite:///{tmp_path / 'workers.db'}"
    run_cli("demo", database_url=database)
    env = {**os.environ, "TOLLWAY_REDIS_URL": REDIS_URL}
    process = subprocess.Popen(
        [sys.executable, "-m", "tollway", "serve", "--port", str(port), "--workers", "2", "--database-url", database],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        # Both workers say they serve (the first may answer /health long before the second is up on a
        # loaded machine), then the port answers.
        deadline = time.monotonic() + 30
        while sum('"message":"serving"' in line for line in lines) < 2 and time.monotonic() < deadline:
            if not select.select([process.stdout], [], [], max(deadline - time.monotonic(), 0))[0]:
                break
            line = process.stdout.readline().decode()
            if not line:
                break
            lines.append(line)
        assert httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output = "".join(lines) + process.communicate(timeout=20)[0].decode()
    assert output.count('"message":"serving"') == 2


def test_workers_without_redis_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    result = run_cli("serve", "--workers", "2", database_url=f"sqlite:///{tmp_path / 'x.db'}", check=False)
    assert result.returncode == 2
    assert "TOLLWAY_REDIS_URL" in result.stderr
