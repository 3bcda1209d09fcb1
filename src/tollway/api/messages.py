"""POST /api/v1/messages: Anthropic-shaped requests in, any provider out, Anthropic-shaped answers back.

Authenticates with x-api-key or Bearer. In streams, message_start carries the input estimate and
message_delta.usage the exact input and output tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from tollway.api.admission import admit_chat_request
from tollway.api.chat import send_stream
from tollway.api.http import json_response
from tollway.gateway.anthropic_validation import check_anthropic_body
from tollway.gateway.stream import StreamRelay
from tollway.providers.anthropic_translate import (
    FINISH_TO_STOP,
    anthropic_request_to_openai,
    anthropic_usage_body,
    openai_message_to_anthropic,
)


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **payload}) + b"\n\n"


def _anthropic_request_to_chat(body: Any) -> dict[str, Any]:
    return anthropic_request_to_openai(check_anthropic_body(body))


async def messages(request: web.Request) -> web.StreamResponse:
    admitted = await admit_chat_request(request, _anthropic_request_to_chat, anthropic_client=True)
    services, context, headers = admitted.services, admitted.context, admitted.headers
    if not admitted.body.stream:
        result = await services.gateway.complete(context)
        choice = result["choices"][0]
        usage = result["usage"]
        return json_response(
            {
                "id": result["id"],
                "type": "message",
                "role": "assistant",
                "model": result["model"],
                "content": openai_message_to_anthropic(choice["message"]),
                "stop_reason": FINISH_TO_STOP.get(choice["finish_reason"], "end_turn"),
                "stop_sequence": None,
                "usage": anthropic_usage_body(usage),
                "provider": result["provider"],
            },
            headers=headers,
        )
    candidate, upstream, first = await services.gateway.open_stream(context)
    relay = StreamRelay(services.gateway, context, candidate, upstream, first)
    message: dict[str, Any] = {
        "id": context.generation_id,
        "type": "message",
        "role": "assistant",
        "model": candidate.model.id,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": context.prompt_estimate, "output_tokens": 0},
    }
    return await send_stream(request, relay, _anthropic_events(relay, message), headers)


async def _anthropic_events(relay: StreamRelay, message: dict[str, Any]) -> AsyncIterator[bytes]:
    yield _event("message_start", {"message": message})
    open_block: tuple[str, int] | None = None  # (kind, index)
    next_index = 0
    tool_blocks: dict[int, int] = {}
    async for payload in relay.payloads():
        if "error" in payload:
            yield _event("error", {"error": {"type": "api_error", "message": payload["error"]["message"]}})
            return
        if "usage" in payload:
            if open_block is not None:
                yield _event("content_block_stop", {"index": open_block[1]})
            usage = payload["usage"]
            yield _event(
                "message_delta",
                {
                    "delta": {
                        "stop_reason": FINISH_TO_STOP.get(relay.finish_reason, "end_turn"),
                        "stop_sequence": None,
                    },
                    "usage": anthropic_usage_body(usage),
                },
            )
            yield _event("message_stop", {})
            return
        for choice in payload["choices"]:
            delta = choice.get("delta") or {}
            thinking = delta.get("reasoning")
            if isinstance(thinking, str) and thinking:
                if open_block is None or open_block[0] != "thinking":
                    if open_block is not None:
                        yield _event("content_block_stop", {"index": open_block[1]})
                    open_block = ("thinking", next_index)
                    next_index += 1
                    start = {"type": "thinking", "thinking": "", "signature": ""}
                    yield _event("content_block_start", {"index": open_block[1], "content_block": start})
                thinking_delta = {"type": "thinking_delta", "thinking": thinking}
                yield _event("content_block_delta", {"index": open_block[1], "delta": thinking_delta})
            text = delta.get("content")
            if isinstance(text, str) and text:
                if open_block is None or open_block[0] != "text":
                    if open_block is not None:
                        yield _event("content_block_stop", {"index": open_block[1]})
                    open_block = ("text", next_index)
                    next_index += 1
                    yield _event(
                        "content_block_start", {"index": open_block[1], "content_block": {"type": "text", "text": ""}}
                    )
                yield _event(
                    "content_block_delta", {"index": open_block[1], "delta": {"type": "text_delta", "text": text}}
                )
            for call in delta.get("tool_calls") or []:
                position = int(call.get("index", 0))
                if position not in tool_blocks:
                    if open_block is not None:
                        yield _event("content_block_stop", {"index": open_block[1]})
                    tool_blocks[position] = next_index
                    open_block = ("tool", next_index)
                    next_index += 1
                    function = call.get("function") or {}
                    yield _event(
                        "content_block_start",
                        {
                            "index": open_block[1],
                            "content_block": {
                                "type": "tool_use",
                                "id": call.get("id"),
                                "name": function.get("name"),
                                "input": {},
                            },
                        },
                    )
                arguments = (call.get("function") or {}).get("arguments")
                if arguments:
                    yield _event(
                        "content_block_delta",
                        {
                            "index": tool_blocks[position],
                            "delta": {"type": "input_json_delta", "partial_json": arguments},
                        },
                    )
