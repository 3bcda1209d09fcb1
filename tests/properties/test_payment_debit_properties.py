"""Any sequence of refund and dispute events debits a purchase by exactly what its state says, never more.

Against a real SQLite ledger of record through the payment store: after every event, the entries of
the order (purchase, refunds, dispute adjustments) sum to amount − debited(state), with
0 ≤ debited ≤ amount, and the cumulative refund never exceeds the order's total.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tollway.db import tables
from tollway.db.engine import create_engine
from tollway.db.migrations import migrate
from tollway.payments.model import EventKind, ProviderEvent
from tollway.payments.store import PaymentStore, debited_nanos

ACCOUNT = "acct_debits"
_event_ids = itertools.count()

refund_event = st.tuples(st.just("refund"), st.integers(min_value=0, max_value=4000))
dispute_event = st.tuples(st.sampled_from(["opened", "won"]), st.sampled_from(["dp_a", "dp_b"]))
events = st.lists(st.one_of(refund_event, dispute_event), min_size=1, max_size=8)


def _event(payment_id: str, kind: EventKind, **fields: object) -> ProviderEvent:
    return ProviderEvent(
        provider="stripe",
        event_id=f"evt_{next(_event_ids)}",
        raw_type=kind.value,
        kind=kind,
        payment_id=payment_id,
        **fields,  # type: ignore[arg-type]
    )


async def _run(amount_cents: int, sequence: list[tuple[str, object]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        engine = create_engine(f"sqlite:///{Path(directory) / 'debits.db'}")
        try:
            await migrate(engine)
            store = PaymentStore(engine)
            amount_nanos = amount_cents * 10_000_000
            fee_nanos = max(50_000_000, amount_nanos * 3 // 100 // 10_000_000 * 10_000_000)
            payment = await store.create(ACCOUNT, "stripe", "card", amount_nanos, fee_nanos, 0)
            paid = await store.apply(_event(payment.id, EventKind.PAID), "origin", 1)
            assert paid.result == "credited"
            for step, (kind, value) in enumerate(sequence):
                if kind == "refund":
                    event = _event(payment.id, EventKind.REFUNDED, refunded_cents=value)
                elif kind == "opened":
                    event = _event(payment.id, EventKind.DISPUTE_OPENED, dispute_id=value)
                else:
                    event = _event(payment.id, EventKind.DISPUTE_WON, dispute_id=value)
                await store.apply(event, "origin", 2 + step)
                current = await store.get(payment.id)
                assert current is not None
                async with engine.connect() as connection:
                    credited = await connection.scalar(
                        select(func.sum(tables.ledger_entries.c.amount_nanos)).where(
                            tables.ledger_entries.c.account_id == ACCOUNT
                        )
                    )
                debited = debited_nanos(amount_nanos, current.total_cents, current.refunded_cents, current.disputed)
                assert 0 <= debited <= amount_nanos
                assert 0 <= current.refunded_cents <= current.total_cents
                assert credited == amount_nanos - debited, (sequence[: step + 1], credited, debited)
        finally:
            await engine.dispose()


@settings(max_examples=60)
@given(amount_cents=st.integers(min_value=500, max_value=3000), sequence=events)
@example(amount_cents=1000, sequence=[("opened", "dp_a"), ("won", "dp_a"), ("opened", "dp_a")])
@example(amount_cents=2000, sequence=[("refund", 515), ("opened", "dp_a"), ("refund", 1030), ("won", "dp_a")])
def test_refunds_and_disputes_debit_exactly_the_state_and_never_more_than_the_purchase(
    amount_cents: int, sequence: list[tuple[str, object]]
) -> None:
    asyncio.run(_run(amount_cents, sequence))
