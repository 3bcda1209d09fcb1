"""Payments end to end: checkout, webhooks applied exactly once, refunds, pending orders, auto-recharge.

Each outside event becomes at most one ledger operation, written in the same transaction as the
event's dedup row; the hot-path book then counts it. Nothing credits without a verified event bound
to a recorded order (provider, order id, account, amount and currency must all agree).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from tollway.balance import PendingPayment
from tollway.clock import Clock
from tollway.errors import InvalidRequest, NotFound, NotImplementedYet, ServiceUnavailable, TollwayError
from tollway.ledger.service import Ledger
from tollway.metrics import Metrics
from tollway.money import usd_to_nanos
from tollway.payments.auto_recharge import AutoRecharge, AutoRechargeStore
from tollway.payments.model import EventKind, FeeRule, Payment, PaymentStatus
from tollway.payments.provider import InvalidSignature, PaymentProvider, ProviderFailure
from tollway.payments.store import Outcome, PaymentStore
from tollway.payments.stripe_provider import StripeProvider

log = logging.getLogger("tollway.payments")

_PENDING_VISIBLE_US = 24 * 3600 * 1_000_000


@dataclass(frozen=True, slots=True)
class CheckoutLimits:
    min_nanos: int
    max_nanos: int
    refund_window_us: int
    auto_recharge_interval_us: int


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
        self._background: set[asyncio.Task[None]] = set()

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
        return FeeRule(Decimal(provider.fee_percent), usd_to_nanos(provider.fee_minimum_usd)).fee_nanos(amount_nanos)

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
            await self.auto.finish(payment.account_id, payment.id, self._clock.now_us(), failure)
            await self.refresh_auto_recharge()
        return outcome

    async def _setup_completed(
        self, provider: PaymentProvider, account_id: str | None, customer: str | None, setup_intent: str | None
    ) -> Outcome:
        if not account_id or not isinstance(provider, StripeProvider):
            return Outcome("rejected", "setup event without an account")
        payment_method = await provider.setup_payment_method(setup_intent) if setup_intent else None
        await self.auto.save(account_id, self._clock.now_us(), customer_id=customer, payment_method_id=payment_method)
        return Outcome("saved", "payment method saved for auto-recharge")

    async def setup_checkout(self, account_id: str) -> str:
        provider = self.provider("stripe")
        assert isinstance(provider, StripeProvider)
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
        task = asyncio.create_task(self._recharge(config))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _recharge(self, config: AutoRecharge) -> None:
        provider = self._providers.get("stripe")
        if not isinstance(provider, StripeProvider) or not (config.customer_id and config.payment_method_id):
            return
        now_us = self._clock.now_us()
        payment = await self.store.create(
            config.account_id,
            "stripe",
            "auto_recharge",
            config.amount_nanos,
            self._fee(provider, config.amount_nanos),
            now_us,
        )
        if not await self.auto.claim(config.account_id, payment.id, now_us, self._limits.auto_recharge_interval_us):
            await self.store.mark(payment.id, PaymentStatus.FAILED, "not started: another charge is in flight", now_us)
            return
        await self.refresh_auto_recharge()
        try:
            intent = await provider.charge_saved_method(payment, config.customer_id, config.payment_method_id)
        except ProviderFailure as exc:
            self._metrics.auto_recharges.labels("failed").inc()
            await self.store.mark(payment.id, PaymentStatus.FAILED, str(exc), self._clock.now_us())
            await self.auto.finish(
                config.account_id, payment.id, self._clock.now_us(), f"auto-recharge charge failed: {exc}"
            )
            await self.refresh_auto_recharge()
            return
        self._metrics.auto_recharges.labels("started").inc()
        await self.store.bind(payment.id, intent, None, self._clock.now_us())
        await self.store.set_intent(payment.id, intent)
