"""Dashboard pages: credits, keys, activity, models (sign-in and admin pages have their modules). Same services
as the API."""

from __future__ import annotations

import csv
import io
from typing import Any

from aiohttp import web

from tollway.accounts import parse_reset, parse_usd
from tollway.api.context import services_of
from tollway.api.payments import auto_recharge_bounds_error
from tollway.audit import Actor, auto_recharge_state, key_state
from tollway.auth.records import KeyRecord
from tollway.auth.store import KeyChanges
from tollway.clock import us_to_iso
from tollway.dashboard import admin, signin
from tollway.dashboard.activity import DAY_US
from tollway.dashboard.users import User
from tollway.dashboard.web import Visitor, form, has_control_characters, render, require_user, see_other, visitor
from tollway.errors import InvalidRequest, TollwayError
from tollway.money import femtos_to_price_string, format_usd, usd_to_nanos

_THIRTY_DAYS_US = 30 * DAY_US
_PAGE = 50


def _actor(user: User) -> Actor:
    return Actor.user(user.id, user.email)


async def root(request: web.Request) -> web.Response:
    who = await visitor(request)
    raise see_other("/credits" if who.user else "/login")


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
        errors=errors or {},
    )


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
        _actor(user),
        "auto_recharge.update",
        user.account_id,
        user.account_id,
        auto_recharge_state(current),
        auto_recharge_state(saved),
    )
    await services.payments.refresh_auto_recharge()
    raise see_other("/credits")


async def _keys_context(request: web.Request, account_id: str) -> list[dict[str, Any]]:
    services = services_of(request)
    keys = [k for k in await services.accounts.store.keys_for_account(account_id) if not k.is_management]
    return [{"key": k, "figures": await services.ledger.key_figures(k)} for k in keys]


async def _keys_view(
    request: web.Request,
    who: Visitor,
    account_id: str,
    *,
    created: str | None = None,
    fields: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> web.Response:
    """The keys page; `created` is a new key's only showing, `errors` re-renders a form with status 400."""
    return render(
        request,
        who,
        "keys.html",
        status=400 if errors else 200,
        title="Keys",
        active="/keys",
        created=created,
        form=fields or {},
        errors=errors or {},
        keys=await _keys_context(request, account_id),
    )


async def keys_page(request: web.Request) -> web.Response:
    who, user = await require_user(request)
    return await _keys_view(request, who, user.account_id)


async def create_key(request: web.Request) -> web.Response:
    services = services_of(request)
    who, user = await require_user(request)
    fields = await form(request, who)
    errors: dict[str, str] = {}
    limit = fields.get("limit") or None
    try:
        created = await services.accounts.create_key(
            user.account_id,
            name=fields.get("name", ""),
            limit=limit,
            limit_reset=fields.get("limit_reset") or None,
            creator_user_id=user.id,
        )
    except InvalidRequest as exc:
        errors[str(exc.metadata.get("field", "name"))] = exc.message
        return await _keys_view(request, who, user.account_id, fields=fields, errors=errors)
    services.keys.put(created.record)
    await services.audit.record(
        _actor(user), "key.create", user.account_id, created.record.hash, None, key_state(created.record)
    )
    return await _keys_view(request, who, user.account_id, created=created.plain)


async def _own_key(request: web.Request, account_id: str) -> KeyRecord:
    key_hash = request.match_info["hash"]
    record = (
        None if has_control_characters(key_hash) else await services_of(request).accounts.store.key_by_hash(key_hash)
    )
    if record is None or record.account_id != account_id or record.deleted_at_us is not None:
        raise web.HTTPNotFound(text="No such key")
    return record


async def key_action(request: web.Request) -> web.Response:
    services = services_of(request)
    who, user = await require_user(request)
    fields = await form(request, who)
    record = await _own_key(request, user.account_id)
    action = request.match_info["action"]
    if action == "delete":
        await services.accounts.delete_key(record.hash)
        updated = await services.accounts.store.key_by_hash(record.hash)
    elif action in ("disable", "enable"):
        updated = await services.accounts.update_key(record.hash, KeyChanges(disabled=action == "disable"))
    elif action == "edit":
        try:
            changes = KeyChanges(
                limit_nanos=parse_usd(fields.get("limit") or None, "limit", allow_null=True),
                limit_reset=parse_reset(fields.get("limit_reset") or None),
            )
        except InvalidRequest as exc:
            return await _keys_view(request, who, user.account_id, errors={"limit": exc.message})
        updated = await services.accounts.update_key(record.hash, changes)
    else:
        raise web.HTTPNotFound(text="No such action")
    if updated is not None:
        services.keys.put(updated)
        await services.audit.record(
            _actor(user), f"key.{action}", user.account_id, record.hash, key_state(record), key_state(updated)
        )
    raise see_other("/keys")


def _daily_rows(rows: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "date": (us_to_iso(r.day * DAY_US) or "")[:10],
            "group": r.group,
            "requests": r.requests,
            "tokens": r.tokens,
            "cost": format_usd(r.cost_nanos),
        }
        for r in rows
    ]


