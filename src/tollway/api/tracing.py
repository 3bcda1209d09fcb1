"""The server span of each API request (added to the app only when tracing is on: see tollway.tracing)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from tollway import tracing

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_UNTRACED = frozenset({"/health", "/ready", "/metrics", "/api/v1/health"})


@web.middleware
async def tracing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: sees the status the client gets, error bodies included; probes are not traced."""
    if request.path in _UNTRACED or not tracing.ENABLED:
        return await handler(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else request.path
    with tracing.request_span(request.method, route, request.path) as span:
        response = await handler(request)
        tracing.set_response_status(span, response.status)
        return response
