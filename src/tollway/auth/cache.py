"""Key lookups for the hot path: an in-memory map refreshed from the database's key revisions.

Every request reads its key, so the lookup must not touch the database; a change made anywhere
(API, CLI, another process) bumps the key's revision, and `refresh` (run every poll interval)
brings it in, so a disabled key or lowered cap is enforced within one interval.
"""

from __future__ import annotations

from tollway.auth.keys import hash_key
from tollway.auth.records import KeyRecord
from tollway.auth.store import AccountStore

_NEGATIVE_CACHE_LIMIT = 10_000


class KeyCache:
    def __init__(self, store: AccountStore) -> None:
        self._store = store
        self._by_hash: dict[str, KeyRecord] = {}
        self._unknown: set[str] = set()
        self._revision = 0

    async def start(self) -> None:
        self._revision = await self._store.max_key_revision()

    async def lookup(self, plain_key: str) -> KeyRecord | None:
        key_hash = hash_key(plain_key)
        record = self._by_hash.get(key_hash)
        if record is not None:
            return record
        if key_hash in self._unknown:
            return None
        record = await self._store.key_by_hash(key_hash)
        if record is None:
            if len(self._unknown) >= _NEGATIVE_CACHE_LIMIT:
                self._unknown.clear()
            self._unknown.add(key_hash)
            return None
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
        self._unknown.discard(record.hash)

    async def refresh(self) -> int:
        changed = await self._store.keys_changed_after(self._revision)
        for record in changed:
            self.put(record)
            self._revision = max(self._revision, record.revision)
        return len(changed)
