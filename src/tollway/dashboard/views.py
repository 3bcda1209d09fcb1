"""Dashboard pages: sign-in, credits, keys, activity, models, admin. Same services as the API."""

from __future__ import annotations

import csv
import io
from typing import Any

from aiohttp import web

from tollway.accounts import check_email, parse_reset, parse_usd
from tollway.api.context import services_of
from tollway.auth.records import KeyRecord
from tollway.auth.store import KeyChanges
from tollway.clock import us_to_iso
from tollway.dashboard.activity import DAY_US
from tollway.dashboard.users import MIN_PASSWORD, UserExists
from tollway.dashboard.web import (
    SESSION_COOKIE,
    Visitor,
    form,
    render,
    require_user,
    see_other,
    set_cookie,
    visitor,
)
from tollway.errors import InvalidRequest, NotFound, TollwayError
from tollway.money import femtos_to_price_string, format_usd

_THIRTY_DAYS_US = 30 * DAY_US
_PAGE = 50


def _safe_next(target: str | None) -> str:
    return target if target and target.startswith("/") and not target.startswith("//") else "/credits"


async def root(request: web.Request) -> web.Response:
    who = await visitor(request)
    raise see_other("/credits" if who.user else "/login")


def _auth_form(
    request: web.Request,
    who: Visitor,
    action: str,
    *,
    status: int = 200,
    next_path: str | None = None,
    email: str = "",
    error: str | None = None,
    errors: dict[str, str] | None = None,
) -> web.Response:
    """The sign-in (action /login) or sign-up (action /signup) form, with what went wrong if anything."""
    title = "Sign in" if action == "/login" else "Sign up"
    return render(
        request,
        who,
        "auth.html",
        status=status,
        title=title,
        action=action,
        next=next_path,
        email=email,
        error=error,
        errors=errors or {},
    )


async def login_page(request: web.Request) -> web.Response:
    return _auth_form(request, await visitor(request), "/login", next_path=request.query.get("next"))


async def signup_page(request: web.Request) -> web.Response:
    return _auth_form(request, await visitor(request), "/signup")


async def _signed_in(request: web.Request, session_id: str, target: str) -> web.Response:
    response = web.HTTPSeeOther(target)
    set_cookie(request, response, SESSION_COOKIE, session_id)
    raise response


async def login(request: web.Request) -> web.Response:
    services = services_of(request)
    who = await visitor(request)
    fields = await form(request, who)
    user = await services.users.check_password(fields.get("email", "").strip(), fields.get("password", ""))
    if user is None:
        return _auth_form(
            request,
            who,
            "/login",
            status=401,
            next_path=fields.get("next"),
            email=fields.get("email", ""),
            error="Invalid email or password",
        )
    session_id = await services.users.start_session(user, services.clock.now_us())
    return await _signed_in(request, session_id, _safe_next(fields.get("next")))


async def signup(request: web.Request) -> web.Response:
    services = services_of(request)
    who = await visitor(request)
    fields = await form(request, who)
    email, password = fields.get("email", "").strip(), fields.get("password", "")
    errors: dict[str, str] = {}
    try:
        check_email(email)
    except InvalidRequest as exc:
        errors["email"] = exc.message
    if len(password) < MIN_PASSWORD:
        errors["password"] = f"The password needs at least {MIN_PASSWORD} characters."
    if not errors and await services.users.by_email(email) is not None:
        errors["email"] = "This email already has an account; sign in instead."
    if errors:
        return _auth_form(request, who, "/signup", status=400, email=email, errors=errors)
    account = await services.accounts.create_account(email)
    try:
        user = await services.users.create(email, password, account.id, "owner", False, services.clock.now_us())
    except UserExists:
        return _auth_form(
            request, who, "/signup", status=400, email=email, errors={"email": "This email already has an account."}
        )
    session_id = await services.users.start_session(user, services.clock.now_us())
    return await _signed_in(request, session_id, "/credits")


