"""Sticky sessions: requests of one session go to the endpoint that served it last, while that one is healthy.

A client that sends `session_id` (or X-Session-Id) wants its prompt cache to be hit: the provider
that holds the cache is the one that served the session before. Remembered per account, so one
account's session ids never steer another's requests; idle sessions are forgotten after `ttl_s`.
With Redis (several processes) the memory is shared there; this process's own memory (bounded, least
recently used forgotten first) answers when Redis does not, since stickiness is an optimisation only.
Only requests that name a session pay for it: one Redis read before routing, one write after.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import redis.asyncio as redis
from redis.exceptions import RedisError

from tollway.clock import Clock

log = logging.getLogger(__name__)
_REDIS_PREFIX = "tollway:session:"
_REDIS_BACKOFF_S = 10.0


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
    def __init__(
        self, clock: Clock, *, ttl_s: float = 3600.0, limit: int = 100_000, redis_url: str | None = None
    ) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._ttl_us = int(ttl_s * 1_000_000)
        self._limit = limit
        self._served: OrderedDict[tuple[str, str], tuple[str, int]] = OrderedDict()  # -> (endpoint id, at_us)
        self._redis: redis.Redis | None = (
            redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5) if redis_url else None
        )
        self._redis_down_until = 0.0  # after a failure, Redis is left alone for a while (monotonic seconds)

    def _shared(self) -> redis.Redis | None:
        return self._redis if self._redis is not None and time.monotonic() >= self._redis_down_until else None

    def _redis_failed(self, what: str, exc: Exception) -> None:
        self._redis_down_until = time.monotonic() + _REDIS_BACKOFF_S
        log.warning(
            f"sticky session {what} failed; memory only for {_REDIS_BACKOFF_S:.0f} s", extra={"error": str(exc)[:200]}
        )

    @staticmethod
    def _redis_key(account_id: str, session_id: str) -> str:
        digest = hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"{_REDIS_PREFIX}{account_id}:{digest}"

    def endpoint_for(self, account_id: str, session_id: str) -> str | None:
        """This process's memory of the session's endpoint."""
        found = self._served.get((account_id, session_id))
        if found is None:
            return None
        endpoint_id, at_us = found
        if self._clock.now_us() - at_us > self._ttl_us:
            del self._served[(account_id, session_id)]
            return None
        return endpoint_id

    async def lookup(self, account_id: str, session_id: str) -> str | None:
        """The session's endpoint: Redis's (shared by every process) when there is Redis, else this process's."""
        shared = self._shared()
        if shared is not None:
            try:
                raw = await shared.get(self._redis_key(account_id, session_id))
            except RedisError as exc:
                self._redis_failed("lookup", exc)
            else:
                return raw.decode() if isinstance(raw, bytes) else raw
        return self.endpoint_for(account_id, session_id)

    def remember_here(self, account_id: str, session_id: str, endpoint_id: str) -> None:
        subject = (account_id, session_id)
        self._served[subject] = (endpoint_id, self._clock.now_us())
        self._served.move_to_end(subject)
        while len(self._served) > self._limit:
            self._served.popitem(last=False)

    async def remember(self, account_id: str, session_id: str, endpoint_id: str) -> None:
        """The endpoint that just served the session: its next requests go there first."""
        self.remember_here(account_id, session_id, endpoint_id)
        shared = self._shared()
        if shared is not None:
            try:
                await shared.set(self._redis_key(account_id, session_id), endpoint_id, ex=int(self._ttl_s))
            except RedisError as exc:
                self._redis_failed("write", exc)

    async def ordered(
        self, account_id: str, session_id: str, candidates: Sequence[C], available: Callable[[str], bool]
    ) -> list[C]:
        """The candidates with the session's endpoint first, if it serves the same model and is healthy."""
        ordered = list(candidates)
        endpoint_id = await self.lookup(account_id, session_id)
        if endpoint_id is None or not ordered or not available(endpoint_id):
            return ordered
        primary = ordered[0].model
        for index, candidate in enumerate(ordered):
            if candidate.endpoint.endpoint_id == endpoint_id and candidate.model is primary:
                ordered.insert(0, ordered.pop(index))
                break
        return ordered

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
