"""Card payments through Stripe Checkout, with the official `stripe` library.

Events arrive signed (Stripe-Signature: t=..., v1=HMAC-SHA256 of "t.body") and are normalised to
what an order needs: paid, processing (async methods), failed, refunded, dispute opened or won.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import stripe

from tollway.payments.model import EventKind, Payment, ProviderEvent
from tollway.payments.provider import ChargeState, InvalidSignature, ProviderFailure

_PAYMENT_EVENTS = {
    "checkout.session.async_payment_succeeded": EventKind.PAID,
    "checkout.session.async_payment_failed": EventKind.FAILED,
    "checkout.session.expired": EventKind.FAILED,
}


# Refusals Stripe decided on; anything else (5xx, timeouts, dropped connections, rate limits) may have acted.
_DEFINITE_ERRORS = (
    stripe.CardError,
    stripe.InvalidRequestError,
    stripe.AuthenticationError,
    stripe.PermissionError,
    stripe.IdempotencyError,
)
_FAILED_INTENT_STATES = ("requires_payment_method", "canceled")


def _get(obj: Any, name: str) -> Any:
    try:
        return obj[name]
    except (KeyError, TypeError):
        return None


class StripeProvider:
    name = "stripe"
    method = "card"
    refundable = True

    def __init__(
        self,
        secret_key: str,
        webhook_secret: str,
        api_base: str,
        success_url: str,
        cancel_url: str,
        tolerance_s: int = 300,
        timeout_s: float = 30.0,
    ) -> None:
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base},
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout_s),
        )
        self._webhook_secret = webhook_secret
        self._success_url = success_url
        self._cancel_url = cancel_url
        self._tolerance_s = tolerance_s

    async def _call(self, function: Any, params: dict[str, Any], idempotency_key: str | None = None, *args: Any) -> Any:
        options: dict[str, Any] = {"idempotency_key": idempotency_key} if idempotency_key else {}
        try:
            return await asyncio.to_thread(function, *args, params=params, options=options)
        except _DEFINITE_ERRORS as exc:
            raise ProviderFailure(f"Stripe refused: {exc.user_message or exc}") from exc
        except stripe.StripeError as exc:
            raise ProviderFailure(f"Stripe did not answer clearly: {exc}", ambiguous=True) from exc

    async def create_checkout(self, payment: Payment) -> tuple[str, str]:
        params = {
            "mode": "payment",
            "success_url": self._success_url,
            "cancel_url": self._cancel_url,
            "client_reference_id": payment.account_id,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": payment.currency,
                        "unit_amount": payment.total_cents,
                        "product_data": {"name": f"Tollway credits ({payment.amount_nanos / 1e9:.2f} USD)"},
                    },
                }
            ],
            "metadata": {"payment_id": payment.id, "account_id": payment.account_id},
            "payment_intent_data": {"metadata": {"payment_id": payment.id, "account_id": payment.account_id}},
        }
        session = await self._call(self._client.v1.checkout.sessions.create, params, idempotency_key=payment.id)
        return str(session.id), str(session.url)

    async def setup_checkout(self, account_id: str, customer_id: str | None) -> tuple[str, str]:
        """A Checkout Session in setup mode: saves a card for auto-recharge."""
        params: dict[str, Any] = {
            "mode": "setup",
            "currency": "usd",
            "success_url": self._success_url,
            "cancel_url": self._cancel_url,
            "client_reference_id": account_id,
            "metadata": {"account_id": account_id, "purpose": "auto_recharge"},
        }
        if customer_id:
            params["customer"] = customer_id
        else:
            params["customer_creation"] = "always"
        session = await self._call(self._client.v1.checkout.sessions.create, params)
        return str(session.id), str(session.url)

    async def charge_saved_method(self, payment: Payment, customer_id: str, payment_method_id: str) -> str:
        """An off-session PaymentIntent; the idempotency key is the order, so a retry never charges twice."""
        intent = await self._call(
            self._client.v1.payment_intents.create,
            {
                "amount": payment.total_cents,
                "currency": payment.currency,
                "customer": customer_id,
                "payment_method": payment_method_id,
                "off_session": True,
                "confirm": True,
                "metadata": {"payment_id": payment.id, "account_id": payment.account_id, "purpose": "auto_recharge"},
            },
            idempotency_key=f"auto-recharge-{payment.id}",
        )
        return str(intent.id)

    async def find_charge(self, payment: Payment, customer_id: str | None) -> ChargeState | None:
        """Retrieve the order's PaymentIntent; without its id, find it among the customer's latest ones."""
        intent: Any = None
        if payment.payment_intent:
            intent = await self._call(self._client.v1.payment_intents.retrieve, {}, None, payment.payment_intent)
        elif customer_id:
            # The list is consistent at once (search is not): a charge made a moment ago is in it.
            listed = await self._call(self._client.v1.payment_intents.list, {"customer": customer_id, "limit": 100})
            intent = next((i for i in listed.data if _get(_get(i, "metadata"), "payment_id") == payment.id), None)
        if intent is None:
            return None
        status = str(_get(intent, "status"))
        if status == "succeeded":
            return ChargeState(str(intent.id), "succeeded")
        if status in _FAILED_INTENT_STATES:
            error = _get(intent, "last_payment_error")
            return ChargeState(str(intent.id), "failed", str(_get(error, "message") or f"the charge is {status}"))
        return ChargeState(str(intent.id), "pending", f"the charge is {status}")

    async def setup_payment_method(self, setup_intent_id: str) -> str | None:
        intent = await self._call(self._client.v1.setup_intents.retrieve, {}, None, setup_intent_id)
        method = intent.payment_method
        return None if method is None else str(method if isinstance(method, str) else method.id)

    async def refund(self, payment: Payment, cents: int) -> None:
        if not payment.payment_intent:
            raise ProviderFailure("the payment has no Stripe payment intent to refund")
        await self._call(
            self._client.v1.refunds.create,
            {"payment_intent": payment.payment_intent, "amount": cents},
            idempotency_key=f"refund-{payment.id}-{payment.refunded_cents}-{cents}",
        )

    def verify(self, raw_body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        signature = headers.get("Stripe-Signature")
        if not signature:
            raise InvalidSignature("missing Stripe-Signature header")
        try:
            event = stripe.Webhook.construct_event(raw_body, signature, self._webhook_secret, self._tolerance_s)
        except stripe.SignatureVerificationError as exc:
            raise InvalidSignature(str(exc)) from exc
        except ValueError as exc:
            raise InvalidSignature(f"the body is not a Stripe event: {exc}") from exc
        return self._normalise(event)

    def _normalise(self, event: Any) -> ProviderEvent:
        kind_name = str(event["type"])
        obj = event["data"]["object"]
        metadata = _get(obj, "metadata") or {}
        common: dict[str, Any] = {
            "provider": self.name,
            "event_id": str(event["id"]),
            "raw_type": kind_name,
            "payment_id": _get(metadata, "payment_id"),
            "account_id": _get(metadata, "account_id"),
        }
        if kind_name == "checkout.session.completed":
            if _get(obj, "mode") == "setup":
                return ProviderEvent(
                    **common,
                    kind=EventKind.SETUP_COMPLETED,
                    external_id=_get(obj, "id"),
                    customer_id=_get(obj, "customer"),
                    payment_method_id=_get(obj, "setup_intent"),
                )
            paid = _get(obj, "payment_status") == "paid"
            return ProviderEvent(
                **common,
                kind=EventKind.PAID if paid else EventKind.PROCESSING,
                external_id=_get(obj, "id"),
                amount_cents=_get(obj, "amount_total"),
                currency=_get(obj, "currency"),
                payment_intent=_get(obj, "payment_intent"),
            )
        if kind_name in _PAYMENT_EVENTS:
            return ProviderEvent(
                **common,
                kind=_PAYMENT_EVENTS[kind_name],
                external_id=_get(obj, "id"),
                amount_cents=_get(obj, "amount_total"),
                currency=_get(obj, "currency"),
                payment_intent=_get(obj, "payment_intent"),
            )
        if kind_name in ("payment_intent.succeeded", "payment_intent.payment_failed"):
            if _get(metadata, "purpose") != "auto_recharge":
                return ProviderEvent(**common, kind=EventKind.IGNORED)  # checkout intents credit via the session
            failed = kind_name.endswith("failed")
            return ProviderEvent(
                **common,
                kind=EventKind.FAILED if failed else EventKind.PAID,
                external_id=_get(obj, "id"),
                payment_intent=_get(obj, "id"),
                amount_cents=_get(obj, "amount"),
                currency=_get(obj, "currency"),
            )
        if kind_name == "charge.refunded":
            return ProviderEvent(
                **common,
                kind=EventKind.REFUNDED,
                payment_intent=_get(obj, "payment_intent"),
                refunded_cents=_get(obj, "amount_refunded"),
                currency=_get(obj, "currency"),
            )
        if kind_name in ("charge.dispute.created", "charge.dispute.closed"):
            if kind_name.endswith("closed") and _get(obj, "status") != "won":
                return ProviderEvent(**common, kind=EventKind.IGNORED)  # lost: the debit at creation stands
            kind = EventKind.DISPUTE_OPENED if kind_name.endswith("created") else EventKind.DISPUTE_WON
            return ProviderEvent(
                **common, kind=kind, payment_intent=_get(obj, "payment_intent"), dispute_id=_get(obj, "id")
            )
        return ProviderEvent(**common, kind=EventKind.IGNORED)
