"""POST /api/v1/chat/completions: streamed and not."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from tollway.api.context import authenticate, services_of
from tollway.api.http import json_response, read_json
from tollway.gateway.stream import KEEPALIVE, StreamRelay
from tollway.gateway.validation import parse_chat_body

_CLIENT_GONE = (ConnectionResetError, ConnectionError, asyncio.CancelledError)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    services = services_of(request)
    key = await authenticate(request)
    body = parse_chat_body(
        await read_json(request, services.settings.max_body_bytes), services.settings.models_fallback_limit
    )
    context = await services.gateway.admit(
        key, body, user_agent=request.headers.get("User-Agent"), referer=request.headers.get("HTTP-Referer")
    )
    headers = {"X-Generation-Id": context.generation_id}
    if context.reservation.max_tokens_capped:
        headers["X-Tollway-Max-Tokens-Capped"] = str(context.max_tokens)
    if not body.stream:
        return json_response(await services.gateway.complete(context), headers=headers)

    candidate, upstream, first = await services.gateway.open_stream(context)
    relay = StreamRelay(services.gateway, context, candidate, upstream, first)
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
    try:
        await response.prepare(request)
        keepalive = asyncio.create_task(_keep_alive(response, services.settings.keepalive_interval_seconds))
        async for data in relay.events():
            await response.write(data)
    except _CLIENT_GONE:
        await asyncio.shield(relay.abort())
        raise
    finally:
        if keepalive is not None:
            keepalive.cancel()
    with contextlib.suppress(*_CLIENT_GONE):
        await response.write_eof()
    return response


async def _keep_alive(response: web.StreamResponse, interval_s: float) -> None:
    """Comment lines during long silences, so proxies and clients do not time the stream out."""
    with contextlib.suppress(*_CLIENT_GONE):
        while True:
            await asyncio.sleep(interval_s)
            await response.write(KEEPALIVE)
