"""GET /metrics: this process's Prometheus metrics, behind a bearer token when `metrics_token` is set."""

from __future__ import annotations

import hmac

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tollway.api.context import services_of
from tollway.errors import AuthenticationFailed


async def metrics(request: web.Request) -> web.Response:
    services = services_of(request)
    token = services.settings.metrics_token
    if token is not None:
        scheme, _, sent = request.headers.get("Authorization", "").strip().partition(" ")
        expected = token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), expected):
            raise AuthenticationFailed(
                "The metrics need 'Authorization: Bearer <metrics_token>' (the metrics_token setting).",
                metadata={"explanation": {"code": "metrics_token", "message": "Send the metrics token."}},
                headers={"WWW-Authenticate": "Bearer"},
            )
    body = generate_latest(services.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
