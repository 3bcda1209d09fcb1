"""Counting ledger entries other writers (other processes, the CLI, webhooks) appended into this process's book.

SQLite serialises commits, so ids become visible in order and the watermark can follow the newest
id. PostgreSQL hands out ids before commit, so there the watermark trails by a safety lag and
entries above it are remembered individually.
"""

from __future__ import annotations

from tollway.clock import Clock
from tollway.ledger.book import Book
from tollway.ledger.store import LedgerStore


class LedgerCatchUp:
    def __init__(self, store: LedgerStore, book: Book, clock: Clock, commit_lag_s: float) -> None:
        self._store = store
        self._book = book
        self._clock = clock
        self._commit_lag_us = int(commit_lag_s * 1_000_000)

    async def catch_up(self) -> None:
        """Apply what other writers appended; the change follower runs this only when something may have changed."""
        async with self._book.sync_lock:
            before_us = self._clock.now_us() - self._commit_lag_us if self._commit_lag_us else None
            # The watermark is read before the entries, so nothing at or below it can be missed.
            new_watermark, entries = await self._store.changes_after(
                self._book.watermark,
                before_us,
                exclude_origin=self._book.origin,
                include_usage=self._book.counts_external_usage,
            )
            await self._book.apply_external(entries, new_watermark)
