"""Orders and webhook events in the ledger of record; each event applied in one transaction.

The event's (provider, id) row, the order's new status and the ledger entry commit together: a
duplicate delivery finds its row and changes nothing, and a crediting failure rolls the row back
so the provider's retry credits exactly once. Events on one order serialise on the order's row
(SELECT ... FOR UPDATE on PostgreSQL; SQLite's single writer, taken by the event row, already
does), so concurrent refunds and disputes each see the previous one's result.

What refunds and disputes debit is a function of the order's state (`debited_nanos`): each event
writes the difference between the target after it and the target before it, so the total debited
never exceeds what the purchase credited, whatever the order or concurrency of the events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.db import tables
from tollway.db.upsert import insert_ignoring_duplicates
from tollway.ids import prefixed_id
from tollway.ledger.records import EntryKind, LedgerEntry
from tollway.payments.model import NANOS_PER_CENT, EventKind, Payment, PaymentStatus, ProviderEvent

_P = tables.payments
_V = tables.payment_events
_E = tables.ledger_entries


def payment_from_row(row: Any) -> Payment:
    return Payment(
        id=row.id,
        account_id=row.account_id,
        provider=row.provider,
        method=row.method,
        external_id=row.external_id,
        payment_intent=row.payment_intent,
        amount_nanos=row.amount_nanos,
        fee_nanos=row.fee_nanos,
        total_cents=row.total_cents,
        currency=row.currency,
        status=PaymentStatus(row.status),
        refunded_cents=row.refunded_cents,
        disputed=bool(row.disputed),
        note=row.note,
        checkout_url=row.checkout_url,
        created_at_us=row.created_at_us,
        updated_at_us=row.updated_at_us,
        credited_at_us=row.credited_at_us,
    )


def debited_nanos(amount_nanos: int, total_cents: int, refunded_cents: int, disputed: bool) -> int:
    """What refunds and an open dispute take back of a purchase: refunded share, or all of it while disputed."""
    if total_cents <= 0:
        return 0
    refunded = amount_nanos * min(max(refunded_cents, 0), total_cents) // total_cents
    return amount_nanos if disputed else refunded


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one event did: applied (with the ledger entry it wrote, if any), duplicate, or rejected."""

    result: str
    reason: str | None = None
    payment: Payment | None = None
    entry: LedgerEntry | None = None


class PaymentStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(
        self, account_id: str, provider: str, method: str, amount_nanos: int, fee_nanos: int, now_us: int
    ) -> Payment:
        payment_id = prefixed_id("pay")
        total_cents = (amount_nanos + fee_nanos) // NANOS_PER_CENT
        async with self._engine.begin() as connection:
            await connection.execute(
                _P.insert().values(
                    id=payment_id,
                    account_id=account_id,
                    provider=provider,
                    method=method,
                    amount_nanos=amount_nanos,
                    fee_nanos=fee_nanos,
                    total_cents=total_cents,
                    currency="usd",
                    status=PaymentStatus.PENDING.value,
                    refunded_cents=0,
                    disputed=False,
                    created_at_us=now_us,
                    updated_at_us=now_us,
                    note="checkout started: waiting for the payment",
                )
            )
        found = await self.get(payment_id)
        assert found is not None
        return found

    async def bind(self, payment_id: str, external_id: str, checkout_url: str | None, now_us: int) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                update(_P)
                .where(_P.c.id == payment_id, _P.c.external_id.is_(None))
                .values(external_id=external_id, checkout_url=checkout_url, updated_at_us=now_us)
            )

    async def set_intent(self, payment_id: str, intent: str) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(update(_P).where(_P.c.id == payment_id).values(payment_intent=intent))

    async def mark(self, payment_id: str, status: PaymentStatus, note: str, now_us: int) -> bool:
        """Move a pending order on; an order an event already settled keeps its state."""
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(_P)
                .where(_P.c.id == payment_id, _P.c.status == PaymentStatus.PENDING.value)
                .values(status=status.value, note=note, updated_at_us=now_us)
            )
        return bool(result.rowcount)

    async def note(self, payment_id: str, note: str, now_us: int) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                update(_P)
                .where(_P.c.id == payment_id, _P.c.status == PaymentStatus.PENDING.value)
                .values(note=note, updated_at_us=now_us)
            )

    async def pending_charges(self, method: str, created_before_us: int, limit: int = 100) -> list[Payment]:
        query = (
            select(_P)
            .where(_P.c.method == method, _P.c.status == PaymentStatus.PENDING.value)
            .where(_P.c.created_at_us <= created_before_us)
            .order_by(_P.c.created_at_us)
            .limit(limit)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [payment_from_row(row) for row in rows]

    async def get(self, payment_id: str) -> Payment | None:
        async with self._engine.connect() as connection:
            row = (await connection.execute(select(_P).where(_P.c.id == payment_id))).first()
        return None if row is None else payment_from_row(row)

    async def for_account(self, account_id: str, limit: int = 100) -> list[Payment]:
        query = select(_P).where(_P.c.account_id == account_id).order_by(_P.c.created_at_us.desc()).limit(limit)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [payment_from_row(row) for row in rows]

    async def apply(self, event: ProviderEvent, origin: str, now_us: int) -> Outcome:
        async with self._engine.begin() as connection:
            # The event row first: it takes the write lock and deduplicates concurrent deliveries.
            inserted = (
                await connection.execute(
                    insert_ignoring_duplicates(_V, connection.dialect.name)
                    .values(
                        provider=event.provider,
                        event_id=event.event_id,
                        type=event.raw_type,
                        payment_id=event.payment_id,
                        outcome="processing",
                        received_at_us=now_us,
                    )
                    .returning(_V.c.id)
                )
            ).scalar()
            if inserted is None:
                return Outcome("duplicate", "event already processed")
            outcome = await self._decide(connection, event, origin, now_us)
            await connection.execute(
                update(_V)
                .where(_V.c.id == inserted)
                .values(
                    outcome=outcome.result,
                    reason=outcome.reason,
                    payment_id=outcome.payment.id if outcome.payment else None,
                )
            )
            return outcome

    async def _find(self, connection: AsyncConnection, event: ProviderEvent) -> Payment | None:
        """The event's order, locked until the transaction ends (FOR UPDATE is a no-op on SQLite)."""
        row = None
        if event.payment_id:
            row = (await connection.execute(select(_P).where(_P.c.id == event.payment_id).with_for_update())).first()
        if row is None and event.external_id:
            query = select(_P).where(_P.c.external_id == event.external_id).with_for_update()
            row = (await connection.execute(query)).first()
        if row is None and event.payment_intent:
            query = select(_P).where(_P.c.payment_intent == event.payment_intent).with_for_update()
            row = (await connection.execute(query)).first()
        return None if row is None else payment_from_row(row)

    @staticmethod
    def _binding_problem(payment: Payment, event: ProviderEvent) -> str | None:
        if payment.provider != event.provider:
            return "event from another payment provider"
        other_session = event.external_id and payment.external_id and event.external_id != payment.external_id
        if other_session and event.kind in (EventKind.PAID, EventKind.PROCESSING, EventKind.FAILED):
            return "the order is bound to another checkout session"
        if event.account_id and event.account_id != payment.account_id:
            return "the event names another account than the order's"
        if event.amount_cents is not None and event.amount_cents != payment.total_cents:
            return f"amount {event.amount_cents} cents does not match the order's {payment.total_cents}"
        if event.currency is not None and event.currency.lower() != payment.currency:
            return f"currency {event.currency} does not match the order's {payment.currency}"
        return None

    async def _entry(
        self,
        connection: AsyncConnection,
        payment: Payment,
        kind: EntryKind,
        amount: int,
        reference: str,
        reason: str,
        origin: str,
        now_us: int,
    ) -> LedgerEntry | None:
        entry = LedgerEntry(
            account_id=payment.account_id,
            kind=kind,
            amount_nanos=amount,
            created_at_us=now_us,
            reference=reference,
            reason=reason,
        )
        entry_id = (
            await connection.execute(
                insert_ignoring_duplicates(_E, connection.dialect.name)
                .values(
                    account_id=entry.account_id,
                    kind=kind.value,
                    amount_nanos=amount,
                    reference=reference,
                    reason=reason,
                    origin=origin,
                    created_at_us=now_us,
                )
                .returning(_E.c.id)
            )
        ).scalar()
        if entry_id is None:
            return None
        return LedgerEntry(
            account_id=entry.account_id,
            kind=kind,
            amount_nanos=amount,
            created_at_us=now_us,
            reference=reference,
            reason=reason,
            id=int(entry_id),
        )

    async def _set(self, connection: AsyncConnection, payment: Payment, **values: Any) -> Payment:
        await connection.execute(update(_P).where(_P.c.id == payment.id).values(**values))
        row = (await connection.execute(select(_P).where(_P.c.id == payment.id))).one()
        return payment_from_row(row)

    async def _decide(self, connection: AsyncConnection, event: ProviderEvent, origin: str, now_us: int) -> Outcome:
        if event.kind is EventKind.IGNORED:
            return Outcome("ignored", f"{event.raw_type} needs no action")
        payment = await self._find(connection, event)
        if payment is None:
            return Outcome("rejected", "no order is bound to this event")
        problem = self._binding_problem(payment, event)
        if problem is not None:
            return Outcome("rejected", problem, payment)
        bind: dict[str, Any] = {"updated_at_us": now_us}
        if event.external_id and payment.external_id is None and event.kind is not EventKind.REFUNDED:
            bind["external_id"] = event.external_id
        if event.payment_intent and payment.payment_intent is None:
            bind["payment_intent"] = event.payment_intent

        if event.kind is EventKind.PAID:
            # Charged means credited: an order given up as failed is still credited if the money came.
            if payment.status not in (PaymentStatus.PENDING, PaymentStatus.FAILED):
                return Outcome("ignored", f"order already {payment.status.value}", payment)
            entry = await self._entry(
                connection,
                payment,
                EntryKind.PURCHASE,
                payment.amount_nanos,
                f"pay:{payment.id}",
                f"{payment.method} purchase",
                origin,
                now_us,
            )
            payment = await self._set(
                connection,
                payment,
                status=PaymentStatus.SUCCEEDED.value,
                note="paid and credited",
                credited_at_us=now_us,
                **bind,
            )
            return Outcome("credited", None, payment, entry)
        if event.kind is EventKind.PROCESSING:
            payment = await self._set(connection, payment, note="paid, awaiting the bank's confirmation", **bind)
            return Outcome("pending", None, payment)
        if event.kind is EventKind.FAILED:
            if payment.status is not PaymentStatus.PENDING:
                return Outcome("ignored", f"order already {payment.status.value}", payment)
            payment = await self._set(
                connection,
                payment,
                status=PaymentStatus.FAILED.value,
                note="the payment failed; nothing was charged or credited",
                **bind,
            )
            return Outcome("failed", None, payment)
        if event.kind is EventKind.REFUNDED:
            return await self._refund(connection, payment, event, bind, origin, now_us)
        if event.kind in (EventKind.DISPUTE_OPENED, EventKind.DISPUTE_WON):
            opened = event.kind is EventKind.DISPUTE_OPENED
            if payment.status in (PaymentStatus.PENDING, PaymentStatus.FAILED) or opened == payment.disputed:
                return Outcome("ignored", "dispute state unchanged", payment)
            before = debited_nanos(payment.amount_nanos, payment.total_cents, payment.refunded_cents, payment.disputed)
            after = debited_nanos(payment.amount_nanos, payment.total_cents, payment.refunded_cents, opened)
            # One entry per dispute event (the event row dedups deliveries); a dispute id may open again.
            reference = f"dispute:{payment.id}:{event.dispute_id or ''}:{event.event_id}"[:128]
            entry = None
            if after != before:
                entry = await self._entry(
                    connection,
                    payment,
                    EntryKind.ADJUSTMENT,
                    before - after,
                    reference,
                    "dispute opened" if opened else "dispute won",
                    origin,
                    now_us,
                )
            note = "disputed: credits debited until the dispute closes" if opened else "dispute won: credits restored"
            payment = await self._set(connection, payment, disputed=opened, note=note, **bind)
            return Outcome("dispute", None, payment, entry)
        return Outcome("ignored", f"{event.raw_type} needs no action", payment)

    async def _refund(
        self,
        connection: AsyncConnection,
        payment: Payment,
        event: ProviderEvent,
        bind: dict[str, Any],
        origin: str,
        now_us: int,
    ) -> Outcome:
        refunded = min(event.refunded_cents or 0, payment.total_cents)
        if payment.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED):
            return Outcome("ignored", f"order is {payment.status.value}", payment)
        if refunded <= payment.refunded_cents:
            return Outcome("ignored", "refund already applied", payment)
        # A refund of R out of T cents debits credits × R / T, on the cumulative figure so it stays exact;
        # while a dispute holds the whole purchase, a refund debits nothing more.
        before = debited_nanos(payment.amount_nanos, payment.total_cents, payment.refunded_cents, payment.disputed)
        after = debited_nanos(payment.amount_nanos, payment.total_cents, refunded, payment.disputed)
        entry = None
        if after != before:
            entry = await self._entry(
                connection,
                payment,
                EntryKind.REFUND,
                before - after,
                f"refund:{payment.id}:{refunded}",
                "refund",
                origin,
                now_us,
            )
        full = refunded >= payment.total_cents
        status = PaymentStatus.REFUNDED if full else PaymentStatus.PARTIALLY_REFUNDED
        payment = await self._set(
            connection,
            payment,
            status=status.value,
            refunded_cents=refunded,
            note=f"refunded {refunded / 100:.2f} USD",
            **bind,
        )
        return Outcome("refunded", None, payment, entry)
