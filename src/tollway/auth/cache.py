"""Key lookups for the hot path: an in-memory map refreshed from the database's key revisions.

Every request reads its key, so the lookup must not touch the database; a change made anywhere
(API, CLI, another process) bumps the key's revision, and `refresh` (run every poll interval)
brings it in, so a disabled key or lowered cap is enforced within one interval.

Every key is loaded at start, so the map is complete but for keys another process created since the
last refresh. Unknown keys are still looked up (such a key works at once everywhere), but a flood of
distinct bogus keys cannot turn into a flood of queries: those that miss are limited to
`_MISSES_PER_S` a second for the whole process, and beyond that an unknown key is refused from memory
(a key created elsewhere in that moment waits at most one refresh). Unknown keys are also remembered
(bounded, least recently seen forgotten first); a key created here leaves that memory at once (`put`),
one created by another process at the next refresh.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from tollway.auth.keys import hash_key
from tollway.auth.records import KeyRecord
from tollway.auth.store import AccountStore
from tollway.auth.throttle import FailureThrottle

_NEGATIVE_CACHE_LIMIT = 100_000
# A safety net only: refresh drops a created key's hash from the negative cache within a poll interval.
_NEGATIVE_TTL_S = 60.0
_MISSES_PER_S = 10
_ALL_MISSES = "*"


class KeyCache:
    def __init__(
        self,
        store: AccountStore,
        *,
        unknown_limit: int = _NEGATIVE_CACHE_LIMIT,
        throttle: FailureThrottle | None = None,
        now_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._by_hash: dict[str, KeyRecord] = {}
        self._unknown: OrderedDict[str, float] = OrderedDict()  # key hash -> when it was found unknown
        self._unknown_limit = unknown_limit
        self._now_s = now_s
        self._revision = 0
        # Failed authentications per client address; the API edge consults it.
        self.failures = throttle or FailureThrottle(per_minute=60, burst=30)
        self._misses = FailureThrottle(per_minute=_MISSES_PER_S * 60, burst=_MISSES_PER_S, now_s=now_s)

    async def start(self) -> None:
        self._revision = await self._store.max_key_revision()
        for record in await self._store.keys_changed_after(0):
            self.put(record)

    def cached(self, plain_key: str) -> KeyRecord | None:
        """The key's record if this process already holds it (no database query)."""
        return self._by_hash.get(hash_key(plain_key))

    async def lookup(self, plain_key: str) -> KeyRecord | None:
        key_hash = hash_key(plain_key)
        record = self._by_hash.get(key_hash)
        if record is not None:
            return record
        seen_at = self._unknown.get(key_hash)
        now = self._now_s()
        if seen_at is not None and now - seen_at < _NEGATIVE_TTL_S:
            self._unknown.move_to_end(key_hash)
            return None
        if self._misses.retry_after_s(_ALL_MISSES):
            return None  # a flood of unknown keys: memory is complete up to the last refresh
        record = await self._store.key_by_hash(key_hash)
        if record is None:
            self._misses.failed(_ALL_MISSES)
            self._unknown[key_hash] = now
            self._unknown.move_to_end(key_hash)
            while len(self._unknown) > self._unknown_limit:
                self._unknown.popitem(last=False)
            return None
        self._unknown.pop(key_hash, None)
        self._by_hash[key_hash] = record
        return record

    def put(self, record: KeyRecord) -> None:
        """Take a change made by this process at once, without waiting for the next refresh.

        The watermark does not move here: changes other processes committed just before this one
        (smaller revisions) are still to be read by `refresh`.
        """
        current = self._by_hash.get(record.hash)
        if current is None or current.revision <= record.revision:
            self._by_hash[record.hash] = record
        self._unknown.pop(record.hash, None)

    async def refresh(self) -> int:
        changed = await self._store.keys_changed_after(self._revision)
        for record in changed:
            self.put(record)
            self._revision = max(self._revision, record.revision)
        return len(changed)
