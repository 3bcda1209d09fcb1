"""Which address a request counts as: the peer, or the client a trusted proxy names (IPv4 and IPv6)."""

from __future__ import annotations

from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from tollway.api.addresses import ClientAddresses


def request_from(peer: str, *forwarded: str) -> object:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (peer, 1234) if name == "peername" else default
    headers = [("X-Forwarded-For", value) for value in forwarded]
    return make_mocked_request("GET", "/", headers=headers, transport=transport)


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "client"),
    [
        ([], "192.0.2.1", ["203.0.113.5"], "192.0.2.1"),  # no proxy trusted: the header is anyone's word
        (["10.0.0.1"], "192.0.2.1", ["203.0.113.5"], "192.0.2.1"),  # not from the proxy
        (["10.0.0.1"], "10.0.0.1", ["203.0.113.5"], "203.0.113.5"),
        (["10.0.0.1"], "10.0.0.1", ["1.1.1.1, 203.0.113.5"], "203.0.113.5"),  # the client's own entries: ignored
        (["10.0.0.1"], "10.0.0.1", ["1.1.1.1", "203.0.113.5"], "203.0.113.5"),  # the header sent twice
        (["10.0.0.0/8"], "10.0.0.1", ["203.0.113.5, 10.9.9.9"], "203.0.113.5"),  # trusted hops skipped
        (["10.0.0.0/8"], "10.0.0.1", ["10.2.2.2, 10.9.9.9"], "10.2.2.2"),  # all trusted: the first
        (["10.0.0.1"], "10.0.0.1", [], "10.0.0.1"),  # the proxy itself, with no header
        (["10.0.0.1"], "10.0.0.1", ["  , "], "10.0.0.1"),
        (["::1"], "::1", ["2001:db8::7"], "2001:db8::7"),
        (["10.0.0.1"], "::ffff:10.0.0.1", ["203.0.113.5"], "203.0.113.5"),  # a dual-stack listener's IPv4 peer
        (["fd00::/8"], "fd00::1", ["2001:db8::7, fd00::2"], "2001:db8::7"),
        (["10.0.0.1"], "10.0.0.1", ["x" * 500], "x" * 64),  # not an address: kept, bounded
    ],
)
def test_the_client_address(trusted: list[str], peer: str, forwarded: list[str], client: str) -> None:
    assert ClientAddresses(trusted).of(request_from(peer, *forwarded)) == client  # type: ignore[arg-type]


def test_an_entry_that_is_no_address_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'proxy\.local' is not an IP address"):
        ClientAddresses(["10.0.0.1", "proxy.local"])
