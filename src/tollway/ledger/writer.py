"""Group commit of settled usage: every settlement joins the next batch, one transaction per batch.

A request waits (boundedly) for its batch to commit before answering, so a response the client
saw is a usage entry on disk. When the database fails, batches stay queued and are retried
(duplicates are ignored by unique keys, so a retry never doubles), and `accepting` turns false so
new paid work is refused with 503 instead of growing the queue without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from tollway.ledger.records import GenerationRecord, LedgerEntry
from tollway.ledger.store import LedgerStore

log = logging.getLogger("tollway.ledger")

_BATCH_LIMIT = 500
_BACKOFF_START_S = 0.05
_BACKOFF_MAX_S = 2.0
_CHECKPOINT_INTERVAL_S = 0.25


@dataclass(slots=True)
class _Pending:
    generation: GenerationRecord
    entry: LedgerEntry | None
    committed: asyncio.Future[bool]
    deadline: asyncio.TimerHandle


def _give_up(committed: asyncio.Future[bool]) -> None:
    if not committed.done():
        committed.set_result(False)


class LedgerWriter:
    def __init__(self, store: LedgerStore, origin: str, queue_limit: int, flush_timeout_s: float) -> None:
        self._store = store
        self._origin = origin
        self._queue_limit = queue_limit
        self._flush_timeout_s = flush_timeout_s
        self._queue: list[_Pending] = []
        self._by_generation: dict[str, GenerationRecord] = {}
        self._wake = asyncio.Event()
        self._emptied = asyncio.Event()
        self.healthy = True
        self.last_error: str | None = None

    @property
    def accepting(self) -> bool:
        """Whether new paid work may start: the database answers and the queue is not full."""
        return self.healthy and len(self._queue) < self._queue_limit

    @property
    def queued(self) -> int:
        return len(self._queue)

    def pending_generation(self, generation_id: str) -> GenerationRecord | None:
        return self._by_generation.get(generation_id)

    def record(self, generation: GenerationRecord, entry: LedgerEntry | None) -> asyncio.Future[bool]:
        """Queue a generation (and its usage entry); the future turns True once committed, or False if the
        flush timeout passes first (the entry stays queued and is written when the database answers).

        A bare future and one timer instead of wait_for(shield(...)): this runs on every request. A caller
        that stops waiting (cancelled) changes nothing: the queue, not the future, holds the entry.
        """
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[bool] = loop.create_future()
        deadline = loop.call_later(self._flush_timeout_s, _give_up, committed)
        self._queue.append(_Pending(generation, entry, committed, deadline))
        self._by_generation[generation.id] = generation
        self._wake.set()
        return committed

    async def write_alone(self, generation: GenerationRecord, entry: LedgerEntry | None) -> bool:
        """Write now, in the caller's task, when no other request is in flight to share a batch with.

        Saves the hand-off to the writer task and back (two scheduling rounds, a good part of what a
        lone request pays for its commit). Anything unusual (a queue, an unhealthy database, an error)
        goes the queued way, which retries.
        """
        if self._queue or not self.healthy:
            return await self.record(generation, entry)
        self._by_generation[generation.id] = generation
        try:
            await self._store.write_batch([entry] if entry is not None else [], [generation], self._origin)
        except asyncio.CancelledError:
            self.record(generation, entry)  # the queue finishes what the interrupted write may not have
            raise
        except Exception as exc:  # any database failure: the queue keeps it and retries with backoff
            self.healthy = False
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            return await self.record(generation, entry)
        self._by_generation.pop(generation.id, None)
        return True

    async def checkpoints(self) -> None:
        """Fold the write-ahead log into the database now and then, off the request path."""
        while True:
            await asyncio.sleep(_CHECKPOINT_INTERVAL_S)
            try:
                await self._store.checkpoint()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a busy database: the next round tries again
                log.warning("checkpoint failed", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})

    async def run(self) -> None:
        backoff_s = _BACKOFF_START_S
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._queue[:_BATCH_LIMIT]
                try:
                    await self._store.write_batch(
                        [p.entry for p in batch if p.entry is not None],
                        [p.generation for p in batch],
                        self._origin,
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # any database failure: keep the batch, retry with backoff
                    self.healthy = False
                    self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                    log.error("ledger write failed, will retry", extra={"error": self.last_error})
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, _BACKOFF_MAX_S)
                    continue
                backoff_s = _BACKOFF_START_S
                self.healthy = True
                del self._queue[: len(batch)]
                if not self._queue:
                    self._emptied.set()
                for pending in batch:
                    self._by_generation.pop(pending.generation.id, None)
                    pending.deadline.cancel()
                    if not pending.committed.done():
                        pending.committed.set_result(True)

    async def drain(self, timeout_s: float) -> bool:
        """Wait until everything queued is committed (used at shutdown)."""
        self._emptied.clear()
        if self._queue:
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), timeout_s)
        return not self._queue
