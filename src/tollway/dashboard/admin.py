"""Admin pages: accounts and balances, ledgers, grants, sign-up invitations, the audit log."""

from __future__ import annotations

from aiohttp import web

from tollway.accounts import check_email
from tollway.api.context import services_of
from tollway.audit import Actor, entry_state
from tollway.dashboard.users import User
from tollway.dashboard.web import Visitor, form, has_control_characters, render, require_user
from tollway.errors import InvalidRequest, NotFound

_AUDIT_PAGE = 50


async def _admin(request: web.Request) -> tuple[Visitor, User]:
    who, user = await require_user(request)
    if not user.is_admin:
        raise web.HTTPForbidden(text="Forbidden: the admin pages are for admin users.")
    return who, user


async def admin_page(
    request: web.Request,
    message: str | None = None,
    errors: dict[str, str] | None = None,
    ledger_account: str | None = None,
    invite_link: str | None = None,
) -> web.Response:
    services = services_of(request)
    who, _user = await _admin(request)
    accounts = []
    for account in await services.accounts.store.accounts():
        figures = await services.ledger.account_figures(account.id)
        accounts.append({"id": account.id, "email": account.email, "balance": figures.balance_nanos})
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
        invite_link=invite_link,
        signup_mode=services.settings.signup_mode,
    )


async def admin_account(request: web.Request) -> web.Response:
    services = services_of(request)
    await _admin(request)
    account_id = request.match_info["account_id"]
    account = None if has_control_characters(account_id) else await services.accounts.store.account(account_id)
    if account is None:
        raise web.HTTPNotFound(text="No such account")
    return await admin_page(request, ledger_account=account.id)


async def admin_grant(request: web.Request) -> web.Response:
    services = services_of(request)
    who, user = await _admin(request)
    fields = await form(request, who)
    account_id = fields.get("account_id", "").strip()
    try:
        if has_control_characters(account_id):
            raise NotFound(f"No account {account_id!r}")
        entry = await services.accounts.grant(
            account_id, fields.get("amount", ""), fields.get("reason") or "dashboard grant"
        )
    except NotFound as exc:
        return await admin_page(request, errors={"account_id": exc.message})
    except InvalidRequest as exc:
        return await admin_page(request, errors={"amount": exc.message})
    await services.audit.record(
        Actor.user(user.id, user.email), "credits.grant", account_id, account_id, None, entry_state(entry)
    )
    return await admin_page(request, message=f"Granted {fields.get('amount')} USD to {account_id}.")


async def admin_invite(request: web.Request) -> web.Response:
    services = services_of(request)
    who, user = await _admin(request)
    fields = await form(request, who)
    email = fields.get("email", "").strip()
    try:
        check_email(email)
        if has_control_characters(email):
            raise InvalidRequest("An email address has no control characters.")
    except InvalidRequest as exc:
        return await admin_page(request, errors={"invite_email": exc.message})
    ttl_us = int(services.settings.invite_ttl_hours * 3600 * 1_000_000)
    token = await services.users.create_invite(email, user.id, services.clock.now_us(), ttl_us)
    await services.audit.record(
        Actor.user(user.id, user.email), "user.invite", None, email.lower(), None, {"email": email.lower()}
    )
    link = f"{request.scheme}://{request.host}/signup?invite={token}"
    return await admin_page(request, message=f"Invitation for {email} made (single use).", invite_link=link)


async def audit_page(request: web.Request) -> web.Response:
    services = services_of(request)
    who, _user = await _admin(request)
    account = request.query.get("account") or None
    if account is not None and has_control_characters(account):
        raise web.HTTPNotFound(text="No such account")
    try:
        offset = max(0, int(request.query.get("offset", "0")))
    except ValueError:
        offset = 0
    entries = await services.audit.entries(account, _AUDIT_PAGE + 1, offset)
    return render(
        request,
        who,
        "audit.html",
        title="Audit log",
        active="/admin/audit",
        account=account,
        entries=[e.as_dict() for e in entries[:_AUDIT_PAGE]],
        next_offset=offset + _AUDIT_PAGE if len(entries) > _AUDIT_PAGE else None,
    )


def routes() -> list[web.RouteDef]:
    return [
        web.get("/admin", admin_page),
        web.get("/admin/accounts/{account_id}", admin_account),
        web.post("/admin/grant", admin_grant),
        web.post("/admin/invites", admin_invite),
        web.get("/admin/audit", audit_page),
    ]
