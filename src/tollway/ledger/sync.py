"""Background refresh of what other writers changed: ledger entries and keys.

SQLite serialises commits, so ids become visible in order and the watermark can follow the newest
id. PostgreSQL hands out ids before commit, so there the watermark trails by a safety lag and
entries above it are remembered individually.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tollway.auth.cache import KeyCache
from tollway.clock import Clock
from tollway.ledger.book import Book
from tollway.ledger.store import LedgerStore

log = logging.getLogger("tollway.sync")


class LedgerSync:
    def __init__(
        self,
        store: LedgerStore,
        book: Book,
        keys: KeyCache,
        clock: Clock,
        commit_lag_s: float,
        refreshers: list[Callable[[], Awaitable[None]]] | None = None,
    ) -> None:
        self._store = store
        self._book = book
        self._keys = keys
        self._refreshers = refreshers or []
        self._clock = clock
        self._commit_lag_us = int(commit_lag_s * 1_000_000)
        self.healthy = True

    def add_refresher(self, refresh: Callable[[], Awaitable[None]]) -> None:
        self._refreshers.append(refresh)

    async def poll_once(self) -> None:
        if not self._store.changed_elsewhere():
            return
        async with self._book.sync_lock:
            before_us = self._clock.now_us() - self._commit_lag_us if self._commit_lag_us else None
            # The watermark is read before the entries, so nothing at or below it can be missed.
            new_watermark = await self._store.highest_id_created_before(self._book.watermark, before_us)
            entries = await self._store.entries_after(
                self._book.watermark,
                exclude_origin=self._book.origin,
                include_usage=self._book.counts_external_usage,
            )
            await self._book.apply_external(entries, new_watermark)
        await self._keys.refresh()
        for refresh in self._refreshers:
            await refresh()

    async def run(self, interval_s: float) -> None:
        while True:
            try:
                await self.poll_once()
                self.healthy = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: keep the last figures, try again
                if self.healthy:
                    log.error("sync poll failed", extra={"error": f"{type(exc).__name__}: {exc}"[:500]})
                self.healthy = False
            await asyncio.sleep(interval_s)
