"""GET /api/v1/balance: the account's money, this key's cap and limits, and why requests were refused."""

from __future__ import annotations

from aiohttp import web

from tollway.api.context import authenticate, services_of
from tollway.api.http import json_response


async def balance(request: web.Request) -> web.Response:
    services = services_of(request)
    key = await authenticate(request)
    return json_response({"data": await services.balance.report(key)})
