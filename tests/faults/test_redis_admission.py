"""One Redis round trip at each end of a paid request when the book and the rate limiter share Redis.

Admission is one script that takes the rate limits and concurrency slots with the hold, or neither;
settlement is one script that replaces the hold by the cost and ends the limits (frees the slot, corrects
tokens per minute). Counted with MONITOR and INFO commandstats on a Redis of the test's own, then checked
where it could go wrong: a request refused for credits takes no limit, and figures Redis lost between
requests (an eviction, a flush mid-load) reload without counting a limit twice or a nano-dollar wrongly.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.faults.own_redis import OwnRedis
from tests.support import OFFLINE_ECHO, OFFLINE_ECHO_NANOS, GatewayServer, nanos, start_gateway
from tollway.ledger import redis_scripts as book_scripts
from tollway.limits import redis_backend

pytestmark = pytest.mark.slow

ECHO = OFFLINE_ECHO
PER_REQUEST = OFFLINE_ECHO_NANOS
LIMITS = {"requests": 1000, "per": "minute", "concurrency": 4, "tokens_per_minute": 100_000}


def sha(body: str) -> str:
    return hashlib.sha1(body.encode()).hexdigest()


ADMIT = sha(book_scripts.reserve_script(redis_backend.LIMIT_RIDER))
SETTLE = sha(book_scripts.settle_script(redis_backend.LIMIT_RIDER))
SEPARATE = {
    sha(book_scripts.RESERVE): "reserve",
    sha(book_scripts.SETTLE): "settle",
    sha(redis_backend._ACQUIRE): "acquire",
    sha(redis_backend._GIVE_BACK): "give back",
}
SWEEP = sha(book_scripts.SWEEP)


class Monitor:
    """The commands clients send Redis while open (MONITOR, read on a thread), not those scripts run."""

    def __init__(self, redis_server: OwnRedis) -> None:
        self._client = redis.Redis(host="127.0.0.1", port=redis_server.port)
        self._control = redis.Redis(host="127.0.0.1", port=redis_server.port)
        self.commands: list[str] = []
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        with self._client.monitor() as monitor:
            for command in monitor.listen():
                text = command["command"]
                if text == "ECHO monitor-start":
                    self._started.set()
                elif text == "ECHO monitor-stop":
                    return
                elif command["client_type"] != "lua":
                    self.commands.append(text)

    def __enter__(self) -> Monitor:
        self._thread.start()
        while not self._started.is_set():
            self._control.echo("monitor-start")
            self._started.wait(0.05)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._control.echo("monitor-stop")
        self._thread.join(10)
        self._control.close()
        self._client.close()

    def scripts(self) -> list[str]:
        """The scripts called, by name where known, without the background sweeps of expired holds."""
        names = {ADMIT: "admit", SETTLE: "settle+limits", **SEPARATE}
        called = [c.split(" ")[1] for c in self.commands if c.startswith("EVALSHA ")]
        return [names.get(s, s) for s in called if s != SWEEP]

    def others(self) -> list[str]:
        """Commands other than scripts (loads, grants), without the test's own, connection set-up and redis-py
        loading the sweep's script (its first run may fall in the window)."""
        ours = ("EVALSHA ", "ECHO ", "CONFIG ", "INFO", "HELLO", "CLIENT ", "SCRIPT LOAD")
        return [c for c in self.commands if not c.startswith(ours)]

    def sweeps_between(self, begin: str, end: str) -> int:
        """Sweeps of expired holds between the test's `ECHO begin` and `ECHO end`."""
        start, stop = self.commands.index(f"ECHO {begin}"), self.commands.index(f"ECHO {end}")
        return sum(1 for c in self.commands[start:stop] if c.startswith(f"EVALSHA {SWEEP}"))


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path_factory.mktemp("redis-admission")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(redis_server: OwnRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("admission-gateway")
    env = {"TOLLWAY_REDIS_URL": redis_server.url}
    server = start_gateway(f"sqlite:///{directory / 'admission.db'}", None, directory, env=env)
    yield server
    server.stop()


def limited_account(gateway: GatewayServer, credits_usd: str, limits: dict[str, object]) -> tuple[str, str]:
    """(account id, key) of a new account whose key carries `limits`."""
    account = gateway.new_account(credits_usd)
    response = gateway.admin("PUT", f"/keys/{account.key_hash}/limits", limits)
    assert response.status_code == 200, response.text
    return account.id, account.key


def streamed(gateway: GatewayServer, key: str) -> float:
    """A streamed request read to its end; returns the cost in its usage chunk."""
    cost = None
    with httpx.stream(
        "POST",
        gateway.api + "/chat/completions",
        json={**ECHO, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if '"cost"' in line:
                cost = float(line.split('"cost":')[1].split(",")[0].split("}")[0])
    assert cost is not None
    return cost


def evalsha_calls(redis_server: OwnRedis) -> dict[str, int]:
    with redis_server.client() as client:
        stats = client.info("commandstats")
    return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")}


def test_a_paid_request_is_one_script_at_admission_and_one_at_settlement(
    gateway: GatewayServer, redis_server: OwnRedis
) -> None:
    account_id, key = limited_account(gateway, "5", LIMITS)
    first = gateway.post("/chat/completions", key, ECHO)  # loads the figures into Redis
    assert first.status_code == 200, first.text
    with Monitor(redis_server) as monitor, redis_server.client() as client:
        client.config_resetstat()
        client.echo("count-begin")
        costs = [nanos(gateway.post("/chat/completions", key, ECHO).json()["usage"]["cost"]) for _ in range(6)]
        costs += [nanos(streamed(gateway, key)) for _ in range(3)]
        client.echo("count-end")
        calls = evalsha_calls(redis_server)

    assert costs == [PER_REQUEST] * 9
    # Each request: the limits with the hold in one script, the settlement with the limits' end in one.
    assert monitor.scripts() == ["admit", "settle+limits"] * 9
    assert monitor.others() == []
    # INFO commandstats agrees: every EVALSHA Redis ran is one of those or a sweep, none was sent in full.
    sweeps = monitor.sweeps_between("count-begin", "count-end")
    assert calls == {"evalsha": 2 * 9 + sweeps, "eval": 0}
    balance = gateway.get("/credits", key).json()["data"]
    assert nanos(balance["total_usage"]) == 10 * PER_REQUEST
    with redis_server.client() as client:
        assert client.hget(f"tw:book:acct:{account_id}", "held") == b"0"
        assert all(client.zcard(k) == 0 for k in client.scan_iter("tw:limit:key:conc:*"))


def test_a_request_refused_for_credits_takes_no_limit(gateway: GatewayServer, redis_server: OwnRedis) -> None:
    account_id, key = limited_account(gateway, "0.00005", {"requests": 2, "per": "minute", "concurrency": 1})
    assert gateway.get("/key", key).status_code == 200  # loads the key's figures, and /credits the account's
    assert nanos(gateway.get("/credits", key).json()["data"]["total_credits"]) == nanos("0.00005")
    with Monitor(redis_server) as monitor:
        refused = [gateway.post("/chat/completions", key, ECHO) for _ in range(4)]
    assert [r.status_code for r in refused] == [402] * 4, refused[0].text
    assert monitor.scripts() == ["admit"] * 4  # one script each, and no limit given back: none was taken
    grant = gateway.admin("POST", f"/accounts/{account_id}/credits", {"amount": "1"})
    assert grant.status_code == 201
    # The refusals took neither the 2 requests a minute nor the one concurrency slot.
    served = [gateway.post("/chat/completions", key, ECHO) for _ in range(3)]
    assert [r.status_code for r in served] == [200, 200, 429]
    assert served[2].json()["error"]["metadata"]["limit"] == "key-requests"
    with redis_server.client() as client:
        assert client.hget(f"tw:book:acct:{account_id}", "held") == b"0"  # the 429 placed no hold either
        assert client.zcard(f"tw:book:holds:{account_id}") == 0
    balance = gateway.get("/credits", key).json()["data"]
    assert nanos(balance["total_usage"]) == 2 * PER_REQUEST


def test_a_request_whose_max_tokens_is_lowered_takes_its_limit_once(gateway: GatewayServer) -> None:
    """The first try of the hold fails (max_tokens left open, credits short), the second with fewer tokens
    fits: the limits ride with both tries and must be taken by the second only."""
    _account_id, key = limited_account(gateway, "0.001", {"requests": 2, "per": "minute", "concurrency": 1})
    open_ended = {name: value for name, value in ECHO.items() if name != "max_tokens"}
    served = [gateway.post("/chat/completions", key, open_ended) for _ in range(3)]
    assert [r.status_code for r in served] == [200, 200, 429], served[0].text
    assert all("X-Tollway-Max-Tokens-Capped" in r.headers for r in served[:2])


def test_figures_lost_between_requests_reload_without_counting_a_limit_twice(
    gateway: GatewayServer, redis_server: OwnRedis
) -> None:
    account_id, key = limited_account(gateway, "5", {"requests": 3, "per": "minute", "concurrency": 1})
    statuses = []
    for _ in range(3):
        # The book's figures are evicted, the limiter's kept: the admission script answers "not loaded"
        # and must have taken no limit, or the third request would find the minute's three used.
        with redis_server.client() as client:
            for name in client.scan_iter("tw:book:*"):
                client.delete(name)
        statuses.append(gateway.post("/chat/completions", key, ECHO).status_code)
    statuses.append(gateway.post("/chat/completions", key, ECHO).status_code)
    assert statuses == [200, 200, 200, 429]
    balance = gateway.get("/credits", key).json()["data"]
    assert nanos(balance["total_usage"]) == 3 * PER_REQUEST
    assert nanos(balance["total_credits"]) == nanos("5")
    assert nanos(gateway.get("/key", key).json()["data"]["usage"]) == 3 * PER_REQUEST
    with redis_server.client() as client:
        assert client.hget(f"tw:book:acct:{account_id}", "held") == b"0"


def test_flushes_mid_load_leave_exact_balances_and_no_slot_behind(
    redis_server: OwnRedis, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two processes, a concurrency limit as high as the clients' concurrency: a slot counted twice or
    left behind would answer 429; a hold or settlement counted twice would show in the balance."""
    directory = tmp_path_factory.mktemp("admission-flush")
    env = {"TOLLWAY_REDIS_URL": redis_server.url, "TOLLWAY_HOLD_TTL_SECONDS": "3"}
    database_url = f"sqlite:///{directory / 'shared.db'}"
    gateways = [start_gateway(database_url, None, directory, env=env) for _ in range(2)]
    try:
        account_id, key = limited_account(gateways[0], "4", {**LIMITS, "concurrency": 6})
        time.sleep(0.5)  # the second process picks the limit up from the database

        async def run() -> list[httpx.Response]:
            semaphore = asyncio.Semaphore(6)
            async with httpx.AsyncClient(timeout=60) as client:

                async def one(index: int) -> httpx.Response:
                    async with semaphore:
                        return await client.post(
                            gateways[index % 2].api + "/chat/completions",
                            json=ECHO,
                            headers={"Authorization": f"Bearer {key}"},
                        )

                return list(await asyncio.gather(*[one(i) for i in range(240)]))

        results: list[httpx.Response] = []
        loader = threading.Thread(target=lambda: results.extend(asyncio.run(run())))
        loader.start()
        flushes = 0
        while loader.is_alive() and flushes < 5:
            time.sleep(0.15)
            redis_server.flushall()
            flushes += 1
        loader.join()

        statuses = [r.status_code for r in results]
        assert set(statuses) <= {200, 503}, {r.text for r in results if r.status_code not in (200, 503)}
        assert statuses.count(200) >= 200
        billed = sum(nanos(r.json()["usage"]["cost"]) for r in results if r.status_code == 200)
        assert billed == statuses.count(200) * PER_REQUEST
        assert flushes >= 3
        time.sleep(0.5)  # the last commits
        for gateway in gateways:
            balance = gateway.get("/credits", key).json()["data"]
            assert nanos(balance["total_usage"]) == billed
            assert nanos(balance["total_credits"]) == nanos("4")
        with redis_server.client() as client:
            assert all(client.zcard(k) == 0 for k in client.scan_iter("tw:limit:key:conc:*"))
            assert int(client.hget(f"tw:book:acct:{account_id}", "held") or 0) == 0
    finally:
        for gateway in gateways:
            gateway.stop()
