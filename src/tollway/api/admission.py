"""The front half of every chat-shaped endpoint: authenticate, read and parse, admit, the answer's headers.

/chat/completions, /responses, /completions and /messages differ only in how their request becomes a
chat request and how the answer is shaped back; what comes before the upstream is this one function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tollway.api.context import authenticate, services_of
from tollway.api.http import read_json
from tollway.api.presets import with_preset
from tollway.auth.records import KeyRecord
from tollway.errors import InvalidRequest, TollwayError
from tollway.gateway.chat import ChatContext
from tollway.gateway.validation import ChatBody, parse_chat_body
from tollway.ids import random_text
from tollway.refusals import Refusal
from tollway.services import Services

MAX_SESSION_ID_CHARS = 256


@dataclass(frozen=True, slots=True)
class Admitted:
    """An admitted request: the body as sent, as a chat request, its context and the answer's headers."""

    services: Services
    sent: Any
    body: ChatBody
    context: ChatContext
    headers: dict[str, str]


async def admit_chat_request(
    request: web.Request,
    to_chat: Callable[[Any], dict[str, Any]] | None = None,
    *,
    session_in_sent_body: bool = False,
    anthropic_client: bool = False,
) -> Admitted:
    """Authenticate, read the body (turned into a chat request by `to_chat`), fill in its preset, admit it.

    The session id is read from the chat request, or from the body as sent with `session_in_sent_body`.
    An `anthropic_client` may authenticate with x-api-key; its session comes only from X-Session-Id, its
    HTTP-Referer is not recorded and no X-Tollway-Max-Tokens-Capped header is sent.
    A 402, 403 or 429 refusal is remembered for /balance before it is raised.
    """
    services = services_of(request)
    key = await authenticate(request, allow_x_api_key=anthropic_client)
    sent = await read_json(request, services.settings.max_body_bytes)
    chat_raw, preset_id = await with_preset(services, key, sent, None if to_chat is None else to_chat(sent))
    body = parse_chat_body(chat_raw, services.settings.models_fallback_limit)
    if anthropic_client:
        session_body: dict[str, Any] = {}
    elif session_in_sent_body:
        session_body = sent if isinstance(sent, dict) else {}
    else:
        session_body = body.raw
    try:
        context = await services.gateway.admit(
            key,
            body,
            user_agent=request.headers.get("User-Agent"),
            referer=None if anthropic_client else request.headers.get("HTTP-Referer"),
            session_id=session_id_of(request, session_body),
            preset_id=preset_id,
        )
    except TollwayError as exc:
        remember_refusal(services, key, exc)
        raise
    headers = {"X-Generation-Id": context.generation_id}
    if context.reservation.max_tokens_capped and not anthropic_client:
        headers["X-Tollway-Max-Tokens-Capped"] = str(context.max_tokens)
    return Admitted(services, sent, body, context, headers)


def session_id_of(request: web.Request, body: dict[str, Any]) -> str | None:
    """The request's session (`session_id` in the body, else the X-Session-Id header): sticky routing's key."""
    value = body.get("session_id")
    if value is None:
        value = request.headers.get("X-Session-Id") or None
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_SESSION_ID_CHARS
        or any(ord(c) < 32 or ord(c) == 127 for c in value)  # stored on the generation: no NUL or controls
    ):
        raise InvalidRequest(
            f"session_id must be a non-empty string of at most {MAX_SESSION_ID_CHARS} printable characters",
            metadata={"field": "session_id"},
        )
    return value


def remember_refusal(services: Services, key: KeyRecord, error: TollwayError) -> None:
    """Keep 402/403/429 refusals for /balance's last_refusals, tagged with a request id the client sees."""
    if error.status not in (402, 403, 429):
        return
    code = str((error.metadata.get("explanation") or {}).get("code", error.error_type))
    services.metrics.refusals.labels(str(error.status), code).inc()
    request_id = "req-" + random_text(20)
    error.headers["X-Request-Id"] = request_id
    services.refusals.record(
        Refusal(
            account_id=key.account_id,
            key_id=key.id,
            at_us=services.clock.now_us(),
            status=error.status,
            code=code,
            message=error.message,
            request_id=request_id,
        )
    )
