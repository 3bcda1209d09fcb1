"""The ledger's face to the rest of the gateway: reserve, settle, release, grant, read figures.

This is the only code that moves money: the book (hot-path figures) and the ledger of record
(append-only entries) change together here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tollway.auth.records import KeyRecord
from tollway.clock import Clock
from tollway.errors import ServiceUnavailable, TollwayError
from tollway.ledger.admission import CostPlan, decide_refusal
from tollway.ledger.book import AccountSnapshot, Book, Hold, KeySnapshot, Rider
from tollway.ledger.book_replies import After, BookReplies
from tollway.ledger.direct import DirectLedger
from tollway.ledger.records import EntryKind, GenerationRecord, LedgerEntry
from tollway.ledger.spool import replay
from tollway.ledger.store import LedgerStore
from tollway.ledger.writer import LedgerWriter


@dataclass(frozen=True, slots=True)
class Reservation:
    hold: Hold
    max_tokens: int
    max_tokens_capped: bool


class Ledger:
    def __init__(
        self,
        store: LedgerStore,
        book: Book,
        writer: LedgerWriter,
        clock: Clock,
        min_affordable_tokens: int,
    ) -> None:
        self.store = store
        self.book = book
        self.writer = writer
        self._clock = clock
        self._min_tokens = min_affordable_tokens
        self._direct = DirectLedger(store, clock)
        self.book_replies = BookReplies()
        writer.on_late_commit = book.forget

    async def recover_spool(self) -> int:
        """Write the settlements dead processes spooled but never committed; returns how many (start-up)."""
        spool = self.writer.spool
        if spool is None:
            return 0
        spool.database_tag = await self.store.identity()
        report = await replay(spool.directory, self.store, own=spool.path)
        await self.book.forget(report.written_entries)
        return report.written

    def ensure_accepting(self) -> None:
        if not self.writer.accepting:
            raise ServiceUnavailable(
                "The ledger database is unavailable, so no billable request can start. Retry shortly.",
                metadata={"reason": "ledger_unavailable"},
                headers={"Retry-After": "1"},
            )

    def carries(self, rider: Rider) -> bool:
        """Whether the book takes `rider`'s step in the same round trip as its own (one shared Redis)."""
        return self.book.carries(rider)

    async def reserve(self, key: KeyRecord, plan: CostPlan, rider: Rider | None = None) -> Reservation:
        """Place the hold for a request, lowering max_tokens when the client left it open; else raise.

        A rider's step is taken with the hold, or not at all (RiderRefused when the rider refused).
        """
        self.ensure_accepting()
        now_us = self._clock.now_us()
        outcome = await self.book.try_reserve(key, plan.hold_nanos, now_us, rider)
        if outcome.hold is not None:
            return Reservation(outcome.hold, plan.max_tokens, max_tokens_capped=False)
        decision = decide_refusal(plan, outcome.account, outcome.key, self._min_tokens)
        if isinstance(decision, TollwayError):
            raise decision
        lowered = replace(plan, max_tokens=decision.max_tokens, max_tokens_requested=False)
        retry = await self.book.try_reserve(key, lowered.hold_nanos, now_us, rider)
        if retry.hold is None:
            # The figures moved between the two tries: refuse with the lowered request's numbers.
            refusal = decide_refusal(
                replace(lowered, max_tokens_requested=True), retry.account, retry.key, self._min_tokens
            )
            assert isinstance(refusal, TollwayError)
            raise refusal
        return Reservation(retry.hold, decision.max_tokens, max_tokens_capped=True)

    async def settle(
        self, hold: Hold, generation: GenerationRecord, rider: Rider | None = None, then: After | None = None
    ) -> bool:
        """Bill `generation.cost_nanos` in place of the hold; True once the entry is committed.

        The entry is committed (or spooled) before the book replaces the hold by the cost: a shared
        book that lost its figures in between reloads them from a ledger that already has the entry,
        and the hold keeps the money reserved until then. A rider's step ends in the book's script.
        A shared book's step is written before this returns, its reply awaited in the background
        (`BookReplies`); `then` runs once the book has the cost.
        """
        now_us = generation.created_at_us
        entry = None
        if generation.cost_nanos:
            entry = LedgerEntry(
                account_id=generation.account_id,
                kind=EntryKind.USAGE,
                amount_nanos=generation.cost_nanos,
                created_at_us=now_us,
                key_id=generation.key_id,
                generation_id=generation.id,
            )
        committed = False
        try:
            if self.book.open_hold_count <= 1:  # this request's hold alone: no batch to share
                committed = await self.writer.write_alone(generation, entry)
            else:
                committed = await self.writer.record(generation, entry)
            return committed
        finally:
            if not committed:
                # Committed later, after the book counted it: the book then re-derives those figures.
                self.writer.mark_late(generation.id)
            reply = self.book.begin_settle(hold, generation.cost_nanos, now_us, generation.id, rider)
            if self.book.settles_after_answer:
                self.book_replies.follow(reply, then)
            else:
                await reply
                if then is not None:
                    await then()

    async def release(self, hold: Hold, rider: Rider | None = None) -> None:
        await self.book.release(hold, rider)

    async def renew(self, hold: Hold) -> None:
        """Keep a live request's hold from expiring (the book also renews every open hold on its own)."""
        await self.book.renew([hold], self._clock.now_us())

    async def append(
        self,
        account_id: str,
        kind: EntryKind,
        amount_nanos: int,
        *,
        reason: str | None = None,
        reference: str | None = None,
    ) -> LedgerEntry | None:
        """Append a credit movement (grant, purchase, refund, adjustment); None if its reference was seen."""
        entry = LedgerEntry(
            account_id=account_id,
            kind=kind,
            amount_nanos=amount_nanos,
            created_at_us=self._clock.now_us(),
            reference=reference,
            reason=reason,
        )
        async with self.book.sync_lock:
            entry_id = await self.store.append(entry, origin=self.book.origin)
            if entry_id is None:
                return None
            entry = replace(entry, id=entry_id)
            await self.book.apply_local(entry)
        return entry

    async def account_figures(self, account_id: str) -> AccountSnapshot:
        try:
            return await self.book.account_snapshot(account_id)
        except ServiceUnavailable:
            # The shared book is away: show the ledger of record (requests still fail closed).
            return await self._direct.account_figures(account_id)

    async def key_figures(self, key: KeyRecord) -> KeySnapshot:
        try:
            return await self.book.key_snapshot(key, self._clock.now_us())
        except ServiceUnavailable:
            return await self._direct.key_figures(key)

    async def generation(self, generation_id: str) -> GenerationRecord | None:
        pending = self.writer.pending_generation(generation_id)
        if pending is not None:
            return pending
        return await self.store.generation(generation_id)
