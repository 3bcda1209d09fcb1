"""The Keys page: create (the key shown once), edit caps, disable, enable, delete; each change audited."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from tollway.accounts import parse_reset, parse_usd
from tollway.api.context import services_of
from tollway.audit import Actor, key_state
from tollway.auth.expiry import parse_expires_at
from tollway.auth.records import KeyRecord
from tollway.auth.store import KeyChanges
from tollway.clock import us_to_datetime
from tollway.dashboard.web import Visitor, form, has_control_characters, render, require_user, see_other
from tollway.errors import InvalidRequest


async def _keys_context(request: web.Request, account_id: str) -> list[dict[str, Any]]:
    services = services_of(request)
    keys = [k for k in await services.accounts.store.keys_for_account(account_id) if not k.is_management]
    return [{"key": k, "figures": await services.ledger.key_figures(k)} for k in keys]


async def _keys_view(
    request: web.Request,
    who: Visitor,
    account_id: str,
    *,
    created: str | None = None,
    fields: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> web.Response:
    """The keys page; `created` is a new key's only showing, `errors` re-renders a form with status 400."""
    return render(
        request,
        who,
        "keys.html",
        status=400 if errors else 200,
        title="Keys",
        active="/keys",
        created=created,
        form=fields or {},
        errors=errors or {},
        keys=await _keys_context(request, account_id),
        expires_field=expires_field,
        now_us=services_of(request).clock.now_us(),
    )


async def keys_page(request: web.Request) -> web.Response:
    who, user = await require_user(request)
    return await _keys_view(request, who, user.account_id)


async def create_key(request: web.Request) -> web.Response:
    services = services_of(request)
    who, user = await require_user(request)
    fields = await form(request, who)
    errors: dict[str, str] = {}
    limit = fields.get("limit") or None
    try:
        created = await services.accounts.create_key(
            user.account_id,
            name=fields.get("name", ""),
            limit=limit,
            limit_reset=fields.get("limit_reset") or None,
            creator_user_id=user.id,
            expires_at_us=_expires_at(fields.get("expires_at", ""), services.clock.now_us()),
        )
    except InvalidRequest as exc:
        errors[str(exc.metadata.get("field", "name"))] = exc.message
        return await _keys_view(request, who, user.account_id, fields=fields, errors=errors)
    services.keys.put(created.record)
    await services.audit.record(
        Actor.user(user.id, user.email),
        "key.create",
        user.account_id,
        created.record.hash,
        None,
        key_state(created.record),
    )
    return await _keys_view(request, who, user.account_id, created=created.plain)


def expires_field(expires_at_us: int | None) -> str:
    """A key's expiry as the form's datetime-local input shows it (UTC, to the minute), or empty."""
    return "" if expires_at_us is None else us_to_datetime(expires_at_us).strftime("%Y-%m-%dT%H:%M")


def _expires_at(value: str, now_us: int) -> int | None:
    """The form's expiry: empty = never; a datetime-local value carries no zone and is read as UTC."""
    value = value.strip()
    if not value:
        return None
    if not value.endswith(("Z", "z")) and "+" not in value[10:]:
        value += "Z"
    return parse_expires_at(value, now_us)


async def _own_key(request: web.Request, account_id: str) -> KeyRecord:
    key_hash = request.match_info["hash"]
    record = (
        None if has_control_characters(key_hash) else await services_of(request).accounts.store.key_by_hash(key_hash)
    )
    if record is None or record.account_id != account_id or record.deleted_at_us is not None:
        raise web.HTTPNotFound(text="No such key")
    return record


async def key_action(request: web.Request) -> web.Response:
    services = services_of(request)
    who, user = await require_user(request)
    fields = await form(request, who)
    record = await _own_key(request, user.account_id)
    action = request.match_info["action"]
    if action == "delete":
        await services.accounts.delete_key(record.hash)
        updated = await services.accounts.store.key_by_hash(record.hash)
    elif action in ("disable", "enable"):
        updated = await services.accounts.update_key(record.hash, KeyChanges(disabled=action == "disable"))
    elif action == "edit":
        try:
            changes = KeyChanges(
                limit_nanos=parse_usd(fields.get("limit") or None, "limit", allow_null=True),
                limit_reset=parse_reset(fields.get("limit_reset") or None),
            )
            submitted = fields.get("expires_at", "").strip()
            if submitted != expires_field(record.expires_at_us):  # unchanged: keep it, even when already past
                changes = replace(changes, expires_at_us=_expires_at(submitted, services.clock.now_us()))
        except InvalidRequest as exc:
            field = str(exc.metadata.get("field", "limit"))
            return await _keys_view(request, who, user.account_id, errors={field: exc.message})
        updated = await services.accounts.update_key(record.hash, changes)
    else:
        raise web.HTTPNotFound(text="No such action")
    if updated is not None:
        services.keys.put(updated)
        await services.audit.record(
            Actor.user(user.id, user.email),
            f"key.{action}",
            user.account_id,
            record.hash,
            key_state(record),
            key_state(updated),
        )
    raise see_other("/keys")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/keys", keys_page),
        web.post("/keys", create_key),
        web.post("/keys/{hash}/{action}", key_action),
    ]
