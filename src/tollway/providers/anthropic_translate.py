"""Pure translation between OpenAI chat shapes and Anthropic's Messages API (both directions).

Used by the Anthropic upstream adapter (OpenAI in, Anthropic out) and by /api/v1/messages
(Anthropic in, any provider out). No I/O here, so every rule is tested against fixtures.
"""

from __future__ import annotations

from typing import Any

import orjson

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}
FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "error": "end_turn",
    None: "end_turn",
}


def _image_block(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[len("data:") :].split(";")[0] or "image/png"
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(url, str):
                blocks.append(_image_block(url))
    return blocks


def openai_to_anthropic(body: dict[str, Any], upstream_model: str, max_tokens: int) -> dict[str, Any]:
    """An OpenAI chat request as an Anthropic /v1/messages request."""
    system_parts: list[str] = []
    messages: list[dict[str, Any]] = []
    for message in body.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):
            system_parts += [b["text"] for b in _content_blocks(message.get("content")) if b["type"] == "text"]
            continue
        if role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id", ""),
                "content": _content_blocks(message.get("content")) or [{"type": "text", "text": ""}],
            }
            if messages and messages[-1]["role"] == "user":
                messages[-1]["content"].append(block)
            else:
                messages.append({"role": "user", "content": [block]})
            continue
        blocks = _content_blocks(message.get("content"))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            try:
                arguments = orjson.loads(function.get("arguments") or "{}")
            except orjson.JSONDecodeError:
                arguments = {"_raw": function.get("arguments")}
            blocks.append(
                {"type": "tool_use", "id": call.get("id", ""), "name": function.get("name", ""), "input": arguments}
            )
        anthropic_role = "assistant" if role == "assistant" else "user"
        if messages and messages[-1]["role"] == anthropic_role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": anthropic_role, "content": blocks})
    request: dict[str, Any] = {"model": upstream_model, "max_tokens": max_tokens, "messages": messages}
    if system_parts:
        request["system"] = "\n\n".join(system_parts)
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            request[name] = body[name]
    stop = body.get("stop")
    if stop:
        request["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = body.get("tools")
    if tools:
        request["tools"] = [
            {
                "name": t["function"]["name"],
                "description": t["function"].get("description", ""),
                "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}},
            }
            for t in tools
            if isinstance(t, dict) and isinstance(t.get("function"), dict)
        ]
    choice = body.get("tool_choice")
    if choice == "required":
        request["tool_choice"] = {"type": "any"}
    elif choice == "auto":
        request["tool_choice"] = {"type": "auto"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        request["tool_choice"] = {"type": "tool", "name": choice["function"].get("name", "")}
    if body.get("stream"):
        request["stream"] = True
    return request


def anthropic_message_to_openai(content: list[dict[str, Any]]) -> dict[str, Any]:
    """Anthropic content blocks as an OpenAI assistant message (text and tool calls)."""
    text = "".join(block.get("text", "") for block in content if block.get("type") == "text")
    calls = [
        {
            "id": block.get("id", ""),
            "type": "function",
            "function": {"name": block.get("name", ""), "arguments": orjson.dumps(block.get("input") or {}).decode()},
        }
        for block in content
        if block.get("type") == "tool_use"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    return message


def anthropic_request_to_openai(body: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic /v1/messages request as an OpenAI chat request (for /api/v1/messages)."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    elif isinstance(system, list):
        messages.append(
            {"role": "system", "content": "".join(b.get("text", "") for b in system if isinstance(b, dict))}
        )
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            messages.append({"role": message.get("role"), "content": content})
            continue
        texts, calls, results, images = [], [], [], []
        for block in content or []:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                texts.append(block.get("text", ""))
            elif kind == "image":
                source = block.get("source") or {}
                url = (
                    source.get("url")
                    if source.get("type") == "url"
                    else (f"data:{source.get('media_type')};base64,{source.get('data')}")
                )
                images.append({"type": "image_url", "image_url": {"url": url}})
            elif kind == "tool_use":
                calls.append(
                    {
                        "id": block.get("id"),
                        "type": "function",
                        "function": {
                            "name": block.get("name"),
                            "arguments": orjson.dumps(block.get("input") or {}).decode(),
                        },
                    }
                )
            elif kind == "tool_result":
                inner = block.get("content")
                text = (
                    inner
                    if isinstance(inner, str)
                    else "".join(b.get("text", "") for b in inner or [] if isinstance(b, dict))
                )
                results.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
        messages.extend(results)
        if texts or calls or images:
            entry: dict[str, Any] = {
                "role": message.get("role"),
                "content": ([{"type": "text", "text": "".join(texts)}, *images]) if images else "".join(texts),
            }
            if calls:
                entry["tool_calls"] = calls
            messages.append(entry)
    chat: dict[str, Any] = {
        "model": body.get("model"),
        "messages": messages,
        "max_tokens": body.get("max_tokens"),
        "stream": bool(body.get("stream")),
    }
    for name in ("temperature", "top_p", "top_k", "metadata"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("stop_sequences"):
        chat["stop"] = body["stop_sequences"]
    if body.get("tools"):
        chat["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.get("name"),
                    "description": t.get("description"),
                    "parameters": t.get("input_schema"),
                },
            }
            for t in body["tools"]
            if isinstance(t, dict)
        ]
    return chat


def openai_message_to_anthropic(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if message.get("content"):
        blocks.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        try:
            arguments = orjson.loads(call["function"].get("arguments") or "{}")
        except orjson.JSONDecodeError:
            arguments = {}
        blocks.append(
            {"type": "tool_use", "id": call.get("id"), "name": call["function"].get("name"), "input": arguments}
        )
    return blocks
