"""Pure limiter math, shared by the in-process and Redis backends (the Lua script mirrors it).

Three kinds of limit:
- GCRA (generic cell rate algorithm) for N per second/minute/hour and tokens per minute: a limit of
  N per interval admits a burst of N, then one every interval/N; the state is one timestamp (TAT).
- A fixed UTC-day counter for per-day limits, so daily caps reset at 00:00 UTC.
- A concurrency gauge: requests in flight, released when each one ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DAY_US = 86_400_000_000


class LimitKind(StrEnum):
    GCRA = "gcra"
    DAILY = "daily"
    CONCURRENCY = "concurrency"


@dataclass(frozen=True, slots=True)
class LimitCheck:
    """One limit a request must pass: `limit` units per `period_us`, taking `cost` units now."""

    limit_id: str  # what the 429 names, e.g. free-models-per-min, key-requests
    kind: LimitKind
    key: str  # the state's storage key (subject and period)
    limit: int
    period_us: int
    cost: int = 1


@dataclass(frozen=True, slots=True)
class LimitState:
    """Where a limit stands now: used and remaining units, and when the next unit frees up."""

    check: LimitCheck
    used: int
    remaining: int
    reset_at_us: int


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    states: tuple[LimitState, ...]
    refused_by: LimitState | None = None


def emission_us(check: LimitCheck) -> int:
    return max(1, check.period_us // max(1, check.limit))


def gcra(check: LimitCheck, tat_us: int, now_us: int) -> tuple[bool, int, LimitState]:
    """(allowed, new TAT, state after the decision) for a GCRA limit."""
    step = emission_us(check)
    tolerance = check.period_us - step
    base = max(tat_us, now_us)
    new_tat = base + step * check.cost
    allowed = new_tat - now_us <= tolerance + step and check.cost <= check.limit
    effective = new_tat if allowed else max(tat_us, now_us)
    backlog = max(0, effective - now_us)
    used = min(check.limit, -(-backlog // step))
    remaining = check.limit - used
    reset = (now_us if remaining > 0 else effective - tolerance) if allowed else new_tat - tolerance - step
    return allowed, new_tat if allowed else tat_us, LimitState(check, used, remaining, max(reset, now_us))


def gcra_view(check: LimitCheck, tat_us: int, now_us: int) -> LimitState:
    step = emission_us(check)
    backlog = max(0, tat_us - now_us)
    used = min(check.limit, -(-backlog // step))
    reset = now_us if used < check.limit else tat_us - (check.period_us - step)
    return LimitState(check, used, check.limit - used, max(reset, now_us))


def day_key(now_us: int) -> int:
    return now_us // DAY_US


def next_midnight_us(now_us: int) -> int:
    return (now_us // DAY_US + 1) * DAY_US


def daily(check: LimitCheck, used: int, now_us: int) -> tuple[bool, LimitState]:
    allowed = used + check.cost <= check.limit
    after = used + check.cost if allowed else used
    reset = now_us if after < check.limit else next_midnight_us(now_us)
    return allowed, LimitState(check, after, check.limit - after, reset)


def concurrency(check: LimitCheck, in_flight: int, now_us: int) -> tuple[bool, LimitState]:
    allowed = in_flight + check.cost <= check.limit
    after = in_flight + check.cost if allowed else in_flight
    # A slot frees when a request ends; one second is the honest hint for a retry.
    reset = now_us if after < check.limit else now_us + 1_000_000
    return allowed, LimitState(check, after, check.limit - after, reset)
