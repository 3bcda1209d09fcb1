"""A short memory of refused requests per account, so /balance can answer "why was I refused?".

Recording never slows a request: refusals queue in memory (bounded) and a background task writes
them in batches; reads merge what is queued with what is stored. Each account keeps its last
`keep_per_account` refusals: once an account has written half that many more, its older rows are
deleted in one statement, so the table stays bounded without a delete per refusal.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.clock import us_to_iso
from tollway.db import tables

log = logging.getLogger("tollway.refusals")

_R = tables.refusals
_QUEUE_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Refusal:
    account_id: str
    key_id: str | None
    at_us: int
    status: int
    code: str
    message: str
    request_id: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": us_to_iso(self.at_us),
            "status": self.status,
            "reason": self.code,
            "message": self.message,
            "request_id": self.request_id,
        }


class RefusalLog:
    def __init__(self, engine: AsyncEngine, keep_per_account: int = 100) -> None:
        self._engine = engine
        self._queue: deque[Refusal] = deque(maxlen=_QUEUE_LIMIT)
        self._keep = keep_per_account
        self._written_since_prune: dict[str, int] = {}
        self._pending = asyncio.Event()  # something waits to be written: an idle process is not woken

    def record(self, refusal: Refusal) -> None:
        self._queue.append(refusal)
        self._pending.set()

    async def recent(self, account_id: str, limit: int = 10) -> list[Refusal]:
        query = select(_R).where(_R.c.account_id == account_id).order_by(_R.c.at_us.desc(), _R.c.id.desc()).limit(limit)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        stored = [Refusal(r.account_id, r.key_id, r.at_us, r.status, r.code, r.message, r.request_id) for r in rows]
        queued = [r for r in self._queue if r.account_id == account_id]
        merged = sorted(queued + stored, key=lambda r: r.at_us, reverse=True)
        return merged[:limit]

    async def flush(self) -> None:
        if not self._queue:
            return
        batch = list(self._queue)
        async with self._engine.begin() as connection:
            await connection.execute(
                _R.insert(),
                [
                    {
                        "account_id": r.account_id,
                        "key_id": r.key_id,
                        "at_us": r.at_us,
                        "status": r.status,
                        "code": r.code,
                        "message": r.message[:2000],
                        "request_id": r.request_id,
                    }
                    for r in batch
                ],
            )
        for _ in batch:
            self._queue.popleft()
        for refusal in batch:
            self._written_since_prune[refusal.account_id] = self._written_since_prune.get(refusal.account_id, 0) + 1
        due = [a for a, n in self._written_since_prune.items() if n >= max(1, self._keep // 2)]
        if due:
            await self._prune(due)

    async def _prune(self, account_ids: list[str]) -> None:
        """Delete each account's refusals older than its newest `keep` ones."""
        async with self._engine.begin() as connection:
            for account_id in account_ids:
                newest = (
                    select(_R.c.id)
                    .where(_R.c.account_id == account_id)
                    .order_by(_R.c.at_us.desc(), _R.c.id.desc())
                    .limit(self._keep)
                )
                await connection.execute(delete(_R).where(_R.c.account_id == account_id, _R.c.id.not_in(newest)))
        for account_id in account_ids:
            self._written_since_prune.pop(account_id, None)

    async def run(self, interval_s: float = 0.2) -> None:
        """Write what was recorded, `interval_s` after the first of a batch; nothing wakes while none come."""
        while True:
            await self._pending.wait()
            await asyncio.sleep(interval_s)  # refusals that come together are written together
            self._pending.clear()  # set again by what is recorded during the write
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: keep the (bounded) queue and retry
                self._pending.set()
                log.warning("refusal log write failed", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
