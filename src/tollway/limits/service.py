"""Rate limits as a request meets them: which limits apply, the 429 that names the one that refused.

Free models (`:free` or priced 0) share an account-wide per-minute and per-UTC-day allowance; the
daily allowance rises once the account has purchased enough (grants do not count). Accounts and keys
may also carry request, token-per-minute and concurrency limits; endpoints may cap requests per second.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from tollway import explanations as explain
from tollway.auth.records import KeyRecord
from tollway.clock import Clock, us_to_iso
from tollway.errors import RateLimited, ServiceUnavailable
from tollway.ids import random_text
from tollway.ledger.admission import CostPlan
from tollway.ledger.book import Rider, RiderRefused
from tollway.ledger.service import Ledger, Reservation
from tollway.limits.backend import LimiterBackend, LimiterUnavailable
from tollway.limits.config import LimitSpec, Period
from tollway.limits.redis_backend import verdict_of
from tollway.limits.rules import LimitCheck, LimitKind, LimitState
from tollway.limits.store import LimitStore

log = logging.getLogger("tollway.limits")

_MINUTE_US = 60_000_000
MAX_TICKET_AGE_S = 3600.0


@dataclass(frozen=True, slots=True)
class FreeTier:
    per_minute: int
    per_day: int
    per_day_unlocked: int
    unlock_purchased_nanos: int

    def daily_limit(self, purchased_nanos: int) -> tuple[int, str]:
        if purchased_nanos >= self.unlock_purchased_nanos:
            return self.per_day_unlocked, "free-models-per-day-high-balance"
        return self.per_day, "free-models-per-day"


@dataclass(slots=True)
class Ticket:
    """What one admitted request took from the limiters, to give back or correct later."""

    checks: list[LimitCheck]
    id: str = field(default_factory=lambda: random_text(22))  # unique across processes (a Redis member)
    token_keys: dict[str, int] = field(default_factory=dict)  # TPM storage key -> tokens taken
    finished: bool = False
    opened_at: float = field(default_factory=time.monotonic)


class LimitRules:
    """Per-account and per-key limits, cached and refreshed from the database by the poller."""

    def __init__(self, store: LimitStore, key_default: LimitSpec, account_default: LimitSpec) -> None:
        self.store = store
        self._key_default = key_default
        self._account_default = account_default
        self._specs: dict[tuple[str, str], LimitSpec] = {}
        self._revision = 0

    async def refresh(self) -> None:
        for kind, subject, spec, revision in await self.store.all_after(self._revision):
            self._specs[(kind, subject)] = spec
            self._revision = max(self._revision, revision)

    def put(self, kind: str, subject: str, spec: LimitSpec) -> None:
        self._specs[(kind, subject)] = spec

    def for_key(self, key_id: str) -> LimitSpec:
        return self._specs.get(("key", key_id), LimitSpec()).merged_over(self._key_default)

    def for_account(self, account_id: str) -> LimitSpec:
        return self._specs.get(("account", account_id), LimitSpec()).merged_over(self._account_default)


def _subject_checks(prefix: str, subject: str, spec: LimitSpec, prompt_tokens: int) -> list[LimitCheck]:
    checks = []
    if spec.requests is not None and spec.period is not None:
        kind = LimitKind.DAILY if spec.period is Period.DAY else LimitKind.GCRA
        checks.append(
            LimitCheck(
                f"{prefix}-requests",
                kind,
                f"{prefix}:req:{spec.period.value}:{subject}",
                spec.requests,
                spec.period.microseconds,
            )
        )
    if spec.tokens_per_minute is not None:
        checks.append(
            LimitCheck(
                f"{prefix}-tokens-per-minute",
                LimitKind.GCRA,
                f"{prefix}:tpm:{subject}",
                spec.tokens_per_minute,
                _MINUTE_US,
                cost=max(1, min(prompt_tokens, spec.tokens_per_minute)),
            )
        )
    if spec.concurrency is not None:
        checks.append(
            LimitCheck(f"{prefix}-concurrency", LimitKind.CONCURRENCY, f"{prefix}:conc:{subject}", spec.concurrency, 0)
        )
    return checks


def explanation_for(state: LimitState) -> explain.Explanation:
    limit_id = state.check.limit_id
    if limit_id.startswith("free-models-per-day"):
        return explain.free_daily_cap(state.check.limit, limit_id.endswith("high-balance"), state.reset_at_us)
    if limit_id == "free-models-per-min":
        return explain.free_per_minute(state.check.limit)
    return explain.rate_limited(limit_id, state.check.limit, state.reset_at_us)


def rate_limited(state: LimitState, now_us: int) -> RateLimited:
    reset_ms = state.reset_at_us // 1000
    retry_after = max(1, math.ceil((state.reset_at_us - now_us) / 1_000_000))
    headers = {
        "Retry-After": str(retry_after),
        "X-RateLimit-Limit": str(state.check.limit),
        "X-RateLimit-Remaining": str(max(0, state.remaining)),
        "X-RateLimit-Reset": str(reset_ms),
    }
    return RateLimited(
        f"Rate limit exceeded: {state.check.limit_id}.",
        metadata={
            "limit": state.check.limit_id,
            "reset_at": us_to_iso(state.reset_at_us),
            "headers": headers,
            "explanation": explanation_for(state).as_dict(),
        },
        headers=headers,
    )


class RateLimiter:
    def __init__(
        self, backend: LimiterBackend, rules: LimitRules, free: FreeTier, clock: Clock, fail_open: bool
    ) -> None:
        self.backend = backend
        self.rules = rules
        self.free_tier = free
        self._free = free
        self._clock = clock
        self._fail_open = fail_open
        # Admitted tickets holding concurrency slots, renewed while their request runs.
        self._open: dict[str, Ticket] = {}

    def free_checks(self, account_id: str, purchased_nanos: int) -> list[LimitCheck]:
        daily_limit, daily_id = self._free.daily_limit(purchased_nanos)
        return [
            LimitCheck(
                "free-models-per-min", LimitKind.GCRA, f"free:min:{account_id}", self._free.per_minute, _MINUTE_US
            ),
            LimitCheck(daily_id, LimitKind.DAILY, f"free:day:{account_id}", daily_limit, 0),
        ]

    def checks_for(
        self,
        key: KeyRecord,
        *,
        free_model: bool,
        purchased_nanos: int,
        prompt_tokens: int,
        endpoint: tuple[str, int] | None,
    ) -> list[LimitCheck]:
        checks = self.free_checks(key.account_id, purchased_nanos) if free_model else []
        checks += _subject_checks("key", key.id, self.rules.for_key(key.id), prompt_tokens)
        checks += _subject_checks("account", key.account_id, self.rules.for_account(key.account_id), prompt_tokens)
        if endpoint is not None:
            endpoint_id, per_second = endpoint
            checks.append(
                LimitCheck("endpoint-requests", LimitKind.GCRA, f"endpoint:{endpoint_id}", per_second, 1_000_000)
            )
        return checks

    def _unavailable(self, exc: Exception) -> ServiceUnavailable:
        log.error("limiter unavailable", extra={"error": str(exc)[:300]})
        return ServiceUnavailable(
            "Rate limits cannot be checked because Redis is unreachable; the request was not sent. Retry shortly.",
            metadata={"reason": "limiter_unavailable"},
            headers={"Retry-After": "1"},
        )

    async def admit(self, checks: list[LimitCheck]) -> Ticket | None:
        if not checks:
            return None
        ticket = Ticket(checks)
        now_us = self._clock.now_us()
        try:
            verdict = await self.backend.acquire(checks, now_us, ticket.id)
        except LimiterUnavailable as exc:
            if self._fail_open:
                return None
            raise self._unavailable(exc) from exc
        if not verdict.allowed:
            assert verdict.refused_by is not None
            raise rate_limited(verdict.refused_by, now_us)
        return self._taken(ticket)

    def _taken(self, ticket: Ticket) -> Ticket:
        checks = ticket.checks
        ticket.token_keys = {c.key: c.cost for c in checks if c.limit_id.endswith("tokens-per-minute")}
        if any(c.kind is LimitKind.CONCURRENCY for c in checks):
            self._open[ticket.id] = ticket
        return ticket

    async def admit_with_hold(
        self, checks: list[LimitCheck], ledger: Ledger, key: KeyRecord, plan: CostPlan
    ) -> tuple[Ticket | None, Reservation]:
        """Take the request's limits and place its hold, or neither: a request refused for credits costs no limit.

        Where the book and the limiter share one Redis, both happen in the book's script, one round trip,
        and a Redis error refuses the request (503) as the book does. Elsewhere the limits are taken first
        and given back when the hold is refused.
        """
        if checks:
            ticket = Ticket(checks)
            now_us = self._clock.now_us()
            rider = self.backend.admission_rider(checks, now_us, ticket.id)
            if rider is not None and ledger.carries(rider):
                try:
                    reservation = await ledger.reserve(key, plan, rider)
                except RiderRefused as refused:
                    verdict = verdict_of(checks, refused.reply)
                    assert verdict.refused_by is not None
                    raise rate_limited(verdict.refused_by, now_us) from None
                return self._taken(ticket), reservation
        taken = await self.admit(checks)
        try:
            reservation = await ledger.reserve(key, plan)
        except BaseException:
            await self.give_back(taken)
            raise
        return taken, reservation

    @staticmethod
    def _slots(tickets: list[Ticket]) -> list[tuple[str, str]]:
        return [(c.key, t.id) for t in tickets if not t.finished for c in t.checks if c.kind is LimitKind.CONCURRENCY]

    async def renew(self, ticket: Ticket | None) -> None:
        """Keep a live request's concurrency slots from expiring (one round trip)."""
        if ticket is None:
            return
        try:
            await self.backend.renew(self._slots([ticket]), self._clock.now_us())
        except LimiterUnavailable as exc:
            log.warning("could not renew a concurrency slot", extra={"error": str(exc)[:300]})

    async def maintain(self, interval_s: float) -> None:
        """Renew every open ticket's slots each interval (a third of their expiry), for the process's life."""
        while True:
            await asyncio.sleep(interval_s)
            # A ticket no request finished within MAX_TICKET_AGE_S was lost (a bug): let its slots expire.
            too_old = time.monotonic() - MAX_TICKET_AGE_S
            for ticket_id in [t.id for t in self._open.values() if t.opened_at < too_old]:
                del self._open[ticket_id]
                log.error("a concurrency slot outlived its request; it is left to expire")
            slots = self._slots(list(self._open.values()))
            if not slots:
                continue
            try:
                await self.backend.renew(slots, self._clock.now_us())
            except LimiterUnavailable as exc:
                log.warning("could not renew concurrency slots", extra={"error": str(exc)[:300]})

    async def give_back(self, ticket: Ticket | None) -> None:
        """The request was refused after admission (credits): it consumes no limit."""
        if ticket is None or ticket.finished:
            return
        ticket.finished = True
        self._open.pop(ticket.id, None)
        try:
            await self.backend.give_back(ticket.checks, ticket.id)
        except LimiterUnavailable as exc:
            log.warning("could not give back a limit", extra={"error": str(exc)[:300]})

    def finish_rider(self, ticket: Ticket | None, tokens_used: int, ledger: Ledger) -> Rider | None:
        """The ticket's finish as a step of the book's settle or release script (one round trip), where the
        book can take it; the ticket is then finished and `finish` has nothing left to do."""
        if ticket is None or ticket.finished:
            return None
        corrections = {key: tokens_used - taken for key, taken in ticket.token_keys.items()}
        rider = self.backend.finish_rider(ticket.checks, ticket.id, corrections)
        if rider is None or not ledger.carries(rider):
            return None
        ticket.finished = True
        self._open.pop(ticket.id, None)
        return rider

    async def finish(self, ticket: Ticket | None, tokens_used: int) -> None:
        """Free concurrency and correct tokens-per-minute from the estimate to what was really used."""
        if ticket is None or ticket.finished:
            return
        ticket.finished = True
        self._open.pop(ticket.id, None)
        corrections = {key: tokens_used - taken for key, taken in ticket.token_keys.items()}
        try:
            await self.backend.finish(ticket.checks, ticket.id, corrections)
        except LimiterUnavailable as exc:
            log.warning("could not finish a limit ticket", extra={"error": str(exc)[:300]})

    async def view(self, checks: list[LimitCheck]) -> list[LimitState]:
        try:
            return await self.backend.view(checks, self._clock.now_us())
        except LimiterUnavailable:
            return []

    async def free_daily(self, account_id: str, purchased_nanos: int) -> dict[str, int] | None:
        """/key's free_model_daily_requests: {limit, used, remaining} for today (UTC)."""
        states = await self.view(self.free_checks(account_id, purchased_nanos))
        if not states:
            return None
        daily_state = states[1]
        return {"limit": daily_state.check.limit, "used": daily_state.used, "remaining": daily_state.remaining}

    def tightest_request_limit(self, key: KeyRecord) -> dict[str, Any] | None:
        """/key's rate_limit: the request limit of the key or account with the lowest rate."""
        candidates = [self.rules.for_key(key.id), self.rules.for_account(key.account_id)]
        limits = [(s.requests / s.period.microseconds, s) for s in candidates if s.requests and s.period]
        if not limits:
            return None
        _rate, spec = min(limits, key=lambda item: item[0])
        assert spec.period is not None
        return {"requests": spec.requests, "interval": spec.period.short}
