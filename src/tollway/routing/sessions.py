"""Sticky sessions: requests of one session go to the endpoint that served it last, while that one is healthy.

A client that sends `session_id` (or X-Session-Id) wants its prompt cache to be hit: the provider
that holds the cache is the one that served the session before. Remembered per process (bounded,
least recently used forgotten first, idle sessions forgotten after `ttl_s`) and per account, so one
account's session ids never steer another's requests. Another process routes a session afresh once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from tollway.clock import Clock


class _HasEndpoint(Protocol):
    @property
    def endpoint_id(self) -> str: ...


class _Candidate(Protocol):
    @property
    def endpoint(self) -> _HasEndpoint: ...

    @property
    def model(self) -> object: ...


C = TypeVar("C", bound=_Candidate)


class StickySessions:
    def __init__(self, clock: Clock, *, ttl_s: float = 3600.0, limit: int = 100_000) -> None:
        self._clock = clock
        self._ttl_us = int(ttl_s * 1_000_000)
        self._limit = limit
        self._served: OrderedDict[tuple[str, str], tuple[str, int]] = OrderedDict()  # -> (endpoint id, at_us)

    def endpoint_for(self, account_id: str, session_id: str) -> str | None:
        found = self._served.get((account_id, session_id))
        if found is None:
            return None
        endpoint_id, at_us = found
        if self._clock.now_us() - at_us > self._ttl_us:
            del self._served[(account_id, session_id)]
            return None
        return endpoint_id

    def remember(self, account_id: str, session_id: str, endpoint_id: str) -> None:
        """The endpoint that just served the session: its next requests go there first."""
        subject = (account_id, session_id)
        self._served[subject] = (endpoint_id, self._clock.now_us())
        self._served.move_to_end(subject)
        while len(self._served) > self._limit:
            self._served.popitem(last=False)

    def ordered(
        self, account_id: str, session_id: str, candidates: Sequence[C], available: Callable[[str], bool]
    ) -> list[C]:
        """The candidates with the session's endpoint first, if it serves the same model and is healthy."""
        ordered = list(candidates)
        endpoint_id = self.endpoint_for(account_id, session_id)
        if endpoint_id is None or not ordered or not available(endpoint_id):
            return ordered
        primary = ordered[0].model
        for index, candidate in enumerate(ordered):
            if candidate.endpoint.endpoint_id == endpoint_id and candidate.model is primary:
                ordered.insert(0, ordered.pop(index))
                break
        return ordered
