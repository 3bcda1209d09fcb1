"""Google Gemini upstreams: generateContent and streamGenerateContent (SSE), text and tools.

`base_url` is the API root (e.g. https://generativelanguage.googleapis.com); Tollway calls
{base_url}/v1beta/models/{model}:generateContent with the key in x-goog-api-key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from tollway.providers.base import Completion, StreamChunk, UpstreamRequest, Usage, message_text
from tollway.providers.http_client import UpstreamResponse
from tollway.providers.transport import HttpProvider

FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter"}


def openai_to_gemini(body: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for message in body.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(message_text(message))
            continue
        parts: list[dict[str, Any]] = []
        if role == "tool":
            call_id = message.get("tool_call_id", "")
            parts.append(
                {
                    "functionResponse": {
                        "name": names.get(call_id, call_id),
                        "response": {"content": message_text(message)},
                    }
                }
            )
            contents.append({"role": "user", "parts": parts})
            continue
        text = message_text(message)
        if text:
            parts.append({"text": text})
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            names[call.get("id", "")] = function.get("name", "")
            try:
                arguments = orjson.loads(function.get("arguments") or "{}")
            except orjson.JSONDecodeError:
                arguments = {}
            parts.append({"functionCall": {"name": function.get("name", ""), "args": arguments}})
        contents.append({"role": "model" if role == "assistant" else "user", "parts": parts or [{"text": ""}]})
    config: dict[str, Any] = {"maxOutputTokens": max_tokens}
    for source, target in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK")):
        if body.get(source) is not None:
            config[target] = body[source]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    request: dict[str, Any] = {"contents": contents, "generationConfig": config}
    if system:
        request["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    tools = [
        t["function"] for t in body.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    if tools:
        request["tools"] = [
            {
                "functionDeclarations": [
                    {"name": t.get("name"), "description": t.get("description", ""), "parameters": t.get("parameters")}
                    for t in tools
                ]
            }
        ]
    return request


def _message(parts: list[dict[str, Any]], call_base: int = 0) -> tuple[str, list[dict[str, Any]]]:
    text = "".join(part.get("text", "") for part in parts if "text" in part)
    calls = [
        {
            "id": f"call_{call_base + i}",
            "type": "function",
            "function": {
                "name": part["functionCall"].get("name"),
                "arguments": orjson.dumps(part["functionCall"].get("args") or {}).decode(),
            },
        }
        for i, part in enumerate(p for p in parts if "functionCall" in p)
    ]
    return text, calls


def _usage(metadata: dict[str, Any]) -> Usage:
    return Usage(
        prompt_tokens=int(metadata.get("promptTokenCount") or 0),
        completion_tokens=int(metadata.get("candidatesTokenCount") or 0),
        reasoning_tokens=int(metadata.get("thoughtsTokenCount") or 0),
        cached_tokens=int(metadata.get("cachedContentTokenCount") or 0),
    )


class GeminiProvider(HttpProvider):
    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-goog-api-key": api_key}

    def _url(self, request: UpstreamRequest, stream: bool) -> str:
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{self._root}/v1beta/models/{request.upstream_model}:{action}"

    async def complete(self, request: UpstreamRequest) -> Completion:
        payload = orjson.dumps(openai_to_gemini(request.body, request.max_tokens))
        parsed = await self._transport.post_json(self._url(request, False), payload, self._headers)
        try:
            candidate = parsed["candidates"][0]
            parts = (candidate.get("content") or {}).get("parts") or []
        except (KeyError, IndexError, TypeError) as exc:
            raise self._error(502, "Provider returned an invalid response", raw=str(parsed)) from exc
        text, calls = _message(parts)
        message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
        if calls:
            message["tool_calls"] = calls
        native = candidate.get("finishReason")
        finish = "tool_calls" if calls else FINISH.get(native or "", "stop")
        return Completion(
            message=message,
            finish_reason=finish,
            native_finish_reason=native,
            usage=_usage(parsed.get("usageMetadata") or {}),
            upstream_id=parsed.get("responseId"),
        )

    async def stream(self, request: UpstreamRequest) -> AsyncIterator[StreamChunk]:
        payload = orjson.dumps(openai_to_gemini(request.body, request.max_tokens))
        async for chunk in self._relay(self._url(request, True), payload):
            yield chunk

    async def _events(self, response: UpstreamResponse) -> AsyncIterator[StreamChunk]:
        yield StreamChunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}}])
        usage: Usage | None = None
        native = None
        calls_seen = 0
        async for line in response.lines():
            if not line.startswith(b"data:"):
                continue
            try:
                event = orjson.loads(line[5:].strip())
            except orjson.JSONDecodeError as exc:
                raise self._error(502, "Provider sent a broken stream", raw=line) from exc
            if event.get("usageMetadata"):
                usage = _usage(event["usageMetadata"])
            for candidate in event.get("candidates") or []:
                text, calls = _message((candidate.get("content") or {}).get("parts") or [], calls_seen)
                delta: dict[str, Any] = {}
                if text:
                    delta["content"] = text
                if calls:
                    delta["tool_calls"] = [{**call, "index": calls_seen + i} for i, call in enumerate(calls)]
                    calls_seen += len(calls)
                if delta:
                    yield StreamChunk(choices=[{"index": 0, "delta": delta}])
                native = candidate.get("finishReason") or native
        finish = "tool_calls" if calls_seen else FINISH.get(native or "", "stop")
        yield StreamChunk(choices=[{"index": 0, "delta": {}, "finish_reason": finish}])
        if usage is not None:
            yield StreamChunk(usage=usage)
