"""GET /audit: the audit log of the caller's account (management keys only), newest first, paginated."""

from __future__ import annotations

from aiohttp import web

from tollway.api.context import authenticate, require_management, services_of
from tollway.api.http import json_response, query_int
from tollway.audit import MAX_PAGE


async def list_audit(request: web.Request) -> web.Response:
    services = services_of(request)
    key = await authenticate(request)
    require_management(key)
    limit = query_int(request, "limit", 50, 1, MAX_PAGE)
    offset = query_int(request, "offset", 0, 0, 10**9)
    entries = await services.audit.entries(key.account_id, limit, offset)
    return json_response({"data": [entry.as_dict() for entry in entries]})
