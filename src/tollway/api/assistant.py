"""POST /api/v1/assistant: the support assistant, for any key of the account (inference or management)."""

from __future__ import annotations

import contextlib
import re

import orjson
from aiohttp import web

from tollway.api.admission import remember_refusal
from tollway.api.context import authenticate, services_of
from tollway.api.http import json_response, read_json
from tollway.assistant.links import DiscordLinks
from tollway.assistant.service import Asker, AssistantService, parse_turns
from tollway.errors import InvalidRequest, TollwayError
from tollway.limits.rules import LimitCheck, LimitKind
from tollway.services import Services

ASSISTANT: web.AppKey[AssistantService] = web.AppKey("assistant", AssistantService)
DISCORD_LINKS: web.AppKey[DiscordLinks] = web.AppKey("discord_links", DiscordLinks)
_MINUTE_US = 60_000_000
_PIECES = re.compile(r"[^\n.!?]*[.!?\n]+|[^\n.!?]+$")


def assistant_of(request: web.Request) -> AssistantService:
    return request.app[ASSISTANT]


def discord_links_of(request: web.Request) -> DiscordLinks:
    return request.app[DISCORD_LINKS]


async def admit_question(services: Services, account_id: str) -> None:
    """The assistant's own rate limit (limit id `assistant`), per account."""
    check = LimitCheck(
        "assistant",
        LimitKind.GCRA,
        f"assistant:{account_id}",
        services.settings.assistant_requests_per_minute,
        _MINUTE_US,
    )
    ticket = await services.limiter.admit([check])
    await services.limiter.finish(ticket, 0)


async def assistant(request: web.Request) -> web.StreamResponse:
    services = services_of(request)
    key = await authenticate(request)
    body = await read_json(request, services.settings.max_body_bytes)
    settings = services.settings
    turns = parse_turns(body, settings.assistant_max_message_chars, settings.assistant_max_messages)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream must be true or false", metadata={"field": "stream"})
    try:
        await admit_question(services, key.account_id)
    except TollwayError as exc:
        remember_refusal(services, key, exc)
        raise
    answer = await assistant_of(request).answer(Asker(key.account_id, key), turns)
    data = answer.as_dict()
    if not stream:
        return json_response({"data": data})
    response = web.StreamResponse(
        status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    with contextlib.suppress(ConnectionResetError):
        for piece in _PIECES.findall(answer.answer):
            await response.write(b"data: " + orjson.dumps({"delta": piece}) + b"\n\n")
        await response.write(b"data: " + orjson.dumps({"data": data}) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    return response
