"""Small HTTP helpers for the edge: orjson responses, body reading with limits, bearer keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from tollway.errors import AuthenticationFailed, InvalidRequest, PayloadTooLarge, TollwayError

JSON_TYPE = "application/json"
# Deeper JSON is refused before anything walks or re-encodes it (orjson cannot encode past 254 levels).
MAX_JSON_DEPTH = 64


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type=JSON_TYPE, headers=headers)


def error_response(error: TollwayError) -> web.Response:
    return json_response(error.body(), status=error.status, headers=error.headers)


async def read_json(request: web.Request, limit_bytes: int) -> Any:
    if request.content_length is not None and request.content_length > limit_bytes:
        raise too_large(limit_bytes)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise too_large(limit_bytes) from exc
    if len(raw) > limit_bytes:
        raise too_large(limit_bytes)
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc.msg} at position {exc.pos}") from exc
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:  # only then can it be too deep
        check_depth(body, MAX_JSON_DEPTH)
    return body


async def read_json_object(request: web.Request, limit_bytes: int, example: str = "") -> dict[str, Any]:
    """The body as read_json reads it, which must be a JSON object (`example`, if given, shows one)."""
    body = await read_json(request, limit_bytes)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object" + (f" such as {example}" if example else ""))
    return body


def check_depth(value: Any, limit: int) -> None:
    """Refuse JSON nested deeper than `limit` levels; iterative, so no recursion limit is ever near."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            raise InvalidRequest(f"The request body is nested deeper than {limit} levels; send flatter JSON.")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def too_large(limit_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Request body is larger than the {limit_bytes} byte limit; send a smaller request.",
        metadata={"limit_bytes": limit_bytes},
    )


def bearer_token(request: web.Request, *, allow_x_api_key: bool = False) -> str:
    header = request.headers.get("Authorization", "")
    if not header and allow_x_api_key:
        header = "Bearer " + request.headers.get("x-api-key", "")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if not header.strip() or scheme.lower() != "bearer" or not token:
        raise AuthenticationFailed(
            "Missing Authentication header: send 'Authorization: Bearer <your Tollway API key>'.",
            metadata={"explanation": {"code": "missing_key", "message": "No API key was sent."}},
        )
    return token


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be an integer, got {raw!r}") from exc
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}, got {value}")
    return value
