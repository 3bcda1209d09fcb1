"""Holds end on time: a killed worker's holds are released within the TTL without `reconcile`, and a
live stream longer than the TTL keeps its hold and its concurrency slot until it settles."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.own_redis import OwnRedis
from tests.support import GatewayServer, nanos, run_cli, start_gateway

pytestmark = pytest.mark.slow

TTL_S = 2.0
SLOW_STREAM = {
    "model": "tollway/offline-small",
    "max_tokens": 20,
    "stream": True,
    "stream_options": {"include_usage": True},
    "messages": [{"role": "user", "content": "/echo " + " ".join(f"w{i}" for i in range(30))}],
}
ECHO = {**SLOW_STREAM, "stream": False, "max_tokens": 2}


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path).start()
    yield server
    server.stop()


def gateway_env(redis_server: OwnRedis, **extra: str) -> dict[str, str]:
    return {
        "TOLLWAY_REDIS_URL": redis_server.url,
        "TOLLWAY_HOLD_TTL_SECONDS": str(TTL_S),
        "TOLLWAY_OFFLINE_STREAM_DELAY_MS": "250",  # 20 tokens: a 5 s stream, 2.5 times the TTL
        **extra,
    }


def held(gateway: GatewayServer, account_id: str) -> int:
    return nanos(gateway.balance(account_id)["held_in_flight"])


def read_stream(gateway: GatewayServer, key: str, into: list[bytes]) -> None:
    try:
        with httpx.stream(
            "POST",
            gateway.api + "/chat/completions",
            json=SLOW_STREAM,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ) as response:
            for chunk in response.iter_bytes():
                into.append(chunk)
    except httpx.HTTPError:
        into.append(b"<broken>")


def test_holds_of_a_killed_worker_end_within_the_ttl(
    own_redis: OwnRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = f"sqlite:///{tmp_path / 'holds.db'}"
    env = gateway_env(own_redis)
    survivor = start_gateway(database, None, tmp_path, env=env)
    victim = start_gateway(database, None, tmp_path, env=env)
    try:
        account = survivor.new_account("1")
        bodies: list[list[bytes]] = [[] for _ in range(4)]
        readers = [threading.Thread(target=read_stream, args=(victim, account.key, b), daemon=True) for b in bodies]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + 5
        while held(survivor, account.id) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert held(survivor, account.id) > 0
        time.sleep(TTL_S * 1.2)  # past the first expiry: renewals keep the holds of the live streams
        assert held(survivor, account.id) > 0
        os.kill(victim.process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        while held(survivor, account.id) != 0 and time.monotonic() - killed_at < TTL_S + 3:
            time.sleep(0.02)
        released_after_s = time.monotonic() - killed_at
        assert held(survivor, account.id) == 0
        assert released_after_s <= TTL_S + 1.0, released_after_s
        # Released, not spent: the balance is back to what the ledger says.
        figures = survivor.balance(account.id)
        assert nanos(figures["balance"]) == nanos("1") - nanos(figures["total_usage"])
        for reader in readers:
            reader.join(10)
        monkeypatch.setenv("TOLLWAY_REDIS_URL", own_redis.url)
        report = run_cli("reconcile", "--json", database_url=database, check=False)
        assert report.returncode == 0, report.stdout  # without --fix: nothing to repair
    finally:
        victim.stop()
        survivor.stop()


def test_a_stream_longer_than_the_ttl_keeps_its_hold_and_slot(own_redis: OwnRedis, tmp_path: Path) -> None:
    env = gateway_env(own_redis, TOLLWAY_KEY_LIMITS='{"concurrency": 1}')
    gateway = start_gateway(f"sqlite:///{tmp_path / 'stream.db'}", None, tmp_path, env=env)
    try:
        account = gateway.new_account("1")
        body: list[bytes] = []
        reader = threading.Thread(target=read_stream, args=(gateway, account.key, body), daemon=True)
        started = time.monotonic()
        reader.start()
        checks = 0
        extra_nanos = 0  # a probe that raced the stream's end and was served
        while reader.is_alive():
            time.sleep(0.25)
            if time.monotonic() - started < TTL_S * 1.2 or not reader.is_alive():
                continue
            # Past the TTL: the hold is still counted and the only concurrency slot still taken.
            figures = gateway.balance(account.id)
            if not reader.is_alive():
                break
            assert nanos(figures["held_in_flight"]) > 0
            second = gateway.post("/chat/completions", account.key, ECHO)
            if second.status_code == 200:
                extra_nanos += nanos(second.json()["usage"]["cost"])
            if not reader.is_alive():
                break
            assert second.status_code == 429, second.text
            checks += 1
        reader.join()
        assert time.monotonic() - started > TTL_S * 2.4
        assert checks >= 3
        text = b"".join(body).decode()
        assert "<broken>" not in text and "data: [DONE]" in text
        usage_line = next(line for line in text.splitlines() if '"usage"' in line and '"cost"' in line)
        cost = nanos(json.loads(usage_line.removeprefix("data: "))["usage"]["cost"])
        assert cost == 36 * 1000 + 20 * 2000
        figures = gateway.balance(account.id)
        assert nanos(figures["held_in_flight"]) == 0
        assert nanos(figures["total_usage"]) == cost + extra_nanos
        assert gateway.post("/chat/completions", account.key, ECHO).status_code == 200
    finally:
        gateway.stop()
