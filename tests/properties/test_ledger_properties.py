"""Any interleaving of grants, holds, settlements and releases keeps the books exact.

Invariants checked after every step, against a real SQLite ledger of record:
balance = credits − usage, available = balance − held, held = the sum of open holds,
no reservation ever takes more than was available, and once written, the ledger's sums
equal the hot-path figures (no entry lost, none doubled).
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from tollway.auth.records import KeyRecord, unlimited_key
from tollway.clock import FixedClock
from tollway.db.engine import create_engine
from tollway.db.migrations import migrate
from tollway.ledger.book import AccountBook, Hold
from tollway.ledger.direct import DirectLedger
from tollway.ledger.records import EntryKind, GenerationRecord
from tollway.ledger.service import Ledger
from tollway.ledger.store import LedgerStore
from tollway.ledger.writer import LedgerWriter

ACCOUNT = "acct_prop"
_generation_ids = itertools.count()


def key_record() -> KeyRecord:
    return unlimited_key(ACCOUNT, key_id="key_prop", key_hash="0" * 64, name="k", label="l", revision=1)


class LedgerMachine(RuleBasedStateMachine):
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.directory = tempfile.TemporaryDirectory()
        self.engine = create_engine(f"sqlite:///{Path(self.directory.name) / 'ledger.db'}")
        self.clock = FixedClock(1_800_000_000_000_000)
        self.loop.run_until_complete(migrate(self.engine))
        store = LedgerStore(self.engine)
        self.book = AccountBook(store, origin="prop")
        self.writer = LedgerWriter(store, "prop", queue_limit=10_000, flush_timeout_s=5)
        self.ledger = Ledger(store, self.book, self.writer, self.clock, min_affordable_tokens=16)
        self.direct = DirectLedger(store, self.clock)
        self.writer_task = self.loop.create_task(self.writer.run())
        self.loop.run_until_complete(self.book.start())
        self.key = key_record()
        self.open: dict[int, Hold] = {}
        self.credits = 0
        self.usage = 0
        self.settled_with_cost = 0

    def teardown(self) -> None:
        self.writer_task.cancel()
        self.loop.run_until_complete(asyncio.gather(self.writer_task, return_exceptions=True))
        self.loop.run_until_complete(self.engine.dispose())
        self.loop.close()
        self.directory.cleanup()

    @rule(amount=st.integers(min_value=1, max_value=10**9))
    def grant(self, amount: int) -> None:
        self.loop.run_until_complete(self.ledger.append(ACCOUNT, EntryKind.GRANT, amount, reason="prop"))
        self.credits += amount

    @rule(amount=st.integers(min_value=1, max_value=10**9))
    def external_grant(self, amount: int) -> None:
        """A grant by another writer (the CLI), counted by the poller."""

        async def write_and_poll() -> None:
            await self.direct.append(ACCOUNT, EntryKind.GRANT, amount)
            async with self.book.sync_lock:
                entries = await self.book._store.entries_after(self.book.watermark, exclude_origin="prop")
                new_mark = await self.book._store.highest_id_created_before(self.book.watermark, None)
                await self.book.apply_external(entries, new_mark)

        self.loop.run_until_complete(write_and_poll())
        self.credits += amount

    @rule(target=holds, amount=st.integers(min_value=0, max_value=10**9))
    def reserve(self, amount: int) -> Hold | None:
        before = self.loop.run_until_complete(self.book.account_snapshot(ACCOUNT))
        outcome = self.loop.run_until_complete(self.book.try_reserve(self.key, amount, self.clock.now_us()))
        if outcome.hold is None:
            assert amount > before.available_nanos or (amount == 0 and before.balance_nanos < 0)
            return None
        assert amount <= before.available_nanos or amount == 0
        self.open[outcome.hold.id] = outcome.hold
        return outcome.hold

    @rule(hold=consumes(holds), fraction=st.floats(min_value=0, max_value=1.5))
    def settle(self, hold: Hold | None, fraction: float) -> None:
        if hold is None or hold.id not in self.open:
            return
        cost = int(hold.amount_nanos * fraction)
        del self.open[hold.id]
        generation = GenerationRecord(
            id=f"gen-prop-{next(_generation_ids)}",
            account_id=ACCOUNT,
            key_id=self.key.id,
            model="m",
            provider_name="p",
            created_at_us=self.clock.now_us(),
            cost_nanos=cost,
        )
        assert self.loop.run_until_complete(self.ledger.settle(hold, generation))
        self.usage += cost
        self.settled_with_cost += 1 if cost else 0

    @rule(hold=consumes(holds))
    def release(self, hold: Hold | None) -> None:
        if hold is None or hold.id not in self.open:
            return
        del self.open[hold.id]
        self.loop.run_until_complete(self.ledger.release(hold))

    @invariant()
    def figures_add_up(self) -> None:
        figures = self.loop.run_until_complete(self.book.account_snapshot(ACCOUNT))
        assert figures.credits_nanos == self.credits
        assert figures.usage_nanos == self.usage
        assert figures.held_nanos == sum(h.amount_nanos for h in self.open.values())
        assert figures.available_nanos == figures.credits_nanos - figures.usage_nanos - figures.held_nanos

    @invariant()
    def ledger_of_record_matches(self) -> None:
        totals = self.loop.run_until_complete(self.direct.account_figures(ACCOUNT))
        assert totals.credits_nanos == self.credits
        assert totals.usage_nanos == self.usage
        entries = self.loop.run_until_complete(self.ledger.store.entries_for_account(ACCOUNT, limit=10_000))
        assert sum(1 for e in entries if e.kind is EntryKind.USAGE) == self.settled_with_cost


LedgerMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestLedgerProperties = LedgerMachine.TestCase
