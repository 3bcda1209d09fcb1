"""PostgreSQL away for a while: requests fail closed with a clear 503, memory stays flat, service resumes,
and the usage settled during the outage is written once when the database is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_database_url
from tests.fakes.tcp_proxy import CuttableProxy
from tests.support import GatewayServer, nanos, start_gateway

BODY = {"model": "tollway/offline-small", "max_tokens": 5, "messages": [{"role": "user", "content": "/echo hi"}]}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def behind_proxy(tmp_path: Path) -> Iterator[tuple[GatewayServer, CuttableProxy]]:
    urls = make_database_url("postgres", tmp_path)
    direct = next(urls)
    proxy = CuttableProxy("127.0.0.1", 5432).start()
    proxied = direct.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    gateway = start_gateway(proxied, None, tmp_path, env={"TOLLWAY_LEDGER_FLUSH_TIMEOUT_SECONDS": "0.5"})
    gateway.database_url = direct  # admin checks below read the database directly
    yield gateway, proxy
    gateway.stop()
    proxy.stop()
    for _ in urls:
        pass


def test_database_outage_fails_closed_keeps_memory_flat_and_recovers(
    behind_proxy: tuple[GatewayServer, CuttableProxy],
) -> None:
    gateway, proxy = behind_proxy
    account = gateway.new_account("1")
    first = gateway.post("/chat/completions", account.key, BODY)
    assert first.status_code == 200

    proxy.cut()
    # The first request after the cut is served (its usage waits in the bounded queue); from then on the
    # ledger writer knows the database is away and new billable requests are refused.
    statuses = [gateway.post("/chat/completions", account.key, BODY).status_code for _ in range(3)]
    assert statuses[0] == 200
    refused = gateway.post("/chat/completions", account.key, BODY)
    assert refused.status_code == 503
    assert "ledger database is unavailable" in refused.json()["error"]["message"]
    assert refused.headers["Retry-After"] == "1"
    assert httpx.get(gateway.base_url + "/ready").status_code == 503
    before = rss_kib(gateway.process.pid)
    for _ in range(300):
        assert gateway.post("/chat/completions", account.key, BODY).status_code == 503
    assert rss_kib(gateway.process.pid) - before < 5_000  # flat: refused work queues nothing

    proxy.restore()
    deadline = time.monotonic() + 15
    status = 503
    while status != 200 and time.monotonic() - deadline < 0:
        status = gateway.post("/chat/completions", account.key, BODY).status_code
        time.sleep(0.2)
    assert status == 200
    served = 1 + statuses.count(200) + 1  # before the cut, during it, after it
    deadline = time.monotonic() + 10
    usage = 0
    while time.monotonic() < deadline:
        usage = nanos(gateway.balance(account.id)["total_usage"])
        entries = gateway.admin("GET", f"/accounts/{account.id}/ledger").json()["data"]
        if sum(1 for e in entries if e["kind"] == "usage") == served:
            break
        time.sleep(0.2)
    usage_entries = [e for e in entries if e["kind"] == "usage"]
    assert len(usage_entries) == served  # every served request billed once, none lost, none doubled
    assert usage == sum(nanos(e["amount"]) for e in usage_entries)
