"""The admin HTTP API under /api/v1/admin/ (bearer TOLLWAY_ADMIN_TOKEN; disabled when unset).

It offers what the admin CLI offers, through the same AccountsService, so both behave alike.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from tollway.api.context import services_of
from tollway.api.http import bearer_token, json_response, read_json_object
from tollway.audit import ADMIN_API, entry_state, key_state, limit_state
from tollway.auth.expiry import parse_expires_at
from tollway.errors import AuthenticationFailed, InvalidRequest, NotFound, PermissionDenied
from tollway.limits.admin import parse_limit_spec, spec_object
from tollway.presenters import account_object, balance_figures, entry_object, key_object
from tollway.services import Services


def _admin(request: web.Request) -> Services:
    services = services_of(request)
    expected = services.settings.admin_token
    if expected is None or not expected.get_secret_value():
        raise PermissionDenied("The admin API is disabled; set TOLLWAY_ADMIN_TOKEN to enable it.")
    token = bearer_token(request)
    if not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        raise AuthenticationFailed("Invalid admin token")
    return services


async def create_account(request: web.Request) -> web.Response:
    services = _admin(request)
    body = await read_json_object(request, services.settings.max_body_bytes)
    email = body.get("email")
    if not isinstance(email, str):
        raise InvalidRequest("email is required", metadata={"field": "email"})
    account = await services.accounts.create_account(email)
    await services.audit.record(ADMIN_API, "account.create", account.id, account.id, None, {"email": account.email})
    return json_response({"data": account_object(account)}, status=201)


async def list_accounts(request: web.Request) -> web.Response:
    services = _admin(request)
    accounts = await services.accounts.store.accounts(email=request.query.get("email") or None)
    return json_response({"data": [account_object(a) for a in accounts]})


async def account_balance(request: web.Request) -> web.Response:
    services = _admin(request)
    account = await services.accounts.require_account(request.match_info["account_id"])
    figures = await services.ledger.account_figures(account.id)
    return json_response({"data": balance_figures(account, figures)})


async def grant_credits(request: web.Request) -> web.Response:
    """Grant credits, or record a purchase paid outside Tollway (kind "purchase", with a unique reference)."""
    services = _admin(request)
    body = await read_json_object(request, services.settings.max_body_bytes)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidRequest("reason must be a string", metadata={"field": "reason"})
    kind = body.get("kind", "grant")
    if kind == "grant":
        entry = await services.accounts.grant(request.match_info["account_id"], body.get("amount"), reason)
    elif kind == "purchase":
        reference = body.get("reference")
        if not isinstance(reference, str) or not reference:
            raise InvalidRequest(
                "a purchase needs a reference (e.g. the invoice number)", metadata={"field": "reference"}
            )
        entry = await services.accounts.record_purchase(
            request.match_info["account_id"], body.get("amount"), reference, reason
        )
    else:
        raise InvalidRequest("kind must be grant or purchase", metadata={"field": "kind"})
    await services.audit.record(
        ADMIN_API, f"credits.{kind}", entry.account_id, entry.account_id, None, entry_state(entry)
    )
    return json_response({"data": entry_object(entry)}, status=201)


async def _limit_subject(services: Services, request: web.Request) -> tuple[str, str]:
    if "account_id" in request.match_info:
        account = await services.accounts.require_account(request.match_info["account_id"])
        return "account", account.id
    record = await services.accounts.store.key_by_hash(request.match_info["hash"])
    if record is None or record.deleted_at_us is not None:
        raise NotFound(f"No key with hash {request.match_info['hash']}")
    return "key", record.id


async def _key_account(services: Services, key_hash: str) -> str | None:
    record = await services.accounts.store.key_by_hash(key_hash)
    return record.account_id if record is not None else None


async def get_limits(request: web.Request) -> web.Response:
    services = _admin(request)
    kind, subject = await _limit_subject(services, request)
    own = await services.limiter.rules.store.get(kind, subject)
    effective = (
        services.limiter.rules.for_key(subject) if kind == "key" else services.limiter.rules.for_account(subject)
    )
    return json_response({"data": {"limits": spec_object(own), "effective": spec_object(effective)}})


async def put_limits(request: web.Request) -> web.Response:
    services = _admin(request)
    kind, subject = await _limit_subject(services, request)
    spec = parse_limit_spec(await read_json_object(request, services.settings.max_body_bytes))
    before = await services.limiter.rules.store.get(kind, subject)
    await services.limiter.rules.store.set(kind, subject, spec, services.clock.now_us())
    services.limiter.rules.put(kind, subject, spec)
    account_id = request.match_info.get("account_id") or await _key_account(services, request.match_info["hash"])
    target = request.match_info.get("account_id") or request.match_info["hash"]
    await services.audit.record(ADMIN_API, "limits.update", account_id, target, limit_state(before), limit_state(spec))
    return await get_limits(request)


async def create_account_key(request: web.Request) -> web.Response:
    services = _admin(request)
    body = await read_json_object(request, services.settings.max_body_bytes)
    management = body.get("management", False)
    if not isinstance(management, bool):
        raise InvalidRequest("management must be true or false", metadata={"field": "management"})
    created = await services.accounts.create_key(
        request.match_info["account_id"],
        name=body.get("name"),
        limit=body.get("limit"),
        limit_reset=body.get("limit_reset"),
        management=management,
        expires_at_us=parse_expires_at(body.get("expires_at"), services.clock.now_us()),
    )
    services.keys.put(created.record)
    await services.audit.record(
        ADMIN_API, "key.create", created.record.account_id, created.record.hash, None, key_state(created.record)
    )
    figures = await services.ledger.key_figures(created.record)
    return json_response({"data": key_object(created.record, figures), "key": created.plain}, status=201)


async def account_keys(request: web.Request) -> web.Response:
    services = _admin(request)
    account = await services.accounts.require_account(request.match_info["account_id"])
    records = await services.accounts.store.keys_for_account(account.id)
    return json_response({"data": [key_object(r, await services.ledger.key_figures(r)) for r in records]})


async def account_ledger(request: web.Request) -> web.Response:
    services = _admin(request)
    account = await services.accounts.require_account(request.match_info["account_id"])
    entries = await services.ledger.store.entries_for_account(account.id)
    return json_response({"data": [entry_object(e) for e in entries]})
