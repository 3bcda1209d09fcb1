"""Failed authentications per client address: a token bucket each, in a bounded map.

A client that sends wrong keys spends its bucket and then gets 429 until it refills; clients whose
key is known never touch it. The map forgets the least recently seen address when it is full.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

_MAX_ADDRESSES = 100_000


class FailureThrottle:
    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        max_addresses: int = _MAX_ADDRESSES,
        now_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate_per_s = per_minute / 60.0
        self._burst = float(burst)
        self._max_addresses = max_addresses
        self._now_s = now_s
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (tokens, at_s)

    def _tokens(self, address: str, now: float) -> float:
        entry = self._buckets.get(address)
        if entry is None:
            return self._burst
        tokens, at_s = entry
        return min(self._burst, tokens + (now - at_s) * self._rate_per_s)

    def retry_after_s(self, address: str) -> int:
        """0 when this address may try a key; otherwise whole seconds until one failure is allowed again."""
        if address not in self._buckets:
            return 0
        tokens = self._tokens(address, self._now_s())
        if tokens >= 1.0:
            return 0
        return max(1, math.ceil((1.0 - tokens) / self._rate_per_s))

    def failed(self, address: str) -> None:
        now = self._now_s()
        tokens = self._tokens(address, now)
        self._buckets[address] = (max(0.0, tokens - 1.0), now)
        self._buckets.move_to_end(address)
        while len(self._buckets) > self._max_addresses:
            self._buckets.popitem(last=False)
