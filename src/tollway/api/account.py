"""The caller's own figures: GET /key (and /auth/key), GET /credits, GET /generation."""

from __future__ import annotations

from aiohttp import web

from tollway.api.context import authenticate, services_of
from tollway.api.http import json_response
from tollway.errors import InvalidRequest, NotFound
from tollway.presenters import credits_body, current_key, generation_object


async def current_key_info(request: web.Request) -> web.Response:
    services = services_of(request)
    key = await authenticate(request)
    figures = await services.ledger.key_figures(key)
    account = await services.ledger.account_figures(key.account_id)
    free_daily = await services.limiter.free_daily(key.account_id, account.purchased_nanos)
    if free_daily is None:  # the limiter's store is away: the allowance, with nothing counted
        daily_limit = services.limiter.free_checks(key.account_id, account.purchased_nanos)[1].limit
        free_daily = {"limit": daily_limit, "used": 0, "remaining": daily_limit}
    rate_limit = services.limiter.tightest_request_limit(key)
    return json_response({"data": current_key(key, figures, account, rate_limit=rate_limit, free_daily=free_daily)})


async def credits(request: web.Request) -> web.Response:
    """Account-wide figures for any key of the account: never zeros for a real balance."""
    services = services_of(request)
    key = await authenticate(request)
    figures = await services.ledger.account_figures(key.account_id)
    return json_response({"data": credits_body(figures)})


async def generation(request: web.Request) -> web.Response:
    services = services_of(request)
    key = await authenticate(request)
    generation_id = request.query.get("id", "").strip()
    if not generation_id:
        raise InvalidRequest("id is required: GET /api/v1/generation?id=gen-...", metadata={"field": "id"})
    record = await services.ledger.generation(generation_id)
    if record is None or record.account_id != key.account_id:
        raise NotFound(f"Generation {generation_id} not found")
    return json_response({"data": generation_object(record)})
