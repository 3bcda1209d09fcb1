"""Credits purchase API: checkout, purchase history, auto-recharge, and the providers' webhooks."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tollway.accounts import parse_usd
from tollway.api.context import authenticate, services_of
from tollway.api.http import json_response, read_json_object
from tollway.audit import Actor, auto_recharge_state
from tollway.auth.records import KeyRecord
from tollway.errors import InvalidRequest, PermissionDenied
from tollway.money import nanos_to_usd, usd_to_nanos

_OWNER_SENTENCE = (
    "Buying credits, auto-recharge and saved cards spend the account owner's money: use a management key "
    "(or the dashboard), not an inference key."
)


async def _owner(request: web.Request) -> KeyRecord:
    """The caller's key, which must be a management key: an inference key never moves the owner's money."""
    key = await authenticate(request)
    if not key.is_management:
        raise PermissionDenied(
            f"This key cannot manage billing. {_OWNER_SENTENCE}",
            metadata={"explanation": {"code": "billing_needs_owner", "message": _OWNER_SENTENCE}},
        )
    return key


def auto_recharge_bounds_error(threshold_nanos: int, amount_nanos: int, max_nanos: int) -> InvalidRequest | None:
    """Why a threshold/amount pair cannot be saved, or None: 0 < amount <= max and threshold < amount."""
    if amount_nanos > max_nanos:
        message = f"amount must be at most {nanos_to_usd(max_nanos):g} USD (the checkout maximum)"
        return InvalidRequest(message, metadata={"field": "amount"})
    if amount_nanos > 0 and threshold_nanos >= amount_nanos:
        message = "threshold must be below amount: a recharge must lift the balance above the threshold"
        return InvalidRequest(message, metadata={"field": "threshold"})
    return None


async def checkout(request: web.Request) -> web.Response:
    services = services_of(request)
    key = await _owner(request)
    body = await read_json_object(request, services_of(request).settings.max_body_bytes)
    provider = body.get("provider", "stripe")
    if provider not in ("stripe", "crypto"):
        raise InvalidRequest("provider must be stripe or crypto", metadata={"field": "provider"})
    payment = await services.payments.checkout(key.account_id, body.get("amount"), str(provider))
    return json_response(
        {
            "data": {
                "id": payment.id,
                "url": payment.checkout_url,
                "amount": nanos_to_usd(payment.amount_nanos),
                "fee": nanos_to_usd(payment.fee_nanos),
                "total": payment.total_cents / 100,
            }
        }
    )


async def purchases(request: web.Request) -> web.Response:
    services = services_of(request)
    key = await authenticate(request)
    return json_response({"data": [p.as_dict() for p in await services.payments.purchases(key.account_id)]})


async def get_auto_recharge(request: web.Request) -> web.Response:
    services = services_of(request)
    key = await _owner(request)
    return json_response({"data": (await services.payments.auto.get(key.account_id)).as_dict()})


async def put_auto_recharge(request: web.Request) -> web.Response:
    """Only the account's owner (a management key) changes auto-recharge; a failed charge turned it off."""
    services = services_of(request)
    key = await _owner(request)
    body = await read_json_object(request, services_of(request).settings.max_body_bytes)
    current = await services.payments.auto.get(key.account_id)
    values: dict[str, Any] = {}
    if "threshold" in body:
        values["threshold_nanos"] = parse_usd(body["threshold"], "threshold")
    if "amount" in body:
        values["amount_nanos"] = parse_usd(body["amount"], "amount", allow_zero=False)
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise InvalidRequest("enabled must be true or false", metadata={"field": "enabled"})
        if body["enabled"] and not (current.customer_id and current.payment_method_id):
            raise InvalidRequest(
                "save a card first: POST /api/v1/credits/auto-recharge/setup opens a Stripe page to do so",
                metadata={"field": "enabled"},
            )
        values["enabled"] = body["enabled"]
        if body["enabled"]:
            values["disabled_reason"] = None
    amount = values.get("amount_nanos", current.amount_nanos)
    if values.get("enabled", current.enabled) and amount <= 0:
        raise InvalidRequest("set an amount above 0 to enable auto-recharge", metadata={"field": "amount"})
    threshold = values.get("threshold_nanos", current.threshold_nanos)
    problem = auto_recharge_bounds_error(threshold, amount, usd_to_nanos(services.settings.checkout_max_usd))
    if problem is not None:
        raise problem
    saved = await services.payments.auto.save(key.account_id, services.clock.now_us(), **values)
    await services.audit.record(
        Actor.key(key),
        "auto_recharge.update",
        key.account_id,
        key.account_id,
        auto_recharge_state(current),
        auto_recharge_state(saved),
    )
    await services.payments.refresh_auto_recharge()
    return json_response({"data": saved.as_dict()})


async def setup_auto_recharge(request: web.Request) -> web.Response:
    services = services_of(request)
    key = await _owner(request)
    url = await services.payments.setup_checkout(key.account_id)
    return json_response({"data": {"url": url}})


async def _webhook(request: web.Request, provider: str) -> web.Response:
    services = services_of(request)
    raw = await request.read()
    outcome = await services.payments.handle_webhook(provider, raw, request.headers)
    # Duplicates and events that bind to no order still get 200, so the provider stops retrying.
    return json_response({"received": True, "outcome": outcome.result, "reason": outcome.reason})


async def stripe_webhook(request: web.Request) -> web.Response:
    return await _webhook(request, "stripe")


async def crypto_webhook(request: web.Request) -> web.Response:
    return await _webhook(request, "crypto")
