"""GET /metrics: this process's Prometheus metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tollway.api.context import services_of


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(services_of(request).metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
