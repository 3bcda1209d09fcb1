"""The Credits page: balance and what explains it, purchases, buying credits, auto-recharge settings."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from markupsafe import Markup

from tollway.accounts import parse_usd
from tollway.activity import AccountActivity, window
from tollway.api.context import services_of
from tollway.api.payments import auto_recharge_bounds_error
from tollway.audit import Actor, auto_recharge_state
from tollway.auth.records import KeyRecord
from tollway.dashboard.charts import balance_line
from tollway.dashboard.web import form, render, require_user, see_other
from tollway.errors import InvalidRequest, TollwayError
from tollway.money import format_usd, usd_to_nanos
from tollway.services import Services


async def _account_key(request: web.Request, account_id: str) -> KeyRecord | None:
    """Any key of the account, for the figures that hang off a key (the first one, or none)."""
    keys = await services_of(request).accounts.store.keys_for_account(account_id)
    return next((k for k in keys if not k.is_management), keys[0] if keys else None)


async def credits_page(request: web.Request, errors: dict[str, str] | None = None) -> web.Response:
    services = services_of(request)
    who, user = await require_user(request)
    figures = await services.ledger.account_figures(user.account_id)
    key = await _account_key(request, user.account_id)
    report: dict[str, Any] = {"explanations": [], "summary": ""}
    if key is not None:
        report = await services.balance.report(key)
    elif figures.balance_nanos <= 0:
        report = {
            "explanations": [1],
            "summary": f"You have {format_usd(figures.balance_nanos)} USD: add credits "
            "to use paid models, and create a key to call the API.",
        }
    return render(
        request,
        who,
        "credits.html",
        status=400 if errors else 200,
        title="Credits",
        active="/credits",
        figures=figures,
        report=report,
        pending=await services.payments.pending(user.account_id),
        purchases=await services.payments.purchases(user.account_id),
        auto=await services.payments.auto.get(user.account_id),
        payments_enabled="stripe" in services.payments.configured,
        balance_chart=await _balance_chart(services, user.account_id, figures.balance_nanos),
        errors=errors or {},
    )


async def _balance_chart(services: Services, account_id: str, balance_nanos: int) -> Markup:
    """The balance at the end of each of the last 30 UTC days, from the ledger; today's is the live figure."""
    first, last = window(services.clock.now_us())
    points = [
        (p.day, p.balance_nanos) for p in await AccountActivity(services.engine).balances(account_id, first, last)
    ]
    if points:
        points[-1] = (points[-1][0], balance_nanos)
    return balance_line(points, "Balance at the end of each UTC day, last 30 days")


async def buy(request: web.Request) -> web.Response:
    services = services_of(request)
    who, user = await require_user(request)
    fields = await form(request, who)
    try:
        payment = await services.payments.checkout(user.account_id, fields.get("amount", ""), "stripe")
    except TollwayError as exc:
        return await credits_page(request, errors={"amount": exc.message})
    raise see_other(payment.checkout_url or "/credits")


async def auto_recharge(request: web.Request) -> web.Response:
    services = services_of(request)
    who, user = await require_user(request)
    fields = await form(request, who)
    enabled = fields.get("enabled") == "1"
    current = await services.payments.auto.get(user.account_id)
    try:
        threshold = parse_usd(fields.get("threshold") or "0", "threshold")
        amount = parse_usd(fields.get("amount") or "0", "amount")
        if enabled and not (current.customer_id and current.payment_method_id):
            raise InvalidRequest("Save a card first (Buy credits once, or use the API's auto-recharge setup).")
        if enabled and not amount:
            raise InvalidRequest("Set an amount above 0 to enable auto-recharge.")
        problem = auto_recharge_bounds_error(
            threshold or 0, amount or 0, usd_to_nanos(services.settings.checkout_max_usd)
        )
        if problem is not None:
            raise problem
    except InvalidRequest as exc:
        return await credits_page(request, errors={"auto": exc.message})
    values: dict[str, Any] = {"threshold_nanos": threshold, "amount_nanos": amount, "enabled": enabled}
    if enabled:
        values["disabled_reason"] = None
    saved = await services.payments.auto.save(user.account_id, services.clock.now_us(), **values)
    await services.audit.record(
        Actor.user(user.id, user.email),
        "auto_recharge.update",
        user.account_id,
        user.account_id,
        auto_recharge_state(current),
        auto_recharge_state(saved),
    )
    await services.payments.refresh_auto_recharge()
    raise see_other("/credits")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/credits", credits_page),
        web.post("/credits/buy", buy),
        web.post("/credits/auto-recharge", auto_recharge),
    ]
