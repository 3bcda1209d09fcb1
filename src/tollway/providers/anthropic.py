"""Anthropic upstreams: OpenAI-shaped chat requests sent to /v1/messages and translated back.

`base_url` is the API root as the anthropic SDK takes it (Tollway appends /v1/messages); the key
goes as x-api-key with anthropic-version 2023-06-01.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from tollway.providers.anthropic_translate import (
    STOP_REASONS,
    anthropic_message_to_openai,
    openai_to_anthropic,
    usage_from_anthropic,
)
from tollway.providers.base import COMMON_PARAMETERS, Completion, StreamChunk, UpstreamRequest
from tollway.providers.http_client import UpstreamResponse
from tollway.providers.transport import HttpProvider

API_VERSION = "2023-06-01"


class AnthropicProvider(HttpProvider):
    fixed_headers = {"anthropic-version": API_VERSION}  # noqa: RUF012 - read-only per class
    # No response_format, seed, penalties or logprobs in the Messages API.
    supported_parameters = COMMON_PARAMETERS | {
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "include_reasoning",
    }

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key}

    @property
    def _url(self) -> str:
        return self._root + "/v1/messages"

    def _payload(self, request: UpstreamRequest, stream: bool) -> bytes:
        return orjson.dumps(
            openai_to_anthropic(
                {**request.body, "stream": stream}, request.upstream_model, request.max_tokens, request.reasoning
            )
        )

    async def complete(self, request: UpstreamRequest) -> Completion:
        parsed = await self._transport.post_json(self._url, self._payload(request, False), self._headers)
        try:
            content = parsed["content"]
            if not isinstance(content, list):
                raise TypeError("content must be a list of blocks")
        except (KeyError, TypeError) as exc:
            raise self._error(502, "Provider returned an invalid response", raw=str(parsed)) from exc
        native = parsed.get("stop_reason")
        exclude = request.reasoning is not None and request.reasoning.exclude
        return Completion(
            message=anthropic_message_to_openai(content, exclude_reasoning=exclude),
            finish_reason=STOP_REASONS.get(native or "", "stop") if native else None,
            native_finish_reason=native,
            usage=usage_from_anthropic(parsed.get("usage")),
            upstream_id=parsed.get("id"),
        )

    async def stream(self, request: UpstreamRequest) -> AsyncIterator[StreamChunk]:
        async for chunk in self._relay(self._url, self._payload(request, True), request):
            yield chunk

    async def _events(self, response: UpstreamResponse, request: UpstreamRequest) -> AsyncIterator[StreamChunk]:
        exclude = request.reasoning is not None and request.reasoning.exclude
        usage: dict[str, Any] = {}
        tool_index: dict[int, int] = {}
        upstream_id = None
        finished = False
        async for line in response.lines():
            if not line.startswith(b"data:"):
                continue
            try:
                event: dict[str, Any] = orjson.loads(line[5:].strip())
            except orjson.JSONDecodeError as exc:
                raise self._error(502, "Provider sent a broken stream", raw=line) from exc
            if not isinstance(event, dict):
                continue
            kind = event.get("type")
            if kind == "message_start":
                message = event.get("message") or {}
                upstream_id = message.get("id")
                if isinstance(message.get("usage"), dict):
                    usage.update(message["usage"])
                yield StreamChunk(
                    choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}}], upstream_id=upstream_id
                )
            elif kind == "content_block_start":
                block = event.get("content_block") or {}
                if block.get("type") == "tool_use":
                    position = tool_index.setdefault(int(event.get("index", 0)), len(tool_index))
                    call = {
                        "index": position,
                        "id": block.get("id"),
                        "type": "function",
                        "function": {"name": block.get("name"), "arguments": ""},
                    }
                    yield StreamChunk(choices=[{"index": 0, "delta": {"tool_calls": [call]}}])
            elif kind == "content_block_delta":
                delta = event.get("delta") or {}
                if delta.get("type") == "text_delta":
                    yield StreamChunk(choices=[{"index": 0, "delta": {"content": delta.get("text", "")}}])
                elif delta.get("type") == "thinking_delta" and not exclude:
                    yield StreamChunk(choices=[{"index": 0, "delta": {"reasoning": delta.get("thinking", "")}}])
                elif delta.get("type") == "input_json_delta":
                    position = tool_index.get(int(event.get("index", 0)), 0)
                    call = {"index": position, "function": {"arguments": delta.get("partial_json", "")}}
                    yield StreamChunk(choices=[{"index": 0, "delta": {"tool_calls": [call]}}])
            elif kind == "message_delta":
                native = (event.get("delta") or {}).get("stop_reason")
                # message_delta's usage is cumulative; fields it leaves out keep message_start's values.
                if isinstance(event.get("usage"), dict):
                    usage.update({k: v for k, v in event["usage"].items() if v is not None})
                yield StreamChunk(choices=[{"index": 0, "delta": {}, "finish_reason": native}])
                yield StreamChunk(usage=usage_from_anthropic(usage))
            elif kind == "message_stop":
                finished = True
                break
            elif kind == "error":
                raise self._error(502, "Provider returned error", raw=orjson.dumps(event.get("error")).decode())
        if not finished:
            raise self._error(502, "Provider closed the stream early")
