"""Dashboard plumbing: templates, the signed-in user, CSRF checks, redirects."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import jinja2
from aiohttp import web

from tollway.api.context import services_of
from tollway.clock import us_to_iso
from tollway.dashboard.users import User, csrf_ok, csrf_token
from tollway.money import format_usd

SESSION_COOKIE = "tw_session"
ANON_COOKIE = "tw_anon"
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.ChainableUndefined,
)


def _age(created_at_us: int) -> str:
    import time

    seconds = max(0, int(time.time() - created_at_us / 1_000_000))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


_TEMPLATES.globals.update(usd=lambda n: format_usd(int(n)), iso=us_to_iso, age=_age)


@dataclass(frozen=True, slots=True)
class Visitor:
    user: User | None
    csrf_subject: str  # the session id, or an anonymous cookie before sign-in
    new_anon_cookie: bool


async def visitor(request: web.Request) -> Visitor:
    services = services_of(request)
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        user = await services.users.session_user(session_id, services.clock.now_us())
        if user is not None:
            return Visitor(user, session_id, False)
    anon = request.cookies.get(ANON_COOKIE)
    return Visitor(None, anon or secrets.token_urlsafe(24), anon is None)


# Pages are never framed (clickjacking), never cached (a new key is shown once), and send no Referer off-site
# (an invitation token sits in the sign-up page's address).
PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}

DEFAULT_PAGE = "/credits"
_MAX_NEXT = 2048


def _plain_path(target: str) -> bool:
    if not target.startswith("/") or target.startswith("//"):
        return False
    if "\\" in target or any(not 0x20 <= ord(c) < 0x7F for c in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: a same-origin path, or the default page.

    Browsers forgive much (`//host`, `/\\host`, `/%09/host`, tabs and newlines stripped), so the target must be a
    plain path both as given and after percent-decoding: printable ASCII, no backslash, no control character.
    """
    if not target or len(target) > _MAX_NEXT:
        return DEFAULT_PAGE
    decoded = target
    for _ in range(3):  # nested encodings (%252F...) decode once per hop at most browsers and proxies
        if not _plain_path(decoded):
            return DEFAULT_PAGE
        decoded, previous = unquote(decoded), decoded
        if decoded == previous:
            break
    return target if _plain_path(decoded) else DEFAULT_PAGE


def has_control_characters(value: str) -> bool:
    """True for NUL and other control characters, which no email or id has (and PostgreSQL text refuses)."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value)


def client_address(request: web.Request) -> str:
    """The client's address: the peer's, or what a trusted proxy in front names (`trusted_proxies`)."""
    return services_of(request).client_addresses.of(request)


def _secure(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto") == "https"


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="Lax", secure=_secure(request), path="/")


def render(request: web.Request, who: Visitor, template: str, status: int = 200, **context: Any) -> web.Response:
    secret = services_of(request).dashboard_secret
    body = _TEMPLATES.get_template(template).render(
        user=who.user, csrf=csrf_token(secret, who.csrf_subject), errors=context.pop("errors", {}), **context
    )
    response = web.Response(text=body, status=status, content_type="text/html", headers=PAGE_HEADERS)
    if who.new_anon_cookie:
        set_cookie(request, response, ANON_COOKIE, who.csrf_subject)
    return response


async def form(request: web.Request, who: Visitor) -> dict[str, str]:
    """The posted form, after the CSRF check (missing or wrong token: 403, nothing changed)."""
    data = await request.post()
    fields = {name: str(value) for name, value in data.items()}
    if not csrf_ok(services_of(request).dashboard_secret, who.csrf_subject, fields.get("csrf_token")):
        raise web.HTTPForbidden(text="Forbidden: the form's CSRF token is missing or wrong. Reload the page and retry.")
    return fields


def see_other(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)


async def require_user(request: web.Request) -> tuple[Visitor, User]:
    who = await visitor(request)
    if who.user is None:
        target = request.path_qs
        raise see_other(f"/login?next={quote(target, safe='/')}")
    return who, who.user
