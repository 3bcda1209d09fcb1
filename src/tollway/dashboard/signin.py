"""Sign-in, sign-up (open, by invitation, or closed) and sign-out pages.

Answers never tell which emails have an account: a wrong password and an unknown email get the same 401, and a
sign-up answers "now sign in" whether the email was new or not. Failed sign-ins are throttled per client address
and per email, and password hashes run off the event loop (see `guard.py`).
"""

from __future__ import annotations

import hashlib

from aiohttp import web

from tollway.accounts import check_email
from tollway.api.context import services_of
from tollway.audit import Actor
from tollway.dashboard.guard import HashingBusy
from tollway.dashboard.users import MIN_PASSWORD, UserExists
from tollway.dashboard.web import (
    SESSION_COOKIE,
    Visitor,
    client_address,
    form,
    has_control_characters,
    render,
    safe_next,
    see_other,
    set_cookie,
    visitor,
)
from tollway.errors import InvalidRequest

INVALID_LOGIN = "Invalid email or password"
SIGNED_UP = "Sign-up received: sign in with your email and password. (An email that already had an account keeps it.)"
CLOSED = "Sign-up is closed on this gateway: ask an administrator for an account."
NEEDS_INVITE = "Sign-up on this gateway is by invitation: ask an administrator for an invitation link."
BAD_INVITE = "This invitation link is invalid, already used, expired, or for another email: ask for a new one."


def _auth_form(
    request: web.Request,
    who: Visitor,
    action: str,
    *,
    status: int = 200,
    next_path: str | None = None,
    email: str = "",
    error: str | None = None,
    notice: str | None = None,
    invite: str | None = None,
    errors: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """The sign-in (action /login) or sign-up (action /signup) form, with what went wrong if anything."""
    title = "Sign in" if action == "/login" else "Sign up"
    response = render(
        request,
        who,
        "auth.html",
        status=status,
        title=title,
        action=action,
        next=next_path,
        email=email,
        error=error,
        notice=notice,
        invite=invite,
        signup_mode=services_of(request).settings.signup_mode,
        blocked=action == "/signup" and status == 403,
        errors=errors or {},
    )
    response.headers.update(headers or {})
    return response


def _too_many(
    request: web.Request, who: Visitor, retry_after_s: int, email: str, next_path: str | None
) -> web.Response:
    return _auth_form(
        request,
        who,
        "/login",
        status=429,
        next_path=next_path,
        email=email,
        error=f"Too many failed sign-ins; wait {retry_after_s} s and try again.",
        headers={"Retry-After": str(retry_after_s)},
    )


async def login_page(request: web.Request) -> web.Response:
    target = request.query.get("next")
    notice = SIGNED_UP if request.query.get("signed_up") else None
    return _auth_form(
        request, await visitor(request), "/login", next_path=safe_next(target) if target else None, notice=notice
    )


def _signed_in(request: web.Request, session_id: str, target: str) -> web.HTTPSeeOther:
    response = web.HTTPSeeOther(target)
    set_cookie(request, response, SESSION_COOKIE, session_id)
    return response


async def login(request: web.Request) -> web.Response:
    services = services_of(request)
    who = await visitor(request)
    fields = await form(request, who)
    email, next_path = fields.get("email", "").strip()[:320], fields.get("next")
    throttle = services.users.throttle
    # Fixed-size subjects keep the bucket table's memory bounded whatever the emails tried.
    subjects = (
        f"address:{client_address(request)}",
        "email:" + hashlib.sha256(email.lower().encode("utf-8", "surrogatepass")).hexdigest()[:32],
    )
    wait_s = throttle.retry_after_s(*subjects)
    if wait_s:
        return _too_many(request, who, wait_s, email, next_path)
    try:
        user = (
            None
            if has_control_characters(email)
            else await services.users.check_password(email, fields.get("password", "")[:1024])
        )
    except HashingBusy:
        return _too_many(request, who, 1, email, next_path)
    if user is None:
        throttle.failed(*subjects)
        return _auth_form(request, who, "/login", status=401, next_path=next_path, email=email, error=INVALID_LOGIN)
    session_id = await services.users.start_session(user, services.clock.now_us())
    raise _signed_in(request, session_id, safe_next(next_path))


async def signup_page(request: web.Request) -> web.Response:
    services = services_of(request)
    who = await visitor(request)
    mode = services.settings.signup_mode
    if mode == "closed":
        return _auth_form(request, who, "/signup", status=403, error=CLOSED)
    invite = request.query.get("invite") or None
    if mode == "invite":
        if invite is None:
            return _auth_form(request, who, "/signup", status=403, error=NEEDS_INVITE)
        email = await services.users.invite_email(invite[:128], services.clock.now_us())
        if email is None:
            return _auth_form(request, who, "/signup", status=403, error=BAD_INVITE)
        return _auth_form(request, who, "/signup", email=email, invite=invite)
    return _auth_form(request, who, "/signup")


async def signup(request: web.Request) -> web.Response:
    services = services_of(request)
    who = await visitor(request)
    fields = await form(request, who)
    mode = services.settings.signup_mode
    if mode == "closed":
        return _auth_form(request, who, "/signup", status=403, error=CLOSED)
    email, password, invite = fields.get("email", "").strip(), fields.get("password", ""), fields.get("invite")
    errors: dict[str, str] = {}
    try:
        check_email(email)
        if has_control_characters(email):
            raise InvalidRequest("An email address has no control characters.")
    except InvalidRequest as exc:
        errors["email"] = exc.message
    if len(password) < MIN_PASSWORD:
        errors["password"] = f"The password needs at least {MIN_PASSWORD} characters."
    elif len(password) > 1024:
        errors["password"] = "The password may have at most 1024 characters."
    if errors:
        return _auth_form(request, who, "/signup", status=400, email=email, invite=invite, errors=errors)
    now_us = services.clock.now_us()
    if mode == "invite" and not (invite and await services.users.claim_invite(invite[:128], email, now_us)):
        return _auth_form(request, who, "/signup", status=403, email=email, error=BAD_INVITE)
    try:
        await _create_owner(request, email, password, invited=mode == "invite")
    except HashingBusy:
        return _auth_form(
            request,
            who,
            "/signup",
            status=429,
            email=email,
            error="Busy: try again in a second.",
            headers={"Retry-After": "1"},
        )
    raise see_other("/login?signed_up=1")


async def _create_owner(request: web.Request, email: str, password: str, *, invited: bool) -> None:
    """Create the user and its account, or (email taken) do the same hashing work and nothing else."""
    services = services_of(request)
    if await services.users.by_email(email) is not None:
        await services.users.hashing.hash(password)
        return
    account = await services.accounts.create_account(email)
    try:
        user = await services.users.create(email, password, account.id, "owner", False, services.clock.now_us())
    except UserExists:
        return
    state = {"email": user.email, "role": user.role, "is_admin": user.is_admin, "invited": invited}
    await services.audit.record(Actor.user(user.id, user.email), "user.create", account.id, user.id, None, state)


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


def routes() -> list[web.RouteDef]:
    return [
        web.get("/login", login_page),
        web.post("/login", login),
        web.get("/signup", signup_page),
        web.post("/signup", signup),
        web.get("/logout", logout_page),
        web.post("/logout", logout),
    ]
