"""`tollway reconcile` finds every cached figure that differs from the ledger, exits 1, and `--fix`
repairs it while the gateway keeps serving (accounts, keys and holds alike)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.own_redis import OwnRedis
from tests.support import Account, GatewayServer, nanos, run_cli, start_gateway

pytestmark = pytest.mark.slow

ECHO = {
    "model": "tollway/offline-small",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "/echo " + " ".join(f"w{i}" for i in range(30))}],
}


class Setup:
    def __init__(self, redis_server: OwnRedis, gateway: GatewayServer, database_url: str) -> None:
        self.redis = redis_server
        self.gateway = gateway
        self.database_url = database_url

    def reconcile(self, *flags: str) -> tuple[int, dict[str, Any]]:
        result = run_cli("reconcile", "--json", *flags, database_url=self.database_url, check=False)
        assert result.returncode in (0, 1), result.stderr
        report: dict[str, Any] = json.loads(result.stdout)
        return result.returncode, report


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    redis_server = OwnRedis(tmp_path).start()
    database_url = f"sqlite:///{tmp_path / 'reconcile.db'}"
    env = {"TOLLWAY_REDIS_URL": redis_server.url, "TOLLWAY_SPOOL_PATH": str(tmp_path / "spool")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    gateway = start_gateway(database_url, None, tmp_path, env=env)
    try:
        yield Setup(redis_server, gateway, database_url)
    finally:
        gateway.stop()
        redis_server.stop()


def spend(gateway: GatewayServer, account: Account, count: int) -> int:
    total = 0
    for _ in range(count):
        response = gateway.post("/chat/completions", account.key, ECHO)
        assert response.status_code == 200, response.text
        total += nanos(response.json()["usage"]["cost"])
    return total


def test_after_flushall_reconcile_says_figures_are_missing_and_fix_reloads(setup: Setup) -> None:
    account = setup.gateway.new_account("4.37", limit="1")
    billed = spend(setup.gateway, account, 3)
    assert setup.reconcile()[0] == 0
    setup.redis.flushall()
    code, report = setup.reconcile()
    assert code == 1
    assert [m["kind"] for m in report["mismatches"]] == ["redis_figures_missing"]
    code, report = setup.reconcile("--fix")
    assert code == 1 and report["reloaded"] >= 2  # the account and its key, loaded now
    code, report = setup.reconcile()
    assert code == 0, report
    with setup.redis.client() as client:
        cached = client.hmget(f"tw:book:acct:{account.id}", ["credits", "usage"])
    assert [int(v or 0) for v in cached] == [nanos("4.37"), billed]


def test_tampered_account_key_and_held_figures_are_found_and_fixed_under_load(setup: Setup) -> None:
    gateway = setup.gateway
    account = gateway.new_account("5", limit="2")
    billed = spend(gateway, account, 4)
    assert setup.reconcile()[0] == 0
    with setup.redis.client() as client:
        key_hashes = [k.decode() for k in client.scan_iter("tw:book:key:*")]
        assert len(key_hashes) == 1
        client.hincrby(f"tw:book:acct:{account.id}", "credits", 1_000_000_000)  # 1 USD invented
        client.hincrby(f"tw:book:acct:{account.id}", "held", 123)  # a hold nobody placed
        client.hincrby(key_hashes[0], "total", -5000)  # usage the key cap no longer sees
    code, report = setup.reconcile()
    assert code == 1
    kinds = sorted(m["kind"] for m in report["mismatches"])
    assert kinds == ["cached_figures_differ", "cached_key_figures_differ"], report
    account_report = next(m for m in report["mismatches"] if m["kind"] == "cached_figures_differ")
    assert account_report["cached"]["credits"] == 6.0 and account_report["ledger"]["credits"] == 5.0
    assert account_report["cached"]["held"] > 0 and account_report["ledger"]["held"] == 0

    # Repair while requests keep coming.
    stop = threading.Event()
    served: list[int] = []

    def keep_serving() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                response = client.post(
                    gateway.api + "/chat/completions", json=ECHO, headers={"Authorization": f"Bearer {account.key}"}
                )
                assert response.status_code == 200, response.text
                served.append(nanos(response.json()["usage"]["cost"]))

    worker = threading.Thread(target=keep_serving, daemon=True)
    worker.start()
    try:
        code, report = setup.reconcile("--fix")
        assert code == 1 and all(m["fixed"] for m in report["mismatches"])
    finally:
        stop.set()
        worker.join()
    assert served
    code, report = setup.reconcile()
    assert code == 0, report
    data = gateway.get("/credits", account.key).json()["data"]
    assert nanos(data["total_credits"]) == nanos("5")
    assert nanos(data["total_usage"]) == billed + sum(served)
    assert nanos(gateway.balance(account.id)["held_in_flight"]) == 0
    assert nanos(gateway.get("/key", account.key).json()["data"]["usage"]) == billed + sum(served)


def test_reconcile_says_when_redis_does_not_answer(setup: Setup) -> None:
    setup.gateway.new_account("1")
    setup.redis.stop()
    code, report = setup.reconcile()
    assert code == 1
    assert [m["kind"] for m in report["mismatches"]] == ["redis_unreachable"]
