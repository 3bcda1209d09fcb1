"""Payments end to end: checkout, webhooks applied exactly once, refunds, pending orders, auto-recharge.

Each outside event becomes at most one ledger operation, written in the same transaction as the
event's dedup row; the hot-path book then counts it. Nothing credits without a verified event bound
to a recorded order (provider, order id, account, amount and currency must all agree), or without
the provider's own answer when asked about an order's charge.

Auto-recharge charges converge: an ambiguous provider error (timeout, 5xx, dropped connection) leaves
the order pending, and the provider's webhook or a lookup of the charge (retried in the background,
and swept by every process for orders a dead process left) settles it: charged means credited, once.
Only a decline turns auto-recharge off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from tollway.audit import Actor, AuditLog, auto_recharge_state
from tollway.balance import PendingPayment
from tollway.clock import Clock
from tollway.errors import InvalidRequest, NotFound, NotImplementedYet, ServiceUnavailable, TollwayError
from tollway.ledger.service import Ledger
from tollway.metrics import Metrics
from tollway.money import usd_to_nanos
from tollway.payments.auto_recharge import AutoRecharge, AutoRechargeStore
from tollway.payments.model import EventKind, FeeRule, Payment, PaymentStatus, ProviderEvent
from tollway.payments.provider import (
    ChargeState,
    InvalidSignature,
    PaymentProvider,
    ProviderFailure,
    SavedCardProvider,
)
from tollway.payments.store import Outcome, PaymentStore

log = logging.getLogger("tollway.payments")

_PENDING_VISIBLE_US = 24 * 3600 * 1_000_000
# After an ambiguous charge error, ask the provider again after these pauses (then the sweep takes over).
_RESOLVE_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
_SWEEP_INTERVAL_US = 5_000_000
_SWEEP_AGE_MAX_US = 60_000_000
_NO_FEE = FeeRule.zero()


@dataclass(frozen=True, slots=True)
class CheckoutLimits:
    min_nanos: int
    max_nanos: int
    refund_window_us: int
    auto_recharge_interval_us: int
    # A charge slot held longer than this belongs to a dead process and is taken over.
    auto_recharge_claim_timeout_us: int = 300_000_000
    # Fee rule per provider name (card_fee_percent, card_fee_min_usd, crypto_fee_percent).
    fees: dict[str, FeeRule] = field(default_factory=dict)


class WebhookRejected(TollwayError):
    status = 400
    error_type = "invalid_request"


class PaymentsService:
    def __init__(
        self,
        store: PaymentStore,
        auto: AutoRechargeStore,
        providers: dict[str, PaymentProvider],
        ledger: Ledger,
        clock: Clock,
        limits: CheckoutLimits,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.auto = auto
        self._providers = providers
        self._ledger = ledger
        self._clock = clock
        self._limits = limits
        self._metrics = metrics
        self._auto_cache: dict[str, AutoRecharge] = {}
        self.audit: AuditLog | None = None  # set at start-up: records the cards that setup events save
        self._background: set[asyncio.Task[None]] = set()
        self._next_sweep_us = 0

    @property
    def configured(self) -> frozenset[str]:
        return frozenset(self._providers)

    def provider(self, name: str) -> PaymentProvider:
        provider = self._providers.get(name)
        if provider is None:
            raise NotImplementedYet(
                f"payments are not configured: set the {name} settings (see the README's payments section)"
            )
        return provider

    def _fee(self, provider: PaymentProvider, amount_nanos: int) -> int:
        return self._limits.fees.get(provider.name, _NO_FEE).fee_nanos(amount_nanos)

    def _saved_card_provider(self, name: str = "stripe") -> SavedCardProvider | None:
        provider = self._providers.get(name)
        return provider if isinstance(provider, SavedCardProvider) else None

    async def checkout(self, account_id: str, amount: object, provider_name: str) -> Payment:
        provider = self.provider(provider_name)
        if isinstance(amount, bool) or not isinstance(amount, (int, float, str)):
            raise InvalidRequest(
                'amount is required: the USD to add, e.g. {"amount": 10}', metadata={"field": "amount"}
            )
        try:
            nanos = usd_to_nanos(amount, "amount")
        except ValueError as exc:
            raise InvalidRequest(str(exc), metadata={"field": "amount"}) from exc
        if nanos % 10_000_000:
            raise InvalidRequest("amount must be in whole cents", metadata={"field": "amount"})
        if not self._limits.min_nanos <= nanos <= self._limits.max_nanos:
            raise InvalidRequest(
                f"amount must be between {self._limits.min_nanos / 1e9:g} and {self._limits.max_nanos / 1e9:g} USD",
                metadata={"field": "amount"},
            )
        now_us = self._clock.now_us()
        payment = await self.store.create(
            account_id, provider.name, provider.method, nanos, self._fee(provider, nanos), now_us
        )
        try:
            external_id, url = await provider.create_checkout(payment)
        except ProviderFailure as exc:
            await self.store.mark(payment.id, PaymentStatus.FAILED, str(exc), now_us)
            raise ServiceUnavailable(f"Checkout could not start: {exc}") from exc
        await self.store.bind(payment.id, external_id, url, self._clock.now_us())
        found = await self.store.get(payment.id)
        assert found is not None
        return found

    async def handle_webhook(self, provider_name: str, raw_body: bytes, headers: Mapping[str, str]) -> Outcome:
        provider = self.provider(provider_name)
        try:
            event = provider.verify(raw_body, headers)
        except InvalidSignature as exc:
            self._metrics.payment_events.labels(provider_name, "unknown", "bad_signature").inc()
            log.warning("webhook refused", extra={"provider": provider_name, "reason": str(exc)[:300]})
            raise WebhookRejected(f"Webhook signature check failed: {exc}") from exc
        if event.kind is EventKind.SETUP_COMPLETED:
            return await self._setup_completed(provider, event.account_id, event.customer_id, event.payment_method_id)
        return await self._apply(event)

    async def _apply(self, event: ProviderEvent) -> Outcome:
        """One event into the ledger, then what it means for an auto-recharge charge in flight."""
        provider_name = event.provider
        async with self._ledger.book.sync_lock:
            outcome = await self.store.apply(event, self._ledger.book.origin, self._clock.now_us())
            if outcome.entry is not None:
                await self._ledger.book.apply_local(outcome.entry)
        self._metrics.payment_events.labels(provider_name, event.raw_type, outcome.result).inc()
        log.info(
            "webhook",
            extra={
                "provider": provider_name,
                "event": event.event_id,
                "type": event.raw_type,
                "outcome": outcome.result,
                "reason": outcome.reason,
                "payment": outcome.payment.id if outcome.payment else None,
            },
        )
        payment = outcome.payment
        if payment is not None and payment.method == "auto_recharge" and outcome.result in ("credited", "failed"):
            failure = None if outcome.result == "credited" else "the saved card was declined"
            await self._finish_charge(payment.account_id, payment.id, failure)
            await self.refresh_auto_recharge()
        return outcome

    async def _finish_charge(self, account_id: str, payment_id: str, failure: str | None) -> None:
        """End an auto-recharge charge; a failure turns auto-recharge off, which the audit log records."""
        before = await self.auto.get(account_id) if failure is not None and self.audit is not None else None
        await self.auto.finish(account_id, payment_id, self._clock.now_us(), failure)
        if before is not None and self.audit is not None:
            after = await self.auto.get(account_id)
            states = (
                {**auto_recharge_state(before), "disabled_reason": before.disabled_reason},
                {**auto_recharge_state(after), "disabled_reason": after.disabled_reason},
            )
            await self.audit.record(Actor("system"), "auto_recharge.disable", account_id, None, *states)

    async def _setup_completed(
        self, provider: PaymentProvider, account_id: str | None, customer: str | None, setup_intent: str | None
    ) -> Outcome:
        if not account_id or not isinstance(provider, SavedCardProvider):
            return Outcome("rejected", "setup event without an account")
        payment_method = await provider.setup_payment_method(setup_intent) if setup_intent else None
        before = await self.auto.get(account_id)
        saved = await self.auto.save(
            account_id, self._clock.now_us(), customer_id=customer, payment_method_id=payment_method
        )
        if self.audit is not None:
            states = auto_recharge_state(before), auto_recharge_state(saved)
            await self.audit.record(Actor("payment_provider", provider.name), "card.save", account_id, None, *states)
        return Outcome("saved", "payment method saved for auto-recharge")

    async def setup_checkout(self, account_id: str) -> str:
        self.provider("stripe")
        provider = self._saved_card_provider()
        if provider is None:
            raise NotImplementedYet("the stripe provider cannot save cards")
        current = await self.auto.get(account_id)
        try:
            _session, url = await provider.setup_checkout(account_id, current.customer_id)
        except ProviderFailure as exc:
            raise ServiceUnavailable(f"Card setup could not start: {exc}") from exc
        return url

    async def purchases(self, account_id: str) -> list[Payment]:
        return await self.store.for_account(account_id)

    async def pending(self, account_id: str) -> list[PendingPayment]:
        now_us = self._clock.now_us()
        return [
            PendingPayment(p.id, p.amount_nanos, p.method, p.created_at_us, p.note or "waiting for the payment")
            for p in await self.store.for_account(account_id)
            if p.status is PaymentStatus.PENDING and now_us - p.created_at_us < _PENDING_VISIBLE_US
        ]

    async def refund(self, payment_id: str, amount: object | None) -> Payment:
        payment = await self.store.get(payment_id)
        if payment is None:
            raise NotFound(f"No payment {payment_id}")
        provider = self.provider(payment.provider)
        if not provider.refundable:
            raise InvalidRequest("crypto payments are not refundable")
        if payment.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED):
            raise InvalidRequest(f"only paid orders can be refunded; this one is {payment.status.value}")
        if (
            payment.credited_at_us is None
            or self._clock.now_us() - payment.credited_at_us > self._limits.refund_window_us
        ):
            raise InvalidRequest("the refund window has passed for this payment")
        left = payment.total_cents - payment.refunded_cents
        cents = left
        if amount is not None:
            try:
                cents = usd_to_nanos(amount, "amount") // 10_000_000  # type: ignore[arg-type]
            except ValueError as exc:
                raise InvalidRequest(str(exc)) from exc
        if not 0 < cents <= left:
            raise InvalidRequest(f"refund between 0.01 and {left / 100:.2f} USD")
        try:
            await provider.refund(payment, cents)
        except ProviderFailure as exc:
            if exc.ambiguous:
                raise ServiceUnavailable(
                    f"Stripe did not confirm the refund ({exc}): it may have been made, and its charge.refunded "
                    "webhook then debits it; asking again for the same amount is safe (same idempotency key)"
                ) from exc
            raise ServiceUnavailable(f"Refund failed: {exc}") from exc
        return payment

    # Auto-recharge -------------------------------------------------------------------------------

    async def refresh_auto_recharge(self) -> None:
        self._auto_cache = {a.account_id: a for a in await self.auto.enabled()}

    def watches(self, account_id: str) -> bool:
        return account_id in self._auto_cache

    def after_settlement(self, account_id: str, balance_nanos: int) -> None:
        """Called with the balance after each settlement; starts a charge in the background if it dips."""
        config = self._auto_cache.get(account_id)
        if config is None or balance_nanos >= config.threshold_nanos or config.in_flight_payment_id:
            return
        self._in_background(self._recharge(config))

    async def _recharge(self, config: AutoRecharge) -> None:
        provider = self._saved_card_provider()
        if provider is None or not (config.customer_id and config.payment_method_id):
            return
        fee = self._fee(self.provider(provider.name), config.amount_nanos)
        now_us = self._clock.now_us()
        payment = await self.store.create(
            config.account_id, provider.name, "auto_recharge", config.amount_nanos, fee, now_us
        )
        claimed = await self.auto.claim(
            config.account_id,
            payment.id,
            now_us,
            self._limits.auto_recharge_interval_us,
            self._limits.auto_recharge_claim_timeout_us,
        )
        if not claimed:
            await self.store.mark(payment.id, PaymentStatus.FAILED, "not started: another charge is in flight", now_us)
            return
        await self.refresh_auto_recharge()
        try:
            intent = await provider.charge_saved_method(payment, config.customer_id, config.payment_method_id)
        except ProviderFailure as exc:
            if exc.ambiguous:
                # The card may have been charged: keep the order pending and ask the provider.
                self._metrics.auto_recharges.labels("unknown").inc()
                log.warning("auto-recharge outcome unknown", extra={"payment": payment.id, "error": str(exc)[:300]})
                await self.store.note(payment.id, f"charge sent, outcome unknown: {exc}", self._clock.now_us())
                self._in_background(self._resolve_soon(payment.id))
                return
            self._metrics.auto_recharges.labels("failed").inc()
            await self.store.mark(payment.id, PaymentStatus.FAILED, str(exc), self._clock.now_us())
            await self._finish_charge(config.account_id, payment.id, f"auto-recharge charge failed: {exc}")
            await self.refresh_auto_recharge()
            return
        self._metrics.auto_recharges.labels("started").inc()
        await self.store.bind(payment.id, intent, None, self._clock.now_us())
        await self.store.set_intent(payment.id, intent)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _resolve_soon(self, payment_id: str) -> None:
        for delay_s in _RESOLVE_DELAYS_S:
            await asyncio.sleep(delay_s)
            payment = await self.store.get(payment_id)
            if payment is None or payment.status is not PaymentStatus.PENDING:
                return
            try:
                if await self.resolve(payment):
                    return
            except Exception as exc:  # the database is away: try again, then the sweep takes over
                log.warning("charge resolution failed", extra={"payment": payment_id, "error": repr(exc)[:300]})

    async def converge(self) -> None:
        """Settle auto-recharge orders left pending (an ambiguous error, a process that died mid-charge)."""
        now_us = self._clock.now_us()
        if now_us < self._next_sweep_us or self._saved_card_provider() is None:
            return
        self._next_sweep_us = now_us + _SWEEP_INTERVAL_US
        age_us = min(self._limits.auto_recharge_claim_timeout_us, _SWEEP_AGE_MAX_US)
        for payment in await self.store.pending_charges("auto_recharge", now_us - age_us):
            try:
                await self.resolve(payment)
            except Exception as exc:  # one order's trouble must not stop the others
                log.error("charge resolution failed", extra={"payment": payment.id, "error": repr(exc)[:300]})

    async def resolve(self, payment: Payment) -> bool:
        """Ask the provider what became of a pending charge and apply it; True once the order is settled."""
        provider = self._saved_card_provider(payment.provider)
        if provider is None:
            return False
        config = await self.auto.get(payment.account_id)
        try:
            state = await provider.find_charge(payment, config.customer_id)
        except ProviderFailure as exc:
            log.warning("charge lookup failed", extra={"payment": payment.id, "error": str(exc)[:300]})
            return False
        now_us = self._clock.now_us()
        if state is None:
            if now_us - payment.created_at_us < self._limits.auto_recharge_claim_timeout_us:
                return False  # the request may still be on its way
            note = "the charge never reached the provider: nothing was charged or credited"
            if await self.store.mark(payment.id, PaymentStatus.FAILED, note, now_us):
                await self.auto.finish(payment.account_id, payment.id, now_us, None)
                await self.refresh_auto_recharge()
            return True
        if state.state == "pending":
            await self.store.note(payment.id, f"waiting for the provider: {state.reason}", now_us)
            return False
        outcome = await self._apply(self._lookup_event(payment, state))
        return outcome.result != "rejected"

    @staticmethod
    def _lookup_event(payment: Payment, state: ChargeState) -> ProviderEvent:
        """The provider's answer about a charge, as the event its webhook would have been."""
        return ProviderEvent(
            provider=payment.provider,
            event_id=f"lookup:{state.charge_id}:{state.state}",
            raw_type=f"charge_lookup.{state.state}",
            kind=EventKind.PAID if state.state == "succeeded" else EventKind.FAILED,
            payment_id=payment.id,
            account_id=payment.account_id,
            external_id=payment.external_id or state.charge_id,
            payment_intent=state.charge_id,
        )
