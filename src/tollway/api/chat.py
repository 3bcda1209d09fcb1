"""POST /api/v1/chat/completions: streamed and not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from tollway.api.context import authenticate, services_of
from tollway.api.http import json_response, read_json
from tollway.api.presets import with_preset
from tollway.auth.records import KeyRecord
from tollway.errors import InvalidRequest, TollwayError
from tollway.gateway.stream import KEEPALIVE, StreamRelay
from tollway.gateway.validation import parse_chat_body
from tollway.ids import random_text
from tollway.providers.base import BEFORE_UPSTREAM_WAIT
from tollway.refusals import Refusal
from tollway.services import Services

_CLIENT_GONE = (ConnectionResetError, ConnectionError, asyncio.CancelledError)
_MAX_HELD_EVENTS = 64
MAX_SESSION_ID_CHARS = 256


class _ClientGone(BaseException):
    """The client went away while held events were written. A BaseException, because the write may happen
    inside the provider's stream (before it waits): the provider guard and the relay catch Exception and
    would bill a client leaving as a broken upstream instead of a cancellation."""


async def chat_completions(request: web.Request) -> web.StreamResponse:
    services = services_of(request)
    key = await authenticate(request)
    raw, preset_id = await with_preset(services, key, await read_json(request, services.settings.max_body_bytes))
    body = parse_chat_body(raw, services.settings.models_fallback_limit)
    try:
        context = await services.gateway.admit(
            key,
            body,
            user_agent=request.headers.get("User-Agent"),
            referer=request.headers.get("HTTP-Referer"),
            session_id=session_id_of(request, body.raw),
            preset_id=preset_id,
        )
    except TollwayError as exc:
        remember_refusal(services, key, exc)
        raise
    headers = {"X-Generation-Id": context.generation_id}
    if context.reservation.max_tokens_capped:
        headers["X-Tollway-Max-Tokens-Capped"] = str(context.max_tokens)
    if not body.stream:
        return json_response(await services.gateway.complete(context), headers=headers)

    candidate, upstream, first = await services.gateway.open_stream(context)
    relay = StreamRelay(services.gateway, context, candidate, upstream, first)
    return await send_stream(request, relay, relay.events(), headers)


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


async def send_stream(
    request: web.Request, relay: StreamRelay, events: AsyncIterator[bytes], headers: dict[str, str]
) -> web.StreamResponse:
    """Write SSE events; if the client goes away, stop the upstream and bill what was produced."""
    services = services_of(request)
    response = web.StreamResponse(
        status=200,
        headers={
            **headers,
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        },
    )
    keepalive: asyncio.Task[None] | None = None
    pending: list[bytes] = []

    async def flush() -> None:
        if pending:
            data = b"".join(pending)
            pending.clear()
            try:
                await response.write(data)
            except ConnectionError as exc:
                raise _ClientGone from exc

    # Events are held while the provider has more at hand and written when it is about to wait:
    # a burst becomes one write (one system call, one chunk) instead of one per event.
    flush_before_wait = BEFORE_UPSTREAM_WAIT.set(flush)
    try:
        await response.prepare(request)
        keepalive = asyncio.create_task(_keep_alive(response, services.settings.keepalive_interval_seconds))
        async for data in events:
            pending.append(data)
            if len(pending) >= _MAX_HELD_EVENTS:
                await flush()
        await flush()
    except _ClientGone:
        await asyncio.shield(relay.abort())
        return response
    except BaseException:
        # The client went away (or writing failed): bill what was produced; a settled relay ignores this.
        await asyncio.shield(relay.abort())
        raise
    finally:
        BEFORE_UPSTREAM_WAIT.reset(flush_before_wait)
        if keepalive is not None:
            keepalive.cancel()
    with contextlib.suppress(*_CLIENT_GONE):
        await response.write_eof()
    return response


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


async def _keep_alive(response: web.StreamResponse, interval_s: float) -> None:
    """Comment lines during long silences, so proxies and clients do not time the stream out."""
    with contextlib.suppress(*_CLIENT_GONE):
        while True:
            await asyncio.sleep(interval_s)
            await response.write(KEEPALIVE)
