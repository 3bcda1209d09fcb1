"""POST /api/v1/embeddings (OpenAI shape)."""

from __future__ import annotations

from aiohttp import web

from tollway.api.admission import remember_refusal
from tollway.api.context import authenticate, services_of
from tollway.api.http import json_response, read_json
from tollway.errors import TollwayError


async def embeddings(request: web.Request) -> web.Response:
    services = services_of(request)
    key = await authenticate(request)
    body = await read_json(request, services.settings.max_body_bytes)
    try:
        result = await services.embeddings.embed(key, body)
    except TollwayError as exc:
        remember_refusal(services, key, exc)
        raise
    return json_response(result, headers={"X-Generation-Id": result["id"]})
