"""Shared limiter state in Redis: one Lua script per decision, so any number of processes enforce one limit.

The script mirrors rules.py: GCRA timestamps, UTC-day counters and concurrency sets (members expire,
so a crashed process's slots free themselves). All checks pass or none is applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from tollway.ledger.redis_fast import ScriptRunner, script_for
from tollway.ledger.redis_loader import connect
from tollway.limits.backend import LimiterUnavailable
from tollway.limits.rules import DAY_US, LimitCheck, LimitKind, LimitState, Verdict, emission_us, next_midnight_us

_PREFIX = "tw:limit:"
_DEFAULT_SLOT_TTL_S = 15 * 60.0

_ACQUIRE = """
local now = tonumber(ARGV[1])
local ticket = ARGV[2]
local slot_ttl = tonumber(ARGV[3])
local day_us = tonumber(ARGV[4])
local apply = ARGV[5] == '1'
local n = #KEYS
local out = {}
local ok = 1
local refused = 0
local new_values = {}
for i = 1, n do
  local base = 5 + (i - 1) * 4
  local kind = ARGV[base + 1]
  local limit = tonumber(ARGV[base + 2])
  local period = tonumber(ARGV[base + 3])
  local cost = tonumber(ARGV[base + 4])
  local key = KEYS[i]
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
if ok == 1 and apply then
  for i = 1, n do
    local base = 5 + (i - 1) * 4
    local kind = ARGV[base + 1]
    local period = tonumber(ARGV[base + 3])
    local cost = tonumber(ARGV[base + 4])
    local key = KEYS[i]
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
table.insert(out, 1, refused)
table.insert(out, 1, ok)
return out
"""

_GIVE_BACK = """
for i = 1, #KEYS do
  local base = (i - 1) * 3
  local kind = ARGV[base + 1]
  local amount = tonumber(ARGV[base + 2])
  local ticket = ARGV[base + 3]
  if kind == 'gcra' then
    if redis.call('EXISTS', KEYS[i]) == 1 then
      redis.call('SET', KEYS[i], string.format('%.0f', tonumber(redis.call('GET', KEYS[i])) + amount), 'KEEPTTL')
    end
  elseif kind == 'daily' then
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('DECRBY', KEYS[i], amount) end
  elseif kind == 'concurrency' then
    redis.call('ZREM', KEYS[i], ticket)
  end
end
return 1
"""


# A live request keeps its concurrency slots: push their expiry out, put back a slot Redis lost.
_RENEW = """
-- KEYS: concurrency sets. ARGV: expiry, set ttl (ms), then one ticket per key
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[1], ARGV[2 + i])
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
return #KEYS
"""


def _storage_key(check: LimitCheck, now_us: int) -> str:
    if check.kind is LimitKind.DAILY:
        return f"{_PREFIX}{check.key}:{now_us // DAY_US}"
    return f"{_PREFIX}{check.key}"


class RedisLimiter:
    name = "redis"

    def __init__(self, url: str, slot_ttl_s: float = _DEFAULT_SLOT_TTL_S) -> None:
        self._client: redis.Redis = connect(url)
        # Acquire and give back run on every request: the lean runner; the rest on redis-py.
        self._runner = ScriptRunner.from_url(url)
        self._acquire = script_for(self._client, self._runner, _ACQUIRE)
        self._give_back = script_for(self._client, self._runner, _GIVE_BACK)
        self._renew = self._client.register_script(_RENEW)
        # A slot a dead process left behind frees itself this long after its last renewal.
        self._slot_ttl_us = int(slot_ttl_s * 1_000_000)
        self._last_day: dict[str, int] = {}

    async def _run_acquire(
        self, checks: Sequence[LimitCheck], now_us: int, ticket: str, apply: bool
    ) -> tuple[bool, int, list[LimitState]]:
        keys = [_storage_key(check, now_us) for check in checks]
        args: list[Any] = [now_us, ticket, self._slot_ttl_us, DAY_US, "1" if apply else "0"]
        for check in checks:
            args += [check.kind.value, check.limit, check.period_us, check.cost]
        try:
            raw = await self._acquire(keys=keys, args=args)
        except RedisError as exc:
            raise LimiterUnavailable(f"Redis is unreachable: {exc}") from exc
        ok, refused = int(raw[0]), int(raw[1])
        states = [
            LimitState(check, int(raw[2 + i * 2]), check.limit - int(raw[2 + i * 2]), int(raw[3 + i * 2]))
            for i, check in enumerate(checks)
        ]
        return bool(ok), refused, states

    async def acquire(self, checks: Sequence[LimitCheck], now_us: int, ticket: str) -> Verdict:
        for check in checks:
            if check.kind is LimitKind.DAILY:
                self._last_day[check.key] = now_us // DAY_US
        ok, refused, states = await self._run_acquire(checks, now_us, ticket, apply=True)
        return Verdict(ok, tuple(states), None if ok else states[refused - 1])

    async def _adjust(self, items: list[tuple[LimitCheck, int, str]]) -> None:
        if not items:
            return
        keys, args = [], []
        for check, amount, ticket in items:
            if check.kind is LimitKind.DAILY:
                day = self._last_day.get(check.key, 0)
                keys.append(f"{_PREFIX}{check.key}:{day}")
            else:
                keys.append(f"{_PREFIX}{check.key}")
            args += [check.kind.value, amount, ticket]
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

    async def finish(self, checks: Sequence[LimitCheck], ticket: str, token_corrections: dict[str, int]) -> None:
        items = []
        for check in checks:
            if check.kind is LimitKind.CONCURRENCY:
                items.append((check, 0, ticket))
            elif check.kind is LimitKind.GCRA and check.key in token_corrections:
                items.append((check, emission_us(check) * token_corrections[check.key], ticket))
        await self._adjust(items)

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
        _ok, _refused, states = await self._run_acquire(probes, now_us, "", apply=False)
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


__all__ = ["RedisLimiter", "next_midnight_us"]
