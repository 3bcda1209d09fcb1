"""Group commit of settled usage: every settlement joins the next batch, one transaction per batch.

A request waits (boundedly) for its batch to commit before answering. If the flush timeout passes
first (the database is slow, down or failing), the settlement is appended to the fsynced spool
before the request goes on to answer, so a response the client saw is a usage entry on disk either
way. Queued batches are retried (duplicates are ignored by unique keys, so a retry never doubles);
once the queue is empty, everything spooled is committed and the spool starts over. `accepting`
turns false while the database fails, so new paid work is refused with 503 instead of growing the
queue without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tollway.ledger.records import GenerationRecord, LedgerEntry
from tollway.ledger.spool import Spool
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
    deadline: asyncio.TimerHandle | None = None
    spooled: bool = False


class LedgerWriter:
    def __init__(
        self,
        store: LedgerStore,
        origin: str,
        queue_limit: int,
        flush_timeout_s: float,
        spool: Spool | None = None,
    ) -> None:
        self._store = store
        self.spool = spool
        # Told the entries committed only after their requests stopped waiting (the book re-derives them).
        self.on_late_commit: Callable[[list[LedgerEntry]], Awaitable[None]] | None = None
        self._late: set[str] = set()
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
        pending = _Pending(generation, entry, committed)
        pending.deadline = loop.call_later(self._flush_timeout_s, self._give_up, pending)
        self._queue.append(pending)
        self._by_generation[generation.id] = generation
        self._wake.set()
        return committed

    def mark_late(self, generation_id: str) -> None:
        """The request went on without this commit (timed out, cancelled): its commit will be late."""
        if generation_id in self._by_generation:
            self._late.add(generation_id)

    def _spool(self, pending: _Pending) -> None:
        if self.spool is None or pending.spooled:
            return
        try:
            self.spool.append(pending.generation, pending.entry)
            pending.spooled = True
        except OSError as exc:
            log.critical(
                "could not spool a settlement the database has not confirmed; it stays queued in memory",
                extra={"generation_id": pending.generation.id, "error": str(exc)[:300]},
            )

    def _give_up(self, pending: _Pending) -> None:
        """The flush timeout passed: make the settlement durable in the spool, then let the request answer."""
        if pending.committed.done():
            return
        self._spool(pending)
        pending.committed.set_result(False)

    def spool_queued(self) -> int:
        """Spool everything still queued (shutdown with the database away); returns how many."""
        for pending in self._queue:
            self._spool(pending)
        return len(self._queue)

    def _committed(self) -> None:
        if not self._queue and self.spool is not None:
            self.spool.clear()

    async def write_alone(self, generation: GenerationRecord, entry: LedgerEntry | None) -> bool:
        """Write now, in the caller's task, when no other request is in flight to share a batch with.

        Saves the hand-off to the writer task and back (two scheduling rounds, a good part of what a
        lone request pays for its commit). Anything unusual (a queue, an unhealthy database, an error,
        no answer within the flush timeout) goes the queued way, which retries.
        """
        if self._queue or not self.healthy:
            return await self.record(generation, entry)
        self._by_generation[generation.id] = generation
        try:
            async with asyncio.timeout(self._flush_timeout_s):
                await self._store.write_batch([entry] if entry is not None else [], [generation], self._origin)
        except TimeoutError:  # not confirmed in time: durable in the spool, retried by the queue
            self.record(generation, entry)
            self._spool(self._queue[-1])
            return False
        except asyncio.CancelledError:
            self.record(generation, entry)  # the queue finishes what the interrupted write may not have
            raise
        except Exception as exc:  # any database failure: the queue keeps it and retries with backoff
            self.healthy = False
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            return await self.record(generation, entry)
        self._by_generation.pop(generation.id, None)
        if self.spool is not None and self.spool.lines:
            self._committed()
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
                late = [p.entry for p in batch if p.generation.id in self._late and p.entry is not None]
                self._late.difference_update(p.generation.id for p in batch)
                del self._queue[: len(batch)]
                if not self._queue:
                    self._emptied.set()
                self._committed()
                for pending in batch:
                    self._by_generation.pop(pending.generation.id, None)
                    if pending.deadline is not None:
                        pending.deadline.cancel()
                    if not pending.committed.done():
                        pending.committed.set_result(True)
                if late and self.on_late_commit is not None:
                    await self.on_late_commit(late)

    async def drain(self, timeout_s: float) -> bool:
        """Wait until everything queued is committed (used at shutdown)."""
        self._emptied.clear()
        if self._queue:
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), timeout_s)
        return not self._queue
