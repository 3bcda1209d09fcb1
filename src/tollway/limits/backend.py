"""Limiter backends behind one interface: in-process (the embedded default) and Redis (shared)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tollway.ledger.book import Rider
from tollway.limits.rules import LimitCheck, LimitState, Verdict


class LimiterUnavailable(RuntimeError):
    """The shared limiter (Redis) cannot be reached."""


class LimiterBackend(Protocol):
    name: str

    async def acquire(self, checks: Sequence[LimitCheck], now_us: int, ticket: str) -> Verdict:
        """Apply every check or none: a refused request consumes no limit."""
        ...

    def admission_rider(self, checks: Sequence[LimitCheck], now_us: int, ticket: str) -> Rider | None:
        """The acquire as a step of the book's reserve script (one round trip), or None where it cannot be."""
        ...

    def finish_rider(
        self, checks: Sequence[LimitCheck], ticket: str, token_corrections: dict[str, int]
    ) -> Rider | None:
        """The finish as a step of the book's settle script, or None (nothing to do, or it cannot be)."""
        ...

    async def give_back(self, checks: Sequence[LimitCheck], ticket: str) -> None:
        """Undo an acquire whose request was then refused for credits."""
        ...

    async def finish(self, checks: Sequence[LimitCheck], ticket: str, token_corrections: dict[str, int]) -> None:
        """A request ended: free its concurrency slots and correct token limits by what it really used."""
        ...

    async def renew(self, slots: Sequence[tuple[str, str]], now_us: int) -> None:
        """Keep live requests' concurrency slots (check key, ticket id) from expiring; one round trip."""
        ...

    async def view(self, checks: Sequence[LimitCheck], now_us: int) -> list[LimitState]: ...

    async def close(self) -> None: ...
