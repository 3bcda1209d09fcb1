"""POST /api/v1/responses: the OpenAI Responses API (stateless), served by the chat gateway.

The request becomes a chat request (gateway/responses_api.py), is admitted, held and billed exactly
like /chat/completions, and the result or stream is translated back (gateway/responses_stream.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from tollway.api.admission import admit_chat_request
from tollway.api.chat import send_stream
from tollway.api.context import authenticate
from tollway.api.http import json_response
from tollway.errors import NotFound
from tollway.gateway.responses_api import STATELESS, chat_result_to_response, responses_request_to_chat
from tollway.gateway.responses_stream import ResponsesEvents
from tollway.gateway.stream import KEEPALIVE, StreamRelay


def _sse(event: dict[str, Any]) -> bytes:
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


async def create_response(request: web.Request) -> web.StreamResponse:
    admitted = await admit_chat_request(request, responses_request_to_chat)
    services, body, context, headers = admitted.services, admitted.sent, admitted.context, admitted.headers
    if not admitted.body.stream:
        result = await services.gateway.complete(context)
        return json_response(chat_result_to_response(result, body), headers=headers)
    candidate, upstream, first = await services.gateway.open_stream(context)
    relay = StreamRelay(services.gateway, context, candidate, upstream, first)
    translator = ResponsesEvents(
        generation_id=context.generation_id,
        created_at=context.started_us // 1_000_000,
        model=candidate.model.id,
        body=body,
    )
    return await send_stream(request, relay, _events(relay, translator), headers)


async def _events(relay: StreamRelay, translator: ResponsesEvents) -> AsyncIterator[bytes]:
    yield KEEPALIVE
    for event in translator.start():
        yield _sse(event)
    async for payload in relay.payloads():
        if "error" in payload:
            events = translator.fail(payload["error"])
        elif "usage" in payload:
            events = translator.complete(payload, relay.finish_reason)
        else:
            events = translator.chunk(payload)
        for event in events:
            yield _sse(event)


async def stored_response(request: web.Request) -> web.StreamResponse:
    """GET or DELETE /responses/{id}: nothing is stored, so there is nothing to fetch or delete."""
    await authenticate(request)
    raise NotFound(
        f"Response {request.match_info['response_id'][:100]} is not stored. {STATELESS}; "
        "its cost and tokens are at GET /api/v1/generation?id=...",
        metadata={"stateless": True},
    )
