"""Credits purchase API: checkout, purchase history, auto-recharge, and the providers' webhooks."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tollway.accounts import parse_usd
from tollway.api.context import authenticate, services_of
from tollway.api.http import json_response, read_json
from tollway.errors import InvalidRequest
from tollway.money import nanos_to_usd


async def _body(request: web.Request) -> dict[str, Any]:
    body = await read_json(request, services_of(request).settings.max_body_bytes)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object")
    return body


async def checkout(request: web.Request) -> web.Response:
    services = services_of(request)
    key = await authenticate(request)
    body = await _body(request)
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
    key = await authenticate(request)
    return json_response({"data": (await services.payments.auto.get(key.account_id)).as_dict()})


async def put_auto_recharge(request: web.Request) -> web.Response:
    """Only the account (any of its keys) turns auto-recharge on; a failed charge turned it off."""
    services = services_of(request)
    key = await authenticate(request)
    body = await _body(request)
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
    saved = await services.payments.auto.save(key.account_id, services.clock.now_us(), **values)
    await services.payments.refresh_auto_recharge()
    return json_response({"data": saved.as_dict()})


async def setup_auto_recharge(request: web.Request) -> web.Response:
    services = services_of(request)
    key = await authenticate(request)
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
