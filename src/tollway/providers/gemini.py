"""Google Gemini upstreams: generateContent and streamGenerateContent (SSE), text and tools.

`base_url` is the API root (e.g. https://generativelanguage.googleapis.com); Tollway calls
{base_url}/v1beta/models/{model}:generateContent with the key in x-goog-api-key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from tollway.providers.base import (
    COMMON_PARAMETERS,
    Completion,
    ReasoningPlan,
    StreamChunk,
    UpstreamRequest,
    message_text,
)
from tollway.providers.http_client import UpstreamResponse
from tollway.providers.transport import HttpProvider
from tollway.usage import Usage, field_count

FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter"}


def _parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A message's content as Gemini parts: text, and images as inline data (data URLs) or file URIs."""
    content = message.get("content")
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            parts.append({"text": part["text"]})
        elif part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                continue
            if url.startswith("data:"):
                header, _, data = url.partition(",")
                mime = header[len("data:") :].split(";")[0] or "image/png"
                parts.append({"inlineData": {"mimeType": mime, "data": data}})
            else:
                parts.append({"fileData": {"mimeType": "image/*", "fileUri": url}})
    return parts


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice == "none":
        return {"functionCallingConfig": {"mode": "NONE"}}
    if choice == "auto":
        return {"functionCallingConfig": {"mode": "AUTO"}}
    if choice == "required":
        return {"functionCallingConfig": {"mode": "ANY"}}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name", "")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    return None


def _response_format(config: dict[str, Any], response_format: Any) -> None:
    if not isinstance(response_format, dict):
        return
    kind = response_format.get("type")
    if kind == "json_object":
        config["responseMimeType"] = "application/json"
    elif kind == "json_schema":
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            config["responseJsonSchema"] = schema


def openai_to_gemini(body: dict[str, Any], max_tokens: int, reasoning: ReasoningPlan | None = None) -> dict[str, Any]:
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
        parts.extend(_parts(message))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            names[call.get("id", "")] = function.get("name", "")
            try:
                arguments = orjson.loads(function.get("arguments") or "{}")
            except orjson.JSONDecodeError:
                arguments = {}
            parts.append({"functionCall": {"name": function.get("name", ""), "args": arguments}})
        contents.append({"role": "model" if role == "assistant" else "user", "parts": parts or [{"text": ""}]})
    # Thinking counts against maxOutputTokens: the budget comes on top of the answer's max_tokens.
    config: dict[str, Any] = {"maxOutputTokens": max_tokens + (reasoning.budget_tokens if reasoning else 0)}
    for source, target in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("seed", "seed"),
        ("frequency_penalty", "frequencyPenalty"),
        ("presence_penalty", "presencePenalty"),
    ):
        if body.get(source) is not None:
            config[target] = body[source]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    _response_format(config, body.get("response_format"))
    if reasoning is not None:
        config["thinkingConfig"] = {"thinkingBudget": reasoning.budget_tokens, "includeThoughts": not reasoning.exclude}
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
    tool_config = _tool_config(body.get("tool_choice"))
    if tool_config is not None:
        request["toolConfig"] = tool_config
    return request


def _message(parts: list[dict[str, Any]], call_base: int = 0) -> tuple[str, str, list[dict[str, Any]]]:
    """Answer text, thought text and tool calls of a candidate's parts."""
    parts = [part for part in parts if isinstance(part, dict)]
    text = "".join(str(part.get("text", "")) for part in parts if "text" in part and not part.get("thought"))
    thought = "".join(str(part.get("text", "")) for part in parts if "text" in part and part.get("thought"))
    calls = [
        {
            "id": f"call_{call_base + i}",
            "type": "function",
            "function": {
                "name": part["functionCall"].get("name"),
                "arguments": orjson.dumps(part["functionCall"].get("args") or {}).decode(),
            },
        }
        for i, part in enumerate(p for p in parts if isinstance(p.get("functionCall"), dict))
    ]
    return text, thought, calls


def usage_from_gemini(metadata: Any) -> Usage:
    """Gemini's usageMetadata: promptTokenCount includes cachedContentTokenCount; thinking
    (thoughtsTokenCount) is output beside candidatesTokenCount; tool-use prompts are input too."""
    thoughts = field_count(metadata, "thoughtsTokenCount")
    return Usage(
        prompt_tokens=field_count(metadata, "promptTokenCount") + field_count(metadata, "toolUsePromptTokenCount"),
        completion_tokens=field_count(metadata, "candidatesTokenCount") + thoughts,
        reasoning_tokens=thoughts,
        cached_tokens=field_count(metadata, "cachedContentTokenCount"),
    )


class GeminiProvider(HttpProvider):
    # No parallel_tool_calls switch, logit_bias or repetition penalties in generateContent.
    supported_parameters = COMMON_PARAMETERS | {
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "tools",
        "tool_choice",
        "response_format",
        "reasoning",
        "include_reasoning",
    }

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-goog-api-key": api_key}

    def _url(self, request: UpstreamRequest, stream: bool) -> str:
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{self._root}/v1beta/models/{request.upstream_model}:{action}"

    @staticmethod
    def _payload(request: UpstreamRequest) -> bytes:
        return orjson.dumps(openai_to_gemini(request.body, request.max_tokens, request.reasoning))

    async def complete(self, request: UpstreamRequest) -> Completion:
        parsed = await self._transport.post_json(self._url(request, False), self._payload(request), self._headers)
        try:
            candidate = parsed["candidates"][0]
            parts = (candidate.get("content") or {}).get("parts") or []
            if not isinstance(parts, list):
                raise TypeError("parts must be a list")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self._error(502, "Provider returned an invalid response", raw=str(parsed)) from exc
        text, thought, calls = _message(parts)
        message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
        if calls:
            message["tool_calls"] = calls
        if thought and not (request.reasoning is not None and request.reasoning.exclude):
            message["reasoning"] = thought
        native = candidate.get("finishReason")
        finish = "tool_calls" if calls else FINISH.get(native or "", "stop")
        return Completion(
            message=message,
            finish_reason=finish,
            native_finish_reason=native,
            usage=usage_from_gemini(parsed.get("usageMetadata")),
            upstream_id=parsed.get("responseId"),
        )

    async def stream(self, request: UpstreamRequest) -> AsyncIterator[StreamChunk]:
        async for chunk in self._relay(self._url(request, True), self._payload(request), request):
            yield chunk

    async def _events(self, response: UpstreamResponse, request: UpstreamRequest) -> AsyncIterator[StreamChunk]:
        exclude = request.reasoning is not None and request.reasoning.exclude
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
            if not isinstance(event, dict):
                continue
            if event.get("usageMetadata"):
                usage = usage_from_gemini(event["usageMetadata"])
            for candidate in event.get("candidates") or []:
                if not isinstance(candidate, dict):
                    continue
                text, thought, calls = _message((candidate.get("content") or {}).get("parts") or [], calls_seen)
                delta: dict[str, Any] = {}
                if thought and not exclude:
                    delta["reasoning"] = thought
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
