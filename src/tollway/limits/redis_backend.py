"""Shared limiter state in Redis: one Lua script per decision, so any number of processes enforce one limit.

The script mirrors rules.py: GCRA timestamps, UTC-day counters and concurrency sets (members expire,
so a crashed process's slots free themselves). All checks pass or none is applied. Where the book's
figures live in the same Redis, a request's decision runs inside the book's reserve script and its
finish inside the settle script (LIMIT_RIDER), rather than as scripts of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from tollway.ledger.book import Rider
from tollway.ledger.redis_fast import ScriptRunner, script_for
from tollway.ledger.redis_loader import connect
from tollway.limits.backend import LimiterUnavailable
from tollway.limits.rules import DAY_US, LimitCheck, LimitKind, LimitState, Verdict, emission_us, next_midnight_us

_PREFIX = "tw:limit:"
_DEFAULT_SLOT_TTL_S = 15 * 60.0
# Marks a request's concurrency slots ended for this long: a renewal snapshot is sent within a second.
_FINISHED_PREFIX = _PREFIX + "finished:"
_FINISHED_TTL_S = 30

# The limiter's decision and its two effects, as Lua functions: its own scripts call them, and so does the
# book's reserve and settle script when the limiter rides with a hold (LIMIT_RIDER), so both use one text.
# argv of a decision: now, ticket, slot ttl, day length, apply (1/0), then per key: kind, limit, period, cost.
# argv of an adjustment: per key: kind, amount, ticket.
_LIBRARY = """
local function limits_decide(keys, argv)
  local now = tonumber(argv[1])
  local day_us = tonumber(argv[4])
  local out = {}
  local ok = 1
  local refused = 0
  local new_values = {}
  for i = 1, #keys do
    local base = 5 + (i - 1) * 4
    local kind = argv[base + 1]
    local limit = tonumber(argv[base + 2])
    local period = tonumber(argv[base + 3])
    local cost = tonumber(argv[base + 4])
    local key = keys[i]
    local used, reset, allowed
    if kind == 'gcra' then
      local step = math.max(1, math.floor(period / math.max(1, limit)))
      local tat = tonumber(redis.call('GET', key) or '0')
      local start = math.max(tat, now)
      local new_tat = start + step * cost
      allowed = (new_tat - now <= period) and (cost <= limit)
      local effective = start
      if allowed then effective = new_tat end
      local backlog = math.max(0, effective - now)
      used = math.min(limit, math.ceil(backlog / step))
      if allowed then
        new_values[i] = new_tat
        if limit - used > 0 then reset = now else reset = effective - period + step end
      else
        reset = new_tat - period
      end
    elseif kind == 'daily' then
      local count = tonumber(redis.call('GET', key) or '0')
      allowed = count + cost <= limit
      if allowed then used = count + cost else used = count end
      if used < limit then reset = now else reset = (math.floor(now / day_us) + 1) * day_us end
    else
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
      local count = redis.call('ZCARD', key)
      allowed = count + cost <= limit
      if allowed then used = count + cost else used = count end
      if used < limit then reset = now else reset = now + 1000000 end
    end
    if reset < now then reset = now end
    if not allowed and ok == 1 then ok = 0; refused = i end
    out[#out + 1] = used
    out[#out + 1] = reset
  end
  table.insert(out, 1, refused)
  table.insert(out, 1, ok)
  return out, new_values
end

local function limits_apply(keys, argv, new_values)
  local now = tonumber(argv[1])
  local ticket = argv[2]
  local slot_ttl = tonumber(argv[3])
  local day_us = tonumber(argv[4])
  for i = 1, #keys do
    local base = 5 + (i - 1) * 4
    local kind = argv[base + 1]
    local period = tonumber(argv[base + 3])
    local cost = tonumber(argv[base + 4])
    local key = keys[i]
    if kind == 'gcra' then
      redis.call('SET', key, string.format('%.0f', new_values[i]), 'PX', math.ceil(period / 1000) + 1000)
    elseif kind == 'daily' then
      redis.call('INCRBY', key, cost)
      local midnight_ms = math.floor(((math.floor(now / day_us) + 1) * day_us) / 1000)
      redis.call('PEXPIREAT', key, string.format('%.0f', midnight_ms + 3600000))
    else
      redis.call('ZADD', key, string.format('%.0f', now + slot_ttl), ticket)
      redis.call('PEXPIRE', key, math.ceil(slot_ttl / 1000))
    end
  end
end

local function limits_adjust(keys, argv)
  for i = 1, #keys do
    local base = (i - 1) * 3
    local kind = argv[base + 1]
    local amount = tonumber(argv[base + 2])
    local ticket = argv[base + 3]
    if kind == 'gcra' then
      local tat = redis.call('GET', keys[i])
      if tat then redis.call('SET', keys[i], string.format('%.0f', tonumber(tat) + amount), 'KEEPTTL') end
    elseif kind == 'daily' then
      if redis.call('EXISTS', keys[i]) == 1 then redis.call('DECRBY', keys[i], amount) end
    elseif kind == 'concurrency' then
      redis.call('ZREM', keys[i], ticket)
      -- A renewal sent before this but run after it (another connection) must not put the slot back.
      redis.call('SET', 'FINISHED_PREFIX' .. ticket, '1', 'EX', FINISHED_TTL)
    end
  end
  return 1
end
""".replace("FINISHED_PREFIX", _FINISHED_PREFIX).replace("FINISHED_TTL", str(_FINISHED_TTL_S))

_ACQUIRE = (
    _LIBRARY
    + """
local out, new_values = limits_decide(KEYS, ARGV)
if out[1] == 1 and ARGV[5] == '1' then limits_apply(KEYS, ARGV, new_values) end
return out
"""
)

_GIVE_BACK = _LIBRARY + "return limits_adjust(KEYS, ARGV)"

# The limiter as a rider of the book (ledger/book.py Rider): its hooks, over the same functions.
LIMIT_RIDER = (
    _LIBRARY
    + """
local function rider_check(keys, argv)
  local out, new_values = limits_decide(keys, argv)
  return out[1] == 1, out, new_values
end
local function rider_take(keys, argv, new_values) limits_apply(keys, argv, new_values) end
local function rider_end(keys, argv) limits_adjust(keys, argv) end
"""
)


# A live request keeps its concurrency slots: push their expiry out, put back a slot Redis lost.
_RENEW = """
-- KEYS: concurrency sets. ARGV: expiry, set ttl (ms), then one ticket per key. A slot its request ended
-- since this renewal was sent stays ended.
for i = 1, #KEYS do
  if redis.call('EXISTS', 'FINISHED_PREFIX' .. ARGV[2 + i]) == 0 then
    redis.call('ZADD', KEYS[i], ARGV[1], ARGV[2 + i])
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
end
return #KEYS
""".replace("FINISHED_PREFIX", _FINISHED_PREFIX)


def _storage_key(check: LimitCheck, now_us: int) -> str:
    if check.kind is LimitKind.DAILY:
        return f"{_PREFIX}{check.key}:{now_us // DAY_US}"
    return f"{_PREFIX}{check.key}"


def verdict_of(checks: Sequence[LimitCheck], reply: Sequence[Any]) -> Verdict:
    """The verdict in a decision's reply: allowed, the index of the check that refused, then used and reset."""
    ok, refused = bool(int(reply[0])), int(reply[1])
    states = tuple(
        LimitState(check, int(reply[2 + i * 2]), check.limit - int(reply[2 + i * 2]), int(reply[3 + i * 2]))
        for i, check in enumerate(checks)
    )
    return Verdict(ok, states, None if ok else states[refused - 1])


class RedisLimiter:
    name = "redis"

    def __init__(self, url: str, slot_ttl_s: float = _DEFAULT_SLOT_TTL_S) -> None:
        self._url = url
        self._client: redis.Redis = connect(url)
        # Acquire and give back run on every request: the lean runner; the rest on redis-py.
        self._runner = ScriptRunner.from_url(url)
        self._acquire = script_for(self._client, self._runner, _ACQUIRE)
        self._give_back = script_for(self._client, self._runner, _GIVE_BACK)
        self._renew = self._client.register_script(_RENEW)
        # A slot a dead process left behind frees itself this long after its last renewal.
        self._slot_ttl_us = int(slot_ttl_s * 1_000_000)
        self._last_day: dict[str, int] = {}

    def _decision(
        self, checks: Sequence[LimitCheck], now_us: int, ticket: str, apply: bool
    ) -> tuple[list[str], list[str | int]]:
        keys = [_storage_key(check, now_us) for check in checks]
        args: list[str | int] = [now_us, ticket, self._slot_ttl_us, DAY_US, "1" if apply else "0"]
        for check in checks:
            args += [check.kind.value, check.limit, check.period_us, check.cost]
        if apply:
            for check in checks:
                if check.kind is LimitKind.DAILY:
                    self._last_day[check.key] = now_us // DAY_US
        return keys, args

    async def _run_acquire(self, checks: Sequence[LimitCheck], now_us: int, ticket: str, apply: bool) -> Verdict:
        keys, args = self._decision(checks, now_us, ticket, apply)
        try:
            raw = await self._acquire(keys=keys, args=args)
        except RedisError as exc:
            raise LimiterUnavailable(f"Redis is unreachable: {exc}") from exc
        return verdict_of(checks, raw)

    async def acquire(self, checks: Sequence[LimitCheck], now_us: int, ticket: str) -> Verdict:
        return await self._run_acquire(checks, now_us, ticket, apply=True)

    def admission_rider(self, checks: Sequence[LimitCheck], now_us: int, ticket: str) -> Rider:
        """The acquire as a rider of the book's reserve script: taken with the hold, or not at all."""
        keys, args = self._decision(checks, now_us, ticket, apply=True)
        return Rider(self._url, LIMIT_RIDER, tuple(keys), tuple(args))

    def _adjustment(self, items: list[tuple[LimitCheck, int, str]]) -> tuple[list[str], list[str | int]]:
        keys: list[str] = []
        args: list[str | int] = []
        for check, amount, ticket in items:
            if check.kind is LimitKind.DAILY:
                day = self._last_day.get(check.key, 0)
                keys.append(f"{_PREFIX}{check.key}:{day}")
            else:
                keys.append(f"{_PREFIX}{check.key}")
            args += [check.kind.value, amount, ticket]
        return keys, args

    async def _adjust(self, items: list[tuple[LimitCheck, int, str]]) -> None:
        if not items:
            return
        keys, args = self._adjustment(items)
        try:
            await self._give_back(keys=keys, args=args)
        except RedisError as exc:
            raise LimiterUnavailable(f"Redis is unreachable: {exc}") from exc

    async def give_back(self, checks: Sequence[LimitCheck], ticket: str) -> None:
        items = []
        for check in checks:
            amount = -emission_us(check) * check.cost if check.kind is LimitKind.GCRA else check.cost
            items.append((check, amount, ticket))
        await self._adjust(items)

    @staticmethod
    def _finishing(
        checks: Sequence[LimitCheck], ticket: str, token_corrections: dict[str, int]
    ) -> list[tuple[LimitCheck, int, str]]:
        items = []
        for check in checks:
            if check.kind is LimitKind.CONCURRENCY:
                items.append((check, 0, ticket))
            elif check.kind is LimitKind.GCRA and check.key in token_corrections:
                items.append((check, emission_us(check) * token_corrections[check.key], ticket))
        return items

    async def finish(self, checks: Sequence[LimitCheck], ticket: str, token_corrections: dict[str, int]) -> None:
        await self._adjust(self._finishing(checks, ticket, token_corrections))

    def finish_rider(
        self, checks: Sequence[LimitCheck], ticket: str, token_corrections: dict[str, int]
    ) -> Rider | None:
        """The finish as a rider of the book's settle script; None when there is nothing to finish."""
        items = self._finishing(checks, ticket, token_corrections)
        if not items:
            return None
        keys, args = self._adjustment(items)
        return Rider(self._url, LIMIT_RIDER, tuple(keys), tuple(args))

    async def renew(self, slots: Sequence[tuple[str, str]], now_us: int) -> None:
        if not slots:
            return
        keys = [f"{_PREFIX}{check_key}" for check_key, _ticket in slots]
        args: list[Any] = [now_us + self._slot_ttl_us, self._slot_ttl_us // 1000 + 1000]
        args += [ticket for _check_key, ticket in slots]
        try:
            await self._renew(keys=keys, args=args)
        except RedisError as exc:
            raise LimiterUnavailable(f"Redis is unreachable: {exc}") from exc

    async def view(self, checks: Sequence[LimitCheck], now_us: int) -> list[LimitState]:
        probes = [LimitCheck(c.limit_id, c.kind, c.key, c.limit, c.period_us, cost=0) for c in checks]
        if not probes:
            return []
        states = (await self._run_acquire(probes, now_us, "", apply=False)).states
        return [LimitState(check, s.used, s.remaining, s.reset_at_us) for check, s in zip(checks, states, strict=True)]

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except RedisError:
            return False

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.aclose()
        await self._client.aclose()


__all__ = ["LIMIT_RIDER", "RedisLimiter", "next_midnight_us", "verdict_of"]
