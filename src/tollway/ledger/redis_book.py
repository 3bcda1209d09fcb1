"""The hot-path figures in Redis, so any number of gateway processes share one view of every balance.

Each account is a hash (credits, usage, held, ...) loaded once from the ledger of record; holds are
members of a per-account sorted set scored by their expiry, so a crashed process's holds are
released by the next reservation (or `tollway reconcile`) once they expire. Check-and-reserve,
settle and release are single Lua scripts: atomic across processes, one round trip each.
Credit entries from other writers are applied exactly once (a per-entry marker), usage only by
the settling process.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterable
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from tollway.auth.records import KeyRecord, LimitReset
from tollway.errors import ServiceUnavailable
from tollway.ledger.book import AccountSnapshot, Hold, KeySnapshot, ReserveOutcome
from tollway.ledger.records import EntryKind, LedgerEntry
from tollway.ledger.store import LedgerStore
from tollway.ledger.windows import next_reset_us, window_start_us

PREFIX = "tw:book:"

# Shared by reserve and reconcile: drop holds whose expiry passed, giving their amounts back.
_PURGE = """
local function purge(acct, holds, now)
  local expired = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  for _, member in ipairs(expired) do
    local _, _, amount, key_id = string.find(member, '^[^|]*|([^|]*)|(.*)$')
    redis.call('HINCRBY', acct, 'held', -tonumber(amount))
    if key_id ~= '' then redis.call('HINCRBY', ARGV[1] .. 'key:' .. key_id, 'held', -tonumber(amount)) end
    redis.call('ZREM', holds, member)
  end
  return #expired
end
"""

_RESERVE = (
    _PURGE
    + """
-- KEYS: account hash, key hash, holds zset. ARGV: prefix, now, amount, limit (-1 none), window field,
--       member, expiry, day field, week field, month field
local now = tonumber(ARGV[2])
purge(KEYS[1], KEYS[3], now)
local amount = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local a = redis.call('HMGET', KEYS[1], 'credits', 'usage', 'held')
local credits, usage, held = tonumber(a[1] or '0'), tonumber(a[2] or '0'), tonumber(a[3] or '0')
local k = redis.call('HMGET', KEYS[2], ARGV[5], 'held')
local window_used, key_held = tonumber(k[1] or '0'), tonumber(k[2] or '0')
local ok
if amount == 0 then ok = credits - usage >= 0 else ok = credits - usage - held >= amount end
if limit >= 0 then
  local left = limit - window_used - key_held
  ok = ok and left > 0 and left >= amount
end
if ok then
  redis.call('HINCRBY', KEYS[1], 'held', amount)
  redis.call('HINCRBY', KEYS[2], 'held', amount)
  redis.call('ZADD', KEYS[3], ARGV[7], ARGV[6])
end
-- The figures before this reservation, so a refusal can be explained without another round trip.
local extra = redis.call('HMGET', KEYS[1], 'purchased', 'granted')
local windows = redis.call('HMGET', KEYS[2], 'total', ARGV[8], ARGV[9], ARGV[10])
return {ok and 1 or 0, credits, usage, held, tonumber(extra[1] or '0'), tonumber(extra[2] or '0'),
        tonumber(windows[1] or '0'), tonumber(windows[2] or '0'), tonumber(windows[3] or '0'),
        tonumber(windows[4] or '0'), key_held}
"""
)

_SETTLE = """
-- KEYS: account hash, key hash, holds zset. ARGV: member, amount, cost, day field, week field, month field
if redis.call('ZREM', KEYS[3], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'held', -tonumber(ARGV[2]))
  redis.call('HINCRBY', KEYS[2], 'held', -tonumber(ARGV[2]))
end
local cost = tonumber(ARGV[3])
if cost ~= 0 and ARGV[7] == '1' then
  if redis.call('HEXISTS', KEYS[1], 'loaded') == 1 then redis.call('HINCRBY', KEYS[1], 'usage', cost) end
  if redis.call('HEXISTS', KEYS[2], 'loaded') == 1 then
    redis.call('HINCRBY', KEYS[2], 'total', cost)
    redis.call('HINCRBY', KEYS[2], ARGV[4], cost)
    redis.call('HINCRBY', KEYS[2], ARGV[5], cost)
    redis.call('HINCRBY', KEYS[2], ARGV[6], cost)
  end