async def activity_page(request: web.Request) -> web.Response:
    services = services_of(request)
    who, user = await require_user(request)
    since = services.clock.now_us() - _THIRTY_DAYS_US
    by = "key" if request.query.get("by") == "key" else "model"
    model = request.query.get("model") or None
    if model is not None and has_control_characters(model):
        model = None
    try:
        offset = max(0, int(request.query.get("offset", "0")))
    except ValueError:
        offset = 0
    generations = await services.activity.generations(user.account_id, since, _PAGE + 1, offset, model)
    daily = await services.activity.daily(user.account_id, since, by)
    totals: dict[int, int] = {}
    for row in daily:
        totals[row.day] = totals.get(row.day, 0) + row.cost_nanos
    today = services.clock.now_us() // DAY_US
    peak = max(totals.values(), default=0) or 1
    bars = [
        {
            "x": (29 - (today - day)) * 10,
            "height": max(1, int(100 * cost / peak)),
            "label": f"{(us_to_iso(day * DAY_US) or '')[:10]}: {format_usd(cost)} USD",
        }
        for day, cost in totals.items()
        if today - day < 30
    ]
    return render(
        request,
        who,
        "activity.html",
        title="Activity",
        active="/activity",
        by=by,
        model=model,
        daily=_daily_rows(daily),
        bars=bars,
        generations=generations[:_PAGE],
        next_offset=offset + _PAGE if len(generations) > _PAGE else None,
    )


def _csv(rows: list[list[Any]], filename: str) -> web.Response:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return web.Response(
        text=buffer.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _femtos_as_usd(femtos: int) -> str:
    sign = "-" if femtos < 0 else ""
    return sign + femtos_to_price_string(abs(femtos))


async def generations_csv(request: web.Request) -> web.Response:
    services = services_of(request)
    _who, user = await require_user(request)
    since = services.clock.now_us() - _THIRTY_DAYS_US
    records = await services.activity.generations(user.account_id, since, 100_000)
    rows: list[list[Any]] = [
        [
            "id",
            "created_at",
            "model",
            "provider",
            "tokens_prompt",
            "tokens_completion",
            "tokens_cached",
            "tokens_cache_write",
            "tokens_reasoning",
            "images",
            "cost",
            "cache_discount",
            "usage_estimated",
            "latency_ms",
            "status",
        ]
    ]
    rows += [
        [
            g.id,
            us_to_iso(g.created_at_us),
            g.model,
            g.provider_name,
            g.tokens_prompt,
            g.tokens_completion,
            g.tokens_cached,
            g.tokens_cache_write,
            g.tokens_reasoning,
            g.images,
            format(g.cost_nanos / 1_000_000_000, ".9f").rstrip("0").rstrip(".") if g.cost_nanos else "0",
            _femtos_as_usd(g.cost_details.get("cache_discount", 0)),
            "true" if g.usage_estimated else "false",
            g.latency_ms,
            g.status,
        ]
        for g in records
    ]
    return _csv(rows, "generations.csv")


async def daily_csv(request: web.Request) -> web.Response:
    services = services_of(request)
    _who, user = await require_user(request)
    by = "key" if request.query.get("by") == "key" else "model"
    daily = await services.activity.daily(user.account_id, services.clock.now_us() - _THIRTY_DAYS_US, by)
    rows: list[list[Any]] = [["date", by, "requests", "tokens", "cost"]]
    rows += [[r["date"], r["group"], r["requests"], r["tokens"], r["cost"]] for r in _daily_rows(daily)]
    return _csv(rows, "daily.csv")


async def models_page(request: web.Request) -> web.Response:
    services = services_of(request)
    who, _user = await require_user(request)
    rows = []
    for model in services.catalog.models():
        price = model.cheapest.price
        stats = [services.gateway.health.stats(e.endpoint_id) for e in model.endpoints]
        latency = [s.latency_ms for s in stats if s.latency_ms is not None]
        throughput = [s.throughput_tps for s in stats if s.throughput_tps is not None]
        rows.append(
            {
                "id": model.id,
                "name": model.name,
                "prompt": femtos_to_price_string(price.prompt_femtos * 1_000_000),
                "completion": femtos_to_price_string(price.completion_femtos * 1_000_000),
                "context": model.context_length,
                "providers": ", ".join(e.provider_name for e in model.endpoints),
                "latency": f"{min(latency):.0f} ms" if latency else "–",
                "throughput": f"{max(throughput):.0f} tok/s" if throughput else "–",
            }
        )
    return render(request, who, "models.html", title="Models", active="/models", models=rows)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/", root),
        *signin.routes(),
        web.get("/credits", credits_page),
        web.post("/credits/buy", buy),
        web.post("/credits/auto-recharge", auto_recharge),
        web.get("/keys", keys_page),
        web.post("/keys", create_key),
        web.post("/keys/{hash}/{action}", key_action),
        web.get("/activity", activity_page),
        web.get("/activity/generations.csv", generations_csv),
        web.get("/activity/daily.csv", daily_csv),
        web.get("/models", models_page),
        *admin.routes(),
    ]
