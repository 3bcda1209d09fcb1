"""GET /health (the process answers) and GET /ready (the database is reachable and the ledger writes)."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import text

from tollway.api.context import services_of
from tollway.api.http import json_response


async def health(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    services = services_of(request)
    checks: dict[str, str] = {}
    try:
        async with services.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means not ready
        checks["database"] = f"unavailable: {type(exc).__name__}"
    checks["ledger_writer"] = "ok" if services.ledger.writer.healthy else "failing"
    ping = getattr(services.limiter.backend, "ping", None)
    if ping is not None:
        checks["redis"] = "ok" if await ping() else "unavailable"
    ready_now = all(value == "ok" for value in checks.values())
    return json_response(
        {"status": "ready" if ready_now else "unavailable", "checks": checks},
        status=200 if ready_now else 503,
    )
