"""In-process limiter state: exact for one process, no I/O on the hot path."""

from __future__ import annotations

from collections.abc import Sequence

from tollway.ledger.book import Rider
from tollway.limits.rules import (
    LimitCheck,
    LimitKind,
    LimitState,
    Verdict,
    concurrency,
    daily,
    day_key,
    emission_us,
    gcra,
    gcra_view,
)


class MemoryLimiter:
    name = "memory"

    def __init__(self) -> None:
        self._tat: dict[str, int] = {}
        self._daily: dict[tuple[str, int], int] = {}
        self._in_flight: dict[str, set[str]] = {}

    def _decide(self, check: LimitCheck, now_us: int) -> tuple[bool, LimitState, int | None]:
        if check.kind is LimitKind.GCRA:
            allowed, tat, state = gcra(check, self._tat.get(check.key, 0), now_us)
            return allowed, state, tat
        if check.kind is LimitKind.DAILY:
            allowed, state = daily(check, self._daily.get((check.key, day_key(now_us)), 0), now_us)
            return allowed, state, None
        allowed, state = concurrency(check, len(self._in_flight.get(check.key, ())), now_us)
        return allowed, state, None

    async def acquire(self, checks: Sequence[LimitCheck], now_us: int, ticket: str) -> Verdict:
        decisions = [(check, *self._decide(check, now_us)) for check in checks]
        refused = next((state for _check, allowed, state, _tat in decisions if not allowed), None)
        states = tuple(state for _check, _allowed, state, _tat in decisions)
        if refused is not None:
            return Verdict(False, states, refused)
        for check, _allowed, _state, tat in decisions:
            if check.kind is LimitKind.GCRA and tat is not None:
                self._tat[check.key] = tat
            elif check.kind is LimitKind.DAILY:
                window = (check.key, day_key(now_us))
                self._daily[window] = self._daily.get(window, 0) + check.cost
            else:
                self._in_flight.setdefault(check.key, set()).add(ticket)
        if len(self._daily) > 100_000:
            today = day_key(now_us)
            self._daily = {k: v for k, v in self._daily.items() if k[1] >= today}
        return Verdict(True, states)

    def admission_rider(self, checks: Sequence[LimitCheck], now_us: int, ticket: str) -> Rider | None:
        return None  # no round trip to save

    def finish_rider(
        self, checks: Sequence[LimitCheck], ticket: str, token_corrections: dict[str, int]
    ) -> Rider | None:
        return None

    async def give_back(self, checks: Sequence[LimitCheck], ticket: str) -> None:
        for check in checks:
            if check.kind is LimitKind.GCRA and check.key in self._tat:
                self._tat[check.key] -= emission_us(check) * check.cost
            elif check.kind is LimitKind.DAILY:
                for window in [w for w in self._daily if w[0] == check.key]:
                    self._daily[window] = max(0, self._daily[window] - check.cost)
            else:
                self._in_flight.get(check.key, set()).discard(ticket)

    async def finish(self, checks: Sequence[LimitCheck], ticket: str, token_corrections: dict[str, int]) -> None:
        for check in checks:
            if check.kind is LimitKind.CONCURRENCY:
                self._in_flight.get(check.key, set()).discard(ticket)
            elif check.kind is LimitKind.GCRA and check.key in token_corrections and check.key in self._tat:
                self._tat[check.key] += emission_us(check) * token_corrections[check.key]

    async def renew(self, slots: Sequence[tuple[str, str]], now_us: int) -> None:
        """Slots in process live as long as their request: nothing expires them."""

    async def view(self, checks: Sequence[LimitCheck], now_us: int) -> list[LimitState]:
        states = []
        for check in checks:
            if check.kind is LimitKind.GCRA:
                states.append(gcra_view(check, self._tat.get(check.key, 0), now_us))
            else:
                probe = LimitCheck(check.limit_id, check.kind, check.key, check.limit, check.period_us, cost=0)
                states.append(self._decide(probe, now_us)[1])
        return states

    async def close(self) -> None:
        return None
