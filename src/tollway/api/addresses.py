"""The client's address, read through the reverse proxies the operator trusts.

Per-address throttles (failed authentications, dashboard sign-ins) need the client's address. Behind a
proxy every request comes from the proxy, so one client spending its failed attempts throttled every
client. `X-Forwarded-For` names the client, but anyone can send that header: it is read only when the peer
is a trusted proxy (`trusted_proxies`), from the right, skipping trusted hops, and the first hop that is
not trusted is the client (what a trusted proxy saw connect to it). Entries further left were written by
the client and are never believed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # settings import this module's parser: no web framework for the command line
    from aiohttp import web

_MAX_ADDRESS_CHARS = 64  # an address a trusted hop wrote; anything longer is not one
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Sequence[str]) -> tuple[Network, ...]:
    """`10.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`; raises ValueError naming an entry that is none of these."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or network") from exc
    return tuple(networks)


class ClientAddresses:
    def __init__(self, trusted_proxies: Sequence[str] = ()) -> None:
        self._trusted = parse_networks(trusted_proxies)

    def _trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack listener shows IPv4 peers as ::ffff:a.b.c.d
        return any(ip in network for network in self._trusted)

    def of(self, request: web.Request) -> str:
        peer = request.remote or "unknown"
        if not self._trusted or not self._trusts(peer):
            return peer
        hops = [hop.strip() for value in request.headers.getall("X-Forwarded-For", ()) for hop in value.split(",")]
        hops = [hop for hop in hops if hop]
        for hop in reversed(hops):
            if not self._trusts(hop):
                return hop[:_MAX_ADDRESS_CHARS]
        return hops[0][:_MAX_ADDRESS_CHARS] if hops else peer  # every hop trusted: the first is the client
