"""Follows what other writers changed in the database: ledger entries, keys, rate-limit rules, auto-recharge settings.

Each running process polls every `ledger_poll_interval_seconds`; every step reads only what changed
since its own watermark, so a poll with nothing new is a few indexed reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("tollway.changes")

Step = Callable[[], Awaitable[object]]


class ChangeFollower:
    def __init__(self, steps: list[Step] | None = None) -> None:
        self._steps: list[Step] = list(steps or [])
        self.healthy = True

    def add_step(self, step: Step) -> None:
        self._steps.append(step)

    async def poll_once(self) -> None:
        for step in self._steps:
            await step()

    async def run(self, interval_s: float) -> None:
        while True:
            try:
                await self.poll_once()
                self.healthy = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: keep the last figures, try again
                if self.healthy:
                    log.error("change poll failed", extra={"error": f"{type(exc).__name__}: {exc}"[:500]})
                self.healthy = False
            await asyncio.sleep(interval_s)
