"""POST /api/v1/completions: the legacy text completion API (`prompt` in, `choices[].text` out).

The prompt becomes one user message; the request is then admitted, held and billed like a chat
completion, and the answer or stream is given back in the text completion shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from tollway.api.admission import admit_chat_request
from tollway.api.chat import send_stream
from tollway.api.http import json_response
from tollway.errors import InvalidRequest
from tollway.gateway.stream import DONE, KEEPALIVE, StreamRelay, sse
from tollway.gateway.validation import MAX_STRING_CHARS, bad

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
    admitted = await admit_chat_request(request, completion_request_to_chat, session_in_sent_body=True)
    services, context, headers = admitted.services, admitted.context, admitted.headers
    if not admitted.body.stream:
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
