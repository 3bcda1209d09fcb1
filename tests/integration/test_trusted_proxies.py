"""Behind a trusted reverse proxy, each client is throttled by its own address, and the header cannot be forged.

The proxy is 127.0.0.9 (the tests' client binds that address); clients are named in X-Forwarded-For as
the proxy would append them. From any other peer the header is ignored.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support import GatewayServer, bogus_key, client_from, start_gateway

BURST = 5
PROXY = "127.0.0.9"


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("proxied")
    server = start_gateway(
        f"sqlite:///{directory / 'proxied.db'}",
        None,
        directory,
        env={
            "TOLLWAY_AUTH_FAILURES_BURST": str(BURST),
            "TOLLWAY_AUTH_FAILURES_PER_MINUTE": "1",
            "TOLLWAY_TRUSTED_PROXIES": f"{PROXY}, 10.0.0.0/8",
        },
    )
    yield server
    server.stop()


def key_status(client: httpx.Client, server: GatewayServer, key: str, forwarded: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    return client.get(server.api + "/key", headers=headers).status_code


def test_clients_behind_the_proxy_are_throttled_one_by_one(behind_proxy: GatewayServer) -> None:
    account = behind_proxy.new_account("1")
    with client_from(PROXY) as proxy:
        assert [key_status(proxy, behind_proxy, bogus_key(i), "203.0.113.5") for i in range(BURST)] == [401] * BURST
        assert key_status(proxy, behind_proxy, bogus_key(99), "203.0.113.5") == 429
        # Another client through the same proxy keeps its own failures and is served with a valid key.
        assert key_status(proxy, behind_proxy, bogus_key(100), "203.0.113.6") == 401
        assert key_status(proxy, behind_proxy, account.key, "203.0.113.7") == 200
        # The throttled client cannot slip out by writing addresses of its own in front of the proxy's.
        assert key_status(proxy, behind_proxy, bogus_key(101), "198.51.100.1, 203.0.113.5") == 429
        # A chain of trusted hops (10.0.0.0/8): the client is the first hop not trusted, from the right.
        assert key_status(proxy, behind_proxy, bogus_key(102), "203.0.113.5, 10.1.2.3") == 429
        assert key_status(proxy, behind_proxy, bogus_key(103), "203.0.113.8, 10.1.2.3") == 401


def test_the_header_from_an_untrusted_peer_is_ignored(behind_proxy: GatewayServer) -> None:
    with client_from("127.0.0.10") as attacker:
        statuses = [key_status(attacker, behind_proxy, bogus_key(i), f"192.0.2.{i}") for i in range(BURST)]
        assert statuses == [401] * BURST
        assert key_status(attacker, behind_proxy, bogus_key(50), "192.0.2.200") == 429  # its own address was counted


def test_a_trusted_proxies_entry_that_is_no_address_stops_the_start(tmp_path_factory: pytest.TempPathFactory) -> None:
    directory = tmp_path_factory.mktemp("bad-proxies")
    with pytest.raises(RuntimeError, match="trusted_proxies"):
        start_gateway(
            f"sqlite:///{directory / 'bad.db'}", None, directory, env={"TOLLWAY_TRUSTED_PROXIES": "10.0.0.1, gateway"}
        )