async def logout_page(request: web.Request) -> web.Response:
    who = await visitor(request)
    return render(request, who, "logout.html", title="Sign out", active=None)


async def logout(request: web.Request) -> web.Response:
    who = await visitor(request)
    await form(request, who)
    if who.user is not None:
        await services_of(request).users.end_session(who.csrf_subject)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


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
    except InvalidRequest as exc:
        return await credits_page(request, errors={"auto": exc.message})
    values: dict[str, Any] = {"threshold_nanos": threshold, "amount_nanos": amount, "enabled": enabled}
    if enabled:
        values["disabled_reason"] = None
    await services.payments.auto.save(user.account_id, services.clock.now_us(), **values)
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
    return await _keys_view(request, who, user.account_id, created=created.plain)


async def _own_key(request: web.Request, account_id: str) -> KeyRecord:
    record = await services_of(request).accounts.store.key_by_hash(request.match_info["hash"])
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


async def generations_csv(request: web.Request) -> web.Response:
    services = services_of(request)
    _who, user = await require_user(request)
    since = services.clock.now_us() - _THIRTY_DAYS_US
    records = await services.activity.generations(user.account_id, since, 100_000)
    rows: list[list[Any]] = [
        ["id", "created_at", "model", "provider", "tokens_prompt", "tokens_completion", "cost", "latency_ms", "status"]
    ]
    rows += [
        [
            g.id,
            us_to_iso(g.created_at_us),
            g.model,
            g.provider_name,
            g.tokens_prompt,
            g.tokens_completion,
            format(g.cost_nanos / 1_000_000_000, ".9f").rstrip("0").rstrip(".") if g.cost_nanos else "0",
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


async def _admin(request: web.Request) -> Visitor:
    who, user = await require_user(request)
    if not user.is_admin:
        raise web.HTTPForbidden(text="Forbidden: the admin pages are for admin users.")
    return who


async def admin_page(
    request: web.Request,
    message: str | None = None,
    errors: dict[str, str] | None = None,
    ledger_account: str | None = None,
) -> web.Response:
    services = services_of(request)
    who = await _admin(request)
    accounts = []
    for account in await services.accounts.store.accounts():
        figures = await services.ledger.account_figures(account.id)
        accounts.append({"id": account.id, "email": account.email, "balance": format_usd(figures.balance_nanos)})
    ledger = await services.ledger.store.entries_for_account(ledger_account) if ledger_account else None
    return render(
        request,
        who,
        "admin.html",
        status=400 if errors else 200,
        title="Admin",
        active="/admin",
        accounts=accounts,
        message=message,
        errors=errors or {},
        ledger=ledger,
        ledger_account=ledger_account,
    )


async def admin_account(request: web.Request) -> web.Response:
    services = services_of(request)
    await _admin(request)
    account = await services.accounts.store.account(request.match_info["account_id"])
    if account is None:
        raise web.HTTPNotFound(text="No such account")
    return await admin_page(request, ledger_account=account.id)


async def admin_grant(request: web.Request) -> web.Response:
    services = services_of(request)
    who = await _admin(request)
    fields = await form(request, who)
    try:
        await services.accounts.grant(
            fields.get("account_id", "").strip(), fields.get("amount", ""), fields.get("reason") or "dashboard grant"
        )
    except NotFound as exc:
        return await admin_page(request, errors={"account_id": exc.message})
    except InvalidRequest as exc:
        return await admin_page(request, errors={"amount": exc.message})
    return await admin_page(request, message=f"Granted {fields.get('amount')} USD to {fields.get('account_id')}.")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/", root),
        web.get("/login", login_page),
        web.post("/login", login),
        web.get("/signup", signup_page),
        web.post("/signup", signup),
        web.get("/logout", logout_page),
        web.post("/logout", logout),
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
        web.get("/admin", admin_page),
        web.get("/admin/accounts/{account_id}", admin_account),
        web.post("/admin/grant", admin_grant),
    ]
