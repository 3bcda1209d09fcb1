"""Turns every failure into OpenRouter's error body; user input never produces a 500."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from tollway.api.http import error_response, too_large
from tollway.errors import InvalidRequest, NotFound, PermissionDenied, TollwayError

log = logging.getLogger("tollway.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _from_http_exception(exc: web.HTTPException, request: web.Request) -> TollwayError:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return too_large(request.app[MAX_BODY_KEY])
    if isinstance(exc, web.HTTPNotFound):
        if exc.text and not exc.text.startswith("404"):
            return NotFound(exc.text)
        return NotFound(f"No such endpoint: {request.method} {request.path}. See the README's API reference.")
    error: TollwayError
    if isinstance(exc, web.HTTPForbidden):
        return PermissionDenied(exc.text or "Forbidden")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        error = InvalidRequest(f"Method {request.method} is not allowed on {request.path}")
    else:
        error = TollwayError(exc.text if exc.text and not exc.text[:3].isdigit() else (exc.reason or "HTTP error"))
    error.status = exc.status
    return error


MAX_BODY_KEY: web.AppKey[int] = web.AppKey("max_body_bytes", int)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except TollwayError as exc:
        return error_response(exc)
    except web.HTTPRedirection:
        raise
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_from_http_exception(exc, request))
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(TollwayError("Internal server error"))
