"""The key management API (management keys only): GET/POST /keys, GET/PATCH/DELETE /keys/{hash}."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tollway.accounts import parse_reset, parse_usd
from tollway.activity import AccountActivity
from tollway.api.context import authenticate, require_management, services_of
from tollway.api.http import json_response, query_int, read_json
from tollway.audit import Actor, key_state, limit_state
from tollway.auth.expiry import parse_expires_at
from tollway.auth.records import KeyRecord
from tollway.auth.store import KeyChanges
from tollway.errors import InvalidRequest, NotFound
from tollway.limits.admin import parse_limit_spec, spec_object
from tollway.limits.config import LimitSpec
from tollway.presenters import key_object
from tollway.services import Services

_PAGE = 100


async def _manager(request: web.Request) -> tuple[Services, KeyRecord]:
    key = await authenticate(request)
    require_management(key)
    return services_of(request), key


async def _owned(services: Services, manager: KeyRecord, key_hash: str) -> KeyRecord:
    record = await services.accounts.store.key_by_hash(key_hash)
    if record is None or record.account_id != manager.account_id or record.deleted_at_us is not None:
        raise NotFound(f"No key with hash {key_hash}")
    return record


async def _object(services: Services, record: KeyRecord, last_used_us: int | None = None) -> dict[str, Any]:
    body = key_object(record, await services.ledger.key_figures(record), last_used_us)
    body["rate_limit"] = spec_object(services.limiter.rules.for_key(record.id))
    return body


async def _one(services: Services, record: KeyRecord) -> dict[str, Any]:
    last_used = await AccountActivity(services.engine).last_used([record.id])
    return await _object(services, record, last_used.get(record.id))


async def _apply_rate_limit(services: Services, actor: Actor, record: KeyRecord, body: dict[str, Any]) -> None:
    """The `rate_limit` extension field of POST/PATCH /keys: {requests, per, tokens_per_minute, concurrency}."""
    if "rate_limit" not in body:
        return
    spec = LimitSpec() if body["rate_limit"] is None else parse_limit_spec(body["rate_limit"])
    before = await services.limiter.rules.store.get("key", record.id)
    await services.limiter.rules.store.set("key", record.id, spec, services.clock.now_us())
    services.limiter.rules.put("key", record.id, spec)
    await services.audit.record(
        actor, "limits.update", record.account_id, record.hash, limit_state(before), limit_state(spec)
    )


def _body(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidRequest("The request body must be a JSON object")
    return raw


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body[name]
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be true or false", metadata={"field": name})
    return value


async def list_keys(request: web.Request) -> web.Response:
    services, manager = await _manager(request)
    offset = query_int(request, "offset", 0, 0, 10**9)
    include_disabled = request.query.get("include_disabled", "false").lower() == "true"
    records = await services.accounts.store.keys_for_account(
        manager.account_id, include_disabled=include_disabled, limit=_PAGE, offset=offset
    )
    last_used = await AccountActivity(services.engine).last_used([record.id for record in records])
    return json_response({"data": [await _object(services, record, last_used.get(record.id)) for record in records]})


async def create_key(request: web.Request) -> web.Response:
    services, manager = await _manager(request)
    body = _body(await read_json(request, services.settings.max_body_bytes))
    created = await services.accounts.create_key(
        manager.account_id,
        name=body.get("name"),
        limit=body.get("limit"),
        limit_reset=body.get("limit_reset"),
        include_byok_in_limit=bool(body.get("include_byok_in_limit", False)),
        expires_at_us=parse_expires_at(body.get("expires_at"), services.clock.now_us()),
        creator_user_id=body.get("creator_user_id") if isinstance(body.get("creator_user_id"), str) else None,
    )
    services.keys.put(created.record)
    actor = Actor.key(manager)
    await services.audit.record(
        actor, "key.create", manager.account_id, created.record.hash, None, key_state(created.record)
    )
    await _apply_rate_limit(services, actor, created.record, body)
    return json_response({"data": await _object(services, created.record), "key": created.plain}, status=201)


async def get_key(request: web.Request) -> web.Response:
    services, manager = await _manager(request)
    record = await _owned(services, manager, request.match_info["hash"])
    return json_response({"data": await _one(services, record)})


async def update_key(request: web.Request) -> web.Response:
    services, manager = await _manager(request)
    before = await _owned(services, manager, request.match_info["hash"])
    body = _body(await read_json(request, services.settings.max_body_bytes))
    if "rate_limit" in body and body["rate_limit"] is not None:
        parse_limit_spec(body["rate_limit"])  # refuse a bad limit before changing anything
    fields: dict[str, Any] = {}
    if "name" in body:
        if not isinstance(body["name"], str) or not body["name"].strip():
            raise InvalidRequest("name must be a non-empty string", metadata={"field": "name"})
        fields["name"] = body["name"].strip()
    if "disabled" in body:
        fields["disabled"] = _bool(body, "disabled")
    if "limit" in body:
        fields["limit_nanos"] = parse_usd(body["limit"], "limit", allow_null=True)
    if "limit_reset" in body:
        fields["limit_reset"] = parse_reset(body["limit_reset"])
    if "include_byok_in_limit" in body:
        fields["include_byok_in_limit"] = _bool(body, "include_byok_in_limit")
    if "expires_at" in body:
        fields["expires_at_us"] = parse_expires_at(body["expires_at"], services.clock.now_us())
    record = await services.accounts.update_key(request.match_info["hash"], KeyChanges(**fields))
    services.keys.put(record)
    actor = Actor.key(manager)
    await services.audit.record(
        actor, "key.update", record.account_id, record.hash, key_state(before), key_state(record)
    )
    await _apply_rate_limit(services, actor, record, body)
    return json_response({"data": await _one(services, record)})


async def delete_key(request: web.Request) -> web.Response:
    services, manager = await _manager(request)
    before = await _owned(services, manager, request.match_info["hash"])
    await services.accounts.delete_key(request.match_info["hash"])
    record = await services.accounts.store.key_by_hash(request.match_info["hash"])
    if record is not None:
        services.keys.put(record)
    await services.audit.record(
        Actor.key(manager), "key.delete", before.account_id, before.hash, key_state(before), key_state(record)
    )
    return json_response({"deleted": True})
