"""The ledger of record without a hot-path book, for admin commands that run beside (or without) a server.

Entries are written with no origin, so every running server's poller counts them within one interval.
"""

from __future__ import annotations

from dataclasses import replace

from tollway.auth.records import KeyRecord, LimitReset
from tollway.clock import Clock
from tollway.ledger.book import AccountSnapshot, KeySnapshot
from tollway.ledger.records import EntryKind, LedgerEntry
from tollway.ledger.redis_scripts import account_hash, key_hash
from tollway.ledger.store import LedgerStore
from tollway.ledger.windows import next_reset_us


class DirectLedger:
    def __init__(self, store: LedgerStore, clock: Clock, redis_url: str | None = None) -> None:
        self.store = store
        self._clock = clock
        self._redis_url = redis_url

    async def _held(self, hash_key: str) -> int:
        """Holds in flight, from Redis when the servers keep them there (0 otherwise: they live in a server)."""
        if self._redis_url is None:
            return 0
        import redis.asyncio as redis
        from redis.exceptions import RedisError

        client: redis.Redis = redis.Redis.from_url(self._redis_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            return int(await client.hget(hash_key, "held") or 0)
        except RedisError:
            return 0
        finally:
            await client.aclose()

    async def append(
        self,
        account_id: str,
        kind: EntryKind,
        amount_nanos: int,
        *,
        reason: str | None = None,
        reference: str | None = None,
    ) -> LedgerEntry | None:
        entry = LedgerEntry(
            account_id=account_id,
            kind=kind,
            amount_nanos=amount_nanos,
            created_at_us=self._clock.now_us(),
            reference=reference,
            reason=reason,
        )
        entry_id = await self.store.append(entry, origin=None)
        return None if entry_id is None else replace(entry, id=entry_id)

    async def account_figures(self, account_id: str) -> AccountSnapshot:
        totals = await self.store.account_totals(account_id)
        return AccountSnapshot(
            credits_nanos=totals.credits_nanos,
            usage_nanos=totals.usage_nanos,
            purchased_nanos=totals.purchased_nanos,
            granted_nanos=totals.granted_nanos,
            held_nanos=await self._held(account_hash(account_id)),
        )

    async def key_figures(self, key: KeyRecord) -> KeySnapshot:
        totals = await self.store.key_usage(key.id, self._clock.now_us())
        return KeySnapshot(
            limit_nanos=key.limit_nanos,
            limit_reset=key.limit_reset,
            usage_nanos=totals.total_nanos,
            usage_daily_nanos=totals.by_window[LimitReset.DAILY][1],
            usage_weekly_nanos=totals.by_window[LimitReset.WEEKLY][1],
            usage_monthly_nanos=totals.by_window[LimitReset.MONTHLY][1],
            held_nanos=await self._held(key_hash(key.id)),
            resets_at_us=next_reset_us(key.limit_reset, self._clock.now_us()) if key.limit_reset else None,
        )
