"""Rate limits as users meet them: exact under concurrency, shared through Redis, explained in every 429."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support import GatewayServer, free_port, run_cli, start_gateway, write_config

REDIS_URL = "redis://127.0.0.1:6379/0"
FREE = {"model": "tollway/offline-small:free", "max_tokens": 5, "messages": [{"role": "user", "content": "/echo hi"}]}
PAID = {"model": "tollway/offline-small", "max_tokens": 5, "messages": [{"role": "user", "content": "/echo hi"}]}


def flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter("tw:*"):
        client.delete(key)
    client.close()


def fire(gateway: GatewayServer, key: str, body: dict[str, object], count: int) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            return await asyncio.gather(
                *[
                    client.post(
                        gateway.api + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
                    )
                    for _ in range(count)
                ]
            )

    return asyncio.run(run())


def test_500_concurrent_requests_against_100_per_minute_admit_exactly_100(gateway: GatewayServer) -> None:
    account = gateway.new_account("100")
    response = gateway.admin("PUT", f"/keys/{account.key_hash}/limits", {"requests": 100, "per": "minute"})
    assert response.status_code == 200, response.text
    fired_at = time.time()
    responses = fire(gateway, account.key, PAID, 500)
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 100
    assert statuses.count(429) == 400
    refused = next(r for r in responses if r.status_code == 429)
    error = refused.json()["error"]
    assert error["message"] == "Rate limit exceeded: key-requests."
    assert error["metadata"]["limit"] == "key-requests"
    assert error["metadata"]["explanation"]["code"] == "rate_limited"
    assert refused.headers["X-RateLimit-Limit"] == "100"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    reset_ms = int(refused.headers["X-RateLimit-Reset"])
    assert fired_at * 1000 < reset_ms <= time.time() * 1000 + 1000  # 100/min frees one slot every 0.6 s
    assert int(refused.headers["Retry-After"]) >= 1
    # Refused requests cost nothing: usage is exactly 100 requests' worth.
    info = gateway.get("/key", account.key).json()["data"]
    assert info["rate_limit"] == {"requests": 100, "interval": "1m", "note": info["rate_limit"]["note"]}
    assert isinstance(info["rate_limit"]["note"], str)
    costs = sum(round(r.json()["usage"]["cost"] * 1e9) for r in responses if r.status_code == 200)
    assert round(gateway.balance(account.id)["total_usage"] * 1e9) == costs


def test_free_models_allow_20_per_minute_per_account(gateway: GatewayServer) -> None:
    account = gateway.new_account("1")
    second_key = gateway.new_key(account.id)[0]
    statuses = [r.status_code for r in fire(gateway, account.key, FREE, 15)]
    statuses += [r.status_code for r in fire(gateway, second_key, FREE, 10)]  # account-wide, not per key
    assert statuses.count(200) == 20
    refused = gateway.post("/chat/completions", account.key, FREE)
    assert refused.status_code == 429
    assert refused.json()["error"]["message"] == "Rate limit exceeded: free-models-per-min."
    assert refused.json()["error"]["metadata"]["explanation"]["code"] == "free_per_minute"
    # Paid models are not under the free limit.
    assert gateway.post("/chat/completions", account.key, PAID).status_code == 200


def test_free_daily_cap_and_the_unlock_at_10_usd_purchased(small_free_tier: GatewayServer) -> None:
    gateway = small_free_tier
    account = gateway.new_account("20")  # a grant: does not unlock
    for _ in range(5):
        assert gateway.post("/chat/completions", account.key, FREE).status_code == 200
    refused = gateway.post("/chat/completions", account.key, FREE)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["message"] == "Rate limit exceeded: free-models-per-day."
    assert error["metadata"]["explanation"]["code"] == "free_daily_cap"
    midnight_ms = (int(time.time()) // 86400 + 1) * 86400 * 1000
    assert int(refused.headers["X-RateLimit-Reset"]) == midnight_ms
    info = gateway.get("/key", account.key).json()["data"]
    assert info["free_model_daily_requests"] == {"limit": 5, "used": 5, "remaining": 0}
    assert info["is_free_tier"] is True

    purchase = gateway.admin(
        "POST", f"/accounts/{account.id}/credits", {"amount": "10", "kind": "purchase", "reference": "inv-1"}
    )
    assert purchase.status_code == 201
    for _ in range(3):
        assert gateway.post("/chat/completions", account.key, FREE).status_code == 200
    refused = gateway.post("/chat/completions", account.key, FREE)
    assert refused.json()["error"]["message"] == "Rate limit exceeded: free-models-per-day-high-balance."
    info = gateway.get("/key", account.key).json()["data"]
    assert info["free_model_daily_requests"] == {"limit": 8, "used": 8, "remaining": 0}
    assert info["is_free_tier"] is False


def test_request_refused_for_credits_consumes_no_limit(gateway: GatewayServer) -> None:
    account = gateway.new_account(None)
    gateway.admin("PUT", f"/keys/{account.key_hash}/limits", {"requests": 2, "per": "hour"})
    for _ in range(5):
        assert gateway.post("/chat/completions", account.key, PAID).status_code == 402
    gateway.admin("POST", f"/accounts/{account.id}/credits", {"amount": "1"})
    assert [gateway.post("/chat/completions", account.key, PAID).status_code for _ in range(3)] == [200, 200, 429]


def test_tokens_per_minute_are_corrected_with_real_usage(gateway: GatewayServer) -> None:
    account = gateway.new_account("1")
    gateway.admin("PUT", f"/keys/{account.key_hash}/limits", {"tokens_per_minute": 100})
    body = {
        "model": "tollway/offline-small",
        "max_tokens": 60,
        "messages": [{"role": "user", "content": "/echo " + " ".join(["w"] * 50)}],
    }
    # Prompt 56 tokens estimated at admission; 56 + 50 = 106 really used once settled.
    assert gateway.post("/chat/completions", account.key, body).status_code == 200
    small = {"model": "tollway/offline-small", "max_tokens": 5, "messages": [{"role": "user", "content": "/echo a"}]}
    refused = gateway.post("/chat/completions", account.key, small)
    assert refused.status_code == 429
    assert refused.json()["error"]["metadata"]["limit"] == "key-tokens-per-minute"


def test_concurrency_cap_is_released_when_a_client_disconnects(
    gateway: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    account = gateway.new_account("1")
    gateway.admin("PUT", f"/keys/{account.key_hash}/limits", {"concurrency": 1})
    upstream.behaviour.reply_words = [f" w{i}" for i in range(100)]
    upstream.behaviour.chunk_delay_s = 0.02
    body = orjson.dumps({"model": "fake/chat", "stream": True, "messages": [{"role": "user", "content": "go"}]})
    host, port = gateway.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {account.key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert b"200 OK" in sock.recv(4096)
        busy = gateway.post("/chat/completions", account.key, PAID)
        assert busy.status_code == 429
        assert busy.json()["error"]["metadata"]["limit"] == "key-concurrency"
    deadline = time.monotonic() + 5
    status = 429
    while status == 429 and time.monotonic() < deadline:
        status = gateway.post("/chat/completions", account.key, PAID).status_code
        time.sleep(0.05)
    assert status == 200


def test_cli_sets_and_shows_limits_and_running_servers_apply_them(gateway: GatewayServer) -> None:
    account = gateway.new_account("1")
    shown = json.loads(
        run_cli(
            "limits",
            "set",
            "--key",
            account.key_hash,
            "--requests",
            "3",
            "--per",
            "hour",
            "--concurrency",
            "2",
            "--json",
            database_url=gateway.database_url,
        ).stdout
    )
    assert shown["limits"] == {
        "requests": 3,
        "per": "hour",
        "interval": "1h",
        "tokens_per_minute": None,
        "concurrency": 2,
    }
    again = json.loads(
        run_cli("limits", "show", "--key", account.key_hash, "--json", database_url=gateway.database_url).stdout
    )
    assert again["effective"]["requests"] == 3
    set_at = time.monotonic()
    info = {}
    while time.monotonic() - set_at < 1.0:
        info = gateway.get("/key", account.key).json()["data"]
        if info["rate_limit"]:
            break
    assert info["rate_limit"] == {"requests": 3, "interval": "1h", "note": info["rate_limit"]["note"]}
    bad = run_cli(
        "limits",
        "set",
        "--key",
        account.key_hash,
        "--requests",
        "3",
        "--per",
        "fortnight",
        database_url=gateway.database_url,
        check=False,
    )
    assert bad.returncode == 1 and "per must be" in bad.stderr


@pytest.fixture
def redis_pair(tmp_path: Path, upstream: FakeOpenAIUpstream) -> Iterator[tuple[GatewayServer, GatewayServer]]:
    flush_redis()
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    config = write_config(tmp_path / "config.yaml", upstream.base_url)
    first = start_gateway(database, config, tmp_path, env={"TOLLWAY_REDIS_URL": REDIS_URL})
    second = start_gateway(database, config, tmp_path, env={"TOLLWAY_REDIS_URL": REDIS_URL})
    yield first, second
    first.stop()
    second.stop()


def test_two_processes_sharing_redis_enforce_one_limit(redis_pair: tuple[GatewayServer, GatewayServer]) -> None:
    first, second = redis_pair
    account = first.new_account("5")
    first.admin("PUT", f"/keys/{account.key_hash}/limits", {"requests": 30, "per": "minute"})
    time.sleep(0.5)  # the second process picks the limit up from the database
    results = []
    for gateway in (first, second):
        results += [r.status_code for r in fire(gateway, account.key, PAID, 25)]
    assert results.count(200) == 30
    assert results.count(429) == 20
    assert "redis" in first.log_path.read_text()


def test_redis_down_answers_503_where_a_limit_applies(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    gateway = start_gateway(f"sqlite:///{tmp_path / 'down.db'}", None, tmp_path, env={"TOLLWAY_REDIS_URL": dead})
    try:
        account = gateway.new_account("1")  # the ledger of record takes grants while Redis is away
        for body in (FREE, PAID):  # limits and balances both live in Redis: fail closed, clearly
            refused = gateway.post("/chat/completions", account.key, body)
            assert refused.status_code == 503
            assert "Redis is unreachable" in refused.json()["error"]["message"]
            assert refused.headers["Retry-After"] == "1"
        assert httpx.get(gateway.base_url + "/ready").status_code == 503
    finally:
        gateway.stop()
