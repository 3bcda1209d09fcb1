"""POST /api/v1/completions: the legacy text completion API (`prompt` in, `choices[].text` out).

The prompt becomes one user message; the request is then admitted, held and billed like a chat
completion, and the answer or stream is given back in the text completion shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from tollway.api.chat import remember_refusal, send_stream, session_id_of
from tollway.api.context import authenticate, services_of
from tollway.api.http import json_response, read_json
from tollway.api.presets import with_preset
from tollway.errors import InvalidRequest, TollwayError
from tollway.gateway.stream import DONE, KEEPALIVE, StreamRelay, sse
from tollway.gateway.validation import MAX_STRING_CHARS, bad, parse_chat_body

# Legacy options this gateway cannot honour: refused by name rather than silently ignored.
_UNSUPPORTED = {
    "suffix": "suffix (fill-in-the-middle) is not supported",
    "echo": "echo is not supported",
    "best_of": "best_of is not supported",
}


def completion_request_to_chat(body: Any) -> dict[str, Any]:
    """A legacy completion request as a chat request; a 400 naming the field when it cannot be one."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise bad("prompt is required: a non-empty string (or an array of exactly one string)", "prompt")
    if len(prompt) > MAX_STRING_CHARS:
        raise bad(f"prompt is longer than {MAX_STRING_CHARS} characters", "prompt")
    for name, sentence in _UNSUPPORTED.items():
        value = body.get(name)
        harmless = value is None or value is False or value == "" or (type(value) is int and value == 1)
        if not harmless:
            raise bad(f"{sentence} by this gateway; leave {name} out.", name)
    logprobs = body.get("logprobs")
    if logprobs is not None and (isinstance(logprobs, bool) or not isinstance(logprobs, int)):
        raise bad("logprobs must be an integer (the number of top log probabilities) or null", "logprobs")
    chat = {k: v for k, v in body.items() if k not in ("prompt", "logprobs", "messages", *_UNSUPPORTED)}
    chat["messages"] = [{"role": "user", "content": prompt}]
    if logprobs:
        chat["logprobs"], chat["top_logprobs"] = True, logprobs
    return chat


def _text_choice(choice: dict[str, Any]) -> dict[str, Any]:
    message = choice.get("message") or choice.get("delta") or {}
    text = message.get("content")
    return {
        "text": text if isinstance(text, str) else "",
        "index": choice.get("index", 0),
        "logprobs": choice.get("logprobs"),
        "finish_reason": choice.get("finish_reason"),
        "native_finish_reason": choice.get("native_finish_reason"),
    }


def chat_result_to_completion(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": result["id"],
        "object": "text_completion",
        "created": result["created"],
        "model": result["model"],
        "provider": result.get("provider"),
        "system_fingerprint": result.get("system_fingerprint"),
        "choices": [_text_choice(choice) for choice in result["choices"]],
        "usage": result["usage"],
    }


def chat_chunk_to_completion(chunk: dict[str, Any]) -> dict[str, Any]:
    body = {**chunk, "object": "text_completion", "choices": [_text_choice(c) for c in chunk.get("choices") or []]}
    if "usage" in chunk:
        body["choices"] = []
    return body


async def completions(request: web.Request) -> web.StreamResponse:
    services = services_of(request)
    key = await authenticate(request)
    raw = await read_json(request, services.settings.max_body_bytes)
    chat_raw, preset_id = await with_preset(services, key, raw, completion_request_to_chat(raw))
    body = parse_chat_body(chat_raw, services.settings.models_fallback_limit)
    try:
        context = await services.gateway.admit(
            key,
            body,
            user_agent=request.headers.get("User-Agent"),
            referer=request.headers.get("HTTP-Referer"),
            session_id=session_id_of(request, raw if isinstance(raw, dict) else {}),
            preset_id=preset_id,
        )
    except TollwayError as exc:
        remember_refusal(services, key, exc)
        raise
    headers = {"X-Generation-Id": context.generation_id}
    if context.reservation.max_tokens_capped:
        headers["X-Tollway-Max-Tokens-Capped"] = str(context.max_tokens)
    if not body.stream:
        return json_response(chat_result_to_completion(await services.gateway.complete(context)), headers=headers)
    candidate, upstream, first = await services.gateway.open_stream(context)
    relay = StreamRelay(services.gateway, context, candidate, upstream, first)
    return await send_stream(request, relay, _events(relay), headers)


async def _events(relay: StreamRelay) -> AsyncIterator[bytes]:
    yield KEEPALIVE
    async for payload in relay.payloads():
        if "error" in payload:
            yield sse(chat_chunk_to_completion(payload))
            return
        if payload.get("usage") is None and not any(
            (c.get("delta") or {}).get("content") or c.get("finish_reason") for c in payload.get("choices") or []
        ):
            continue  # role-only and reasoning-only chunks have no text to give
        yield sse(chat_chunk_to_completion(payload))
    yield DONE
