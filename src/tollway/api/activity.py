"""GET /api/v1/activity (management key): per UTC day, model, provider and key, the last 30 days.

Each item is OpenRouter's activity item (date, model, model_permaslug, endpoint_id, provider_name, usage,
byok_usage_inference, requests, prompt/completion/reasoning tokens) plus the key (`key_hash`, `key_name`)
and `cached_tokens`; the figures are sums of the account's generations, so they equal GET /generation's.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from aiohttp import web

from tollway.activity import ACTIVITY_DAYS, AccountActivity, ActivityRow, window
from tollway.api.context import authenticate, require_management, services_of
from tollway.api.http import json_response
from tollway.errors import InvalidRequest
from tollway.money import nanos_to_usd
from tollway.routing.catalog import Catalog


def _endpoint_id(catalog: Catalog, model_id: str, provider_name: str) -> str:
    model = catalog.resolve(model_id)
    if model is not None:
        for endpoint in model.endpoints:
            if endpoint.provider_name == provider_name:
                return endpoint.endpoint_id
    return provider_name


def _item(row: ActivityRow, keys: dict[str, tuple[str, str]], catalog: Catalog) -> dict[str, Any]:
    key_hash, key_name = keys.get(row.key_id or "", (None, None))
    return {
        "date": row.day.isoformat(),
        "model": row.model,
        "model_permaslug": row.model,
        "endpoint_id": _endpoint_id(catalog, row.model, row.provider_name),
        "provider_name": row.provider_name,
        "key_hash": key_hash,
        "key_name": key_name,
        "usage": nanos_to_usd(row.spend_nanos),
        "byok_usage_inference": 0,
        "requests": row.requests,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "cached_tokens": row.cached_tokens,
    }


def _day(raw: str, first: date, last: date) -> date:
    try:
        day = date.fromisoformat(raw)
    except ValueError as exc:
        raise InvalidRequest(f"date must be a UTC day such as {last.isoformat()}", metadata={"field": "date"}) from exc
    if not first <= day <= last:
        raise InvalidRequest(
            f"date must be within the last {ACTIVITY_DAYS} UTC days ({first.isoformat()} to {last.isoformat()})",
            metadata={"field": "date"},
        )
    return day


async def activity(request: web.Request) -> web.Response:
    key = await authenticate(request)
    require_management(key)
    services = services_of(request)
    store = AccountActivity(services.engine)
    first, last = window(services.clock.now_us())
    if request.query.get("date"):
        first = last = _day(request.query["date"][:32], first, last)
    keys = await store.key_names(key.account_id)
    key_id = None
    wanted_hash = request.query.get("api_key_hash")
    if wanted_hash:
        key_id = next((kid for kid, (khash, _name) in keys.items() if khash == wanted_hash), None)
        if key_id is None:
            raise InvalidRequest(
                "api_key_hash names no key of this account; see GET /api/v1/keys", metadata={"field": "api_key_hash"}
            )
    rows = await store.rows(key.account_id, first, last, key_id=key_id)
    return json_response({"data": [_item(row, keys, services.catalog) for row in rows]})
