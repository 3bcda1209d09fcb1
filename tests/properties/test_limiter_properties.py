"""The limiter's rules under any arrival pattern, with an injected clock (no sleeps)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.clock import FixedClock
from tollway.limits.memory import MemoryLimiter
from tollway.limits.rules import DAY_US, LimitCheck, LimitKind, next_midnight_us

MINUTE_US = 60_000_000


def acquire(limiter: MemoryLimiter, check: LimitCheck, now_us: int, ticket: str = "t") -> bool:
    return asyncio.run(limiter.acquire([check], now_us, ticket)).allowed


@given(limit=st.integers(1, 200), requests=st.integers(0, 400))
def test_a_burst_admits_exactly_the_limit(limit: int, requests: int) -> None:
    limiter = MemoryLimiter()
    check = LimitCheck("key-requests", LimitKind.GCRA, "k", limit, MINUTE_US)
    admitted = sum(acquire(limiter, check, 1_000_000_000) for _ in range(requests))
    assert admitted == min(limit, requests)


@settings(max_examples=60)
@given(limit=st.integers(1, 30), gaps_ms=st.lists(st.integers(0, 5_000), min_size=1, max_size=300))
def test_no_window_admits_more_than_the_limit_plus_the_refill(limit: int, gaps_ms: list[int]) -> None:
    limiter = MemoryLimiter()
    check = LimitCheck("key-requests", LimitKind.GCRA, "k", limit, MINUTE_US)
    now = 10**12
    admitted_at = []
    for gap in gaps_ms:
        now += gap * 1000
        if acquire(limiter, check, now):
            admitted_at.append(now)
    step = MINUTE_US // limit
    for index, start in enumerate(admitted_at):
        inside = [t for t in admitted_at[index:] if t < start + MINUTE_US]
        assert len(inside) <= limit + MINUTE_US // step


@given(limit=st.integers(1, 50), refusals=st.integers(0, 50))
def test_refused_requests_consume_nothing(limit: int, refusals: int) -> None:
    limiter = MemoryLimiter()
    check = LimitCheck("key-requests", LimitKind.GCRA, "k", limit, MINUTE_US)
    now = 10**12
    for _ in range(limit):
        assert acquire(limiter, check, now)
    for _ in range(refusals):
        assert not acquire(limiter, check, now)
    # Exactly one emission interval later, exactly one more is admitted, however many were refused.
    later = now + MINUTE_US // limit
    assert acquire(limiter, check, later)
    assert not acquire(limiter, check, later)


def test_daily_limits_reset_at_utc_midnight() -> None:
    clock = FixedClock(DAY_US * 20_000 + 23 * 3_600_000_000)  # 23:00 UTC
    limiter = MemoryLimiter()
    check = LimitCheck("free-models-per-day", LimitKind.DAILY, "free:day:a", 2, 0)
    assert acquire(limiter, check, clock.now_us())
    assert acquire(limiter, check, clock.now_us())
    verdict = asyncio.run(limiter.acquire([check], clock.now_us(), "x"))
    assert not verdict.allowed
    assert verdict.refused_by is not None
    assert verdict.refused_by.reset_at_us == next_midnight_us(clock.now_us())
    clock.advance(59 * 60)  # 23:59
    assert not acquire(limiter, check, clock.now_us())
    clock.advance(60)  # 00:00 next day
    assert acquire(limiter, check, clock.now_us())


def test_all_or_nothing_across_several_limits() -> None:
    limiter = MemoryLimiter()
    tight = LimitCheck("key-requests", LimitKind.GCRA, "key", 1, MINUTE_US)
    loose = LimitCheck("account-requests", LimitKind.GCRA, "acct", 10, MINUTE_US)
    now = 10**12
    assert asyncio.run(limiter.acquire([tight, loose], now, "a")).allowed
    refused = asyncio.run(limiter.acquire([tight, loose], now, "b"))
    assert not refused.allowed
    assert refused.refused_by is not None and refused.refused_by.check.limit_id == "key-requests"
    # The account limit was not charged for the refused request: 9 remain.
    assert sum(acquire(limiter, loose, now, f"c{i}") for i in range(20)) == 9


def test_concurrency_slots_free_when_finished() -> None:
    limiter = MemoryLimiter()
    check = LimitCheck("key-concurrency", LimitKind.CONCURRENCY, "key", 2, 0)
    assert acquire(limiter, check, 1, "one")
    assert acquire(limiter, check, 1, "two")
    assert not acquire(limiter, check, 1, "three")
    asyncio.run(limiter.finish([check], "one", {}))
    assert acquire(limiter, check, 1, "three")
