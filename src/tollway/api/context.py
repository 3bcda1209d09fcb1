"""How handlers reach the services and the caller's key."""

from __future__ import annotations

from aiohttp import web

from tollway.api.http import bearer_token
from tollway.auth.records import KeyRecord
from tollway.errors import AuthenticationFailed, PermissionDenied, RateLimited
from tollway.explanations import key_disabled, key_expired
from tollway.services import Services

SERVICES: web.AppKey[Services] = web.AppKey("services", Services)


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES]


def _throttled(retry_after_s: int) -> RateLimited:
    sentence = f"Too many failed authentications from this address; try again in {retry_after_s} s."
    return RateLimited(
        sentence,
        metadata={"explanation": {"code": "auth_throttled", "message": sentence}},
        headers={"Retry-After": str(retry_after_s)},
    )


async def authenticate(request: web.Request, *, allow_x_api_key: bool = False) -> KeyRecord:
    services = request.app[SERVICES]
    token = bearer_token(request, allow_x_api_key=allow_x_api_key)
    key = services.keys.cached(token)
    if key is None:
        # Only keys this process does not hold cost a query; an address spending its failures gets 429 first.
        address = services.client_addresses.of(request)
        retry_after_s = services.keys.failures.retry_after_s(address)
        if retry_after_s:
            raise _throttled(retry_after_s)
        key = await services.keys.lookup(token)
        if key is None or key.deleted_at_us is not None:
            services.keys.failures.failed(address)
    if key is None or key.deleted_at_us is not None:
        raise AuthenticationFailed(
            "User not found. The API key is not valid (unknown or deleted); check that it was copied whole.",
            metadata={"explanation": {"code": "key_unknown", "message": "This API key is unknown or deleted."}},
        )
    if key.disabled:
        explanation = key_disabled()
        raise AuthenticationFailed(
            f"Key is disabled. {explanation.message}", metadata={"explanation": explanation.as_dict()}
        )
    if key.expires_at_us is not None and key.expires_at_us <= services.clock.now_us():
        expired = key_expired(key.expires_at_us)
        raise AuthenticationFailed(f"Key has expired. {expired.message}", metadata={"explanation": expired.as_dict()})
    return key


def require_management(key: KeyRecord) -> None:
    if not key.is_management:
        raise PermissionDenied("Only management keys can perform this operation")