end
return 1
"""

_INIT = """
-- KEYS: hash. ARGV: field, value, field, value, ...  (only if the hash was not loaded yet)
if redis.call('HEXISTS', KEYS[1], 'loaded') == 1 then return 0 end
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'loaded', '1')
return 1
"""

_APPLY_ONCE = """
-- KEYS: account hash, marker. ARGV: entry id, amount, purchased delta, granted delta
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', 604800) == false then return 0 end
if redis.call('HEXISTS', KEYS[1], 'loaded') == 0 then return 0 end
if tonumber(ARGV[1]) <= tonumber(redis.call('HGET', KEYS[1], 'loaded_through') or '0') then return 0 end
redis.call('HINCRBY', KEYS[1], 'credits', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'purchased', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'granted', ARGV[4])
return 1
"""


def _window_field(reset: LimitReset, at_us: int) -> str:
    return f"{reset.value[0]}:{window_start_us(reset, at_us)}"


def _key_snapshot(
    key: KeyRecord, now_us: int, total: int, held: int, daily: int, weekly: int, monthly: int
) -> KeySnapshot:
    return KeySnapshot(
        limit_nanos=key.limit_nanos,
        limit_reset=key.limit_reset,
        usage_nanos=total,
        usage_daily_nanos=daily,
        usage_weekly_nanos=weekly,
        usage_monthly_nanos=monthly,
        held_nanos=held,
        resets_at_us=next_reset_us(key.limit_reset, now_us) if key.limit_reset else None,
    )


def _unavailable(exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(
        "Balances cannot be checked because Redis is unreachable; the request was not sent. Retry shortly.",
        metadata={"reason": "book_unavailable"},
        headers={"Retry-After": "1"},
    )


class RedisBook:
    def __init__(self, store: LedgerStore, origin: str, url: str, hold_ttl_s: float) -> None:
        self._store = store
        self.origin = origin
        self.sync_lock = asyncio.Lock()
        self.watermark = 0
        self.counts_external_usage = False  # each process's settlement script updates the shared figures
        self._client: redis.Redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._reserve = self._client.register_script(_RESERVE)
        self._settle = self._client.register_script(_SETTLE)
        self._init = self._client.register_script(_INIT)
        self._apply_once = self._client.register_script(_APPLY_ONCE)
        self._hold_ttl_us = int(hold_ttl_s * 1_000_000)
        self._hold_ids = itertools.count(1)
        self._open: dict[int, str] = {}
        # Credit entries written to the ledger but not yet counted in Redis (it was unreachable).
        self._unapplied: list[LedgerEntry] = []
        self._loaded_accounts: set[str] = set()
        self._loaded_keys: set[str] = set()
        self._process = uuid.uuid4().hex[:12]

    @staticmethod
    def account_key(account_id: str) -> str:
        return f"{PREFIX}acct:{account_id}"

    @staticmethod
    def key_key(key_id: str) -> str:
        return f"{PREFIX}key:{key_id}"

    @staticmethod
    def holds_key(account_id: str) -> str:
        return f"{PREFIX}holds:{account_id}"

    async def start(self) -> None:
        self.watermark = await self._store.max_entry_id()

    async def _ensure_account(self, account_id: str) -> None:
        if account_id in self._loaded_accounts:
            return
        if not await self._client.hexists(self.account_key(account_id), "loaded"):
            through = await self._store.max_entry_id()
            totals = await self._store.account_totals(account_id, up_to_id=through)
            await self._init(
                keys=[self.account_key(account_id)],
                args=[
                    "credits",
                    totals.credits_nanos,
                    "usage",
                    totals.usage_nanos,
                    "purchased",
                    totals.purchased_nanos,
                    "granted",
                    totals.granted_nanos,
                    "loaded_through",
                    through,
                ],
            )
        self._loaded_accounts.add(account_id)

    async def _ensure_key(self, key_id: str, now_us: int) -> None:
        if key_id in self._loaded_keys:
            return
        if not await self._client.hexists(self.key_key(key_id), "loaded"):
            totals = await self._store.key_usage(key_id, now_us)
            args: list[Any] = ["total", totals.total_nanos]
            for reset, (start, used) in totals.by_window.items():
                args += [f"{reset.value[0]}:{start}", used]
            await self._init(keys=[self.key_key(key_id)], args=args)
        self._loaded_keys.add(key_id)

    async def account_snapshot(self, account_id: str) -> AccountSnapshot:
        try:
            await self._ensure_account(account_id)
            values = await self._client.hmget(
                self.account_key(account_id), ["credits", "usage", "held", "purchased", "granted"]
            )
        except RedisError as exc:
            raise _unavailable(exc) from exc
        credits, usage, held, purchased, granted = (int(v or 0) for v in values)
        return AccountSnapshot(credits, usage, held, purchased, granted)

    async def key_snapshot(self, key: KeyRecord, now_us: int) -> KeySnapshot:
        fields = ["total", "held"] + [_window_field(reset, now_us) for reset in LimitReset]
        try:
            await self._ensure_key(key.id, now_us)
            values = [int(v or 0) for v in await self._client.hmget(self.key_key(key.id), fields)]
        except RedisError as exc:
            raise _unavailable(exc) from exc
        total, held, daily, weekly, monthly = values
        return _key_snapshot(key, now_us, total, held, daily, weekly, monthly)

    async def try_reserve(self, key: KeyRecord, amount_nanos: int, now_us: int) -> ReserveOutcome:
        hold_id = next(self._hold_ids)
        member = f"{self._process}-{hold_id}|{amount_nanos}|{key.id}"
        window = _window_field(key.limit_reset, now_us) if key.limit_reset else "total"
        try:
            await self._ensure_account(key.account_id)
            await self._ensure_key(key.id, now_us)
            raw = await self._reserve(
                keys=[self.account_key(key.account_id), self.key_key(key.id), self.holds_key(key.account_id)],
                args=[
                    PREFIX,
                    now_us,
                    amount_nanos,
                    -1 if key.limit_nanos is None else key.limit_nanos,
                    window,
                    member,
                    now_us + self._hold_ttl_us,
                    *[_window_field(reset, now_us) for reset in LimitReset],
                ],
            )
        except RedisError as exc:
            raise _unavailable(exc) from exc
        ok, credits, usage, held, purchased, granted, total, daily, weekly, monthly, key_held = (int(v) for v in raw)
        account = AccountSnapshot(credits, usage, held, purchased, granted)
        figures = _key_snapshot(key, now_us, total, key_held, daily, weekly, monthly)
        if not ok:
            return ReserveOutcome(None, account, figures)
        hold = Hold(id=hold_id, account_id=key.account_id, key_id=key.id, amount_nanos=amount_nanos)
        self._open[hold_id] = member
        return ReserveOutcome(hold, account, figures)

    async def _finish(self, hold: Hold, cost_nanos: int, at_us: int, count_usage: bool) -> None:
        member = self._open.pop(hold.id, None)
        if member is None:
            return
        key_id = hold.key_id or ""
        await self._settle(
            keys=[self.account_key(hold.account_id), self.key_key(key_id), self.holds_key(hold.account_id)],
            args=[
                member,
                hold.amount_nanos,
                cost_nanos,
                *[_window_field(r, at_us) for r in LimitReset],
                "1" if count_usage else "0",
            ],
        )

    async def settle(self, hold: Hold, cost_nanos: int, at_us: int) -> None:
        try:
            await self._finish(hold, cost_nanos, at_us, count_usage=True)
        except RedisError:
            # The ledger entry is still written; `tollway reconcile` restores Redis from it.
            self._loaded_accounts.discard(hold.account_id)

    async def release(self, hold: Hold) -> None:
        try:
            await self._finish(hold, 0, 0, count_usage=False)
        except RedisError:
            self._loaded_accounts.discard(hold.account_id)

    async def _apply(self, entry: LedgerEntry) -> None:
        if entry.kind is EntryKind.USAGE or entry.id is None:
            return  # usage reaches Redis through the settling process's own script
        purchased = entry.amount_nanos if entry.kind in (EntryKind.PURCHASE, EntryKind.REFUND) else 0
        granted = entry.amount_nanos if entry.kind is EntryKind.GRANT else 0
        await self._apply_once(
            keys=[self.account_key(entry.account_id), f"{PREFIX}applied:{entry.id}"],
            args=[entry.id, entry.amount_nanos, purchased, granted],
        )

    async def apply_local(self, entry: LedgerEntry) -> None:
        """Count a credit entry in Redis; while Redis is away it is kept and retried by the poller."""
        self._unapplied.append(entry)
        await self._apply_pending()

    async def _apply_pending(self) -> None:
        while self._unapplied:
            try:
                await self._apply(self._unapplied[0])
            except RedisError:
                return
            self._unapplied.pop(0)

    async def apply_external(self, entries: Iterable[LedgerEntry], new_watermark: int) -> None:
        self._unapplied.extend(entries)
        await self._apply_pending()
        if not self._unapplied:
            self.watermark = max(self.watermark, new_watermark)

    @property
    def open_hold_count(self) -> int:
        return len(self._open)

    async def close(self) -> None:
        await self._client.aclose()
