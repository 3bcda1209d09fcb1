"""Pure translation between OpenAI chat shapes and Anthropic's Messages API (both directions).

Used by the Anthropic upstream adapter (OpenAI in, Anthropic out) and by /api/v1/messages
(Anthropic in, any provider out). No I/O here, so every rule is tested against fixtures.
"""

from __future__ import annotations

from typing import Any

import orjson

from tollway.providers.base import ReasoningPlan
from tollway.usage import Usage, field_count

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
    """OpenAI content parts as Anthropic blocks; `cache_control` on a part passes through unchanged."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        return []
    blocks = []
    for part in content:
        if not isinstance(part, dict):
            continue
        block: dict[str, Any] | None = None
        if part.get("type") == "text":
            block = {"type": "text", "text": part.get("text", "")}
        elif part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(url, str):
                block = _image_block(url)
        if block is not None:
            if isinstance(part.get("cache_control"), dict):
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
    return blocks


def usage_from_anthropic(raw: Any) -> Usage:
    """Anthropic's usage: `input_tokens` excludes cache reads and cache writes; thinking is inside
    `output_tokens`; cache writes may be split into 5-minute and 1-hour ones."""
    creation = raw.get("cache_creation") if isinstance(raw, dict) else None
    write_5m = field_count(creation, "ephemeral_5m_input_tokens")
    write_1h = field_count(creation, "ephemeral_1h_input_tokens")
    write = max(field_count(raw, "cache_creation_input_tokens"), write_5m + write_1h)
    cached = field_count(raw, "cache_read_input_tokens")
    return Usage(
        prompt_tokens=field_count(raw, "input_tokens") + cached + write,
        completion_tokens=field_count(raw, "output_tokens"),
        cached_tokens=cached,
        cache_write_tokens=write,
        cache_write_1h_tokens=write_1h,
        web_searches=field_count(raw, "server_tool_use", "web_search_requests"),
    )


def anthropic_usage_body(usage: dict[str, Any]) -> dict[str, Any]:
    """An OpenRouter usage object (prompt tokens include cached ones) in Anthropic's shape, with the cost."""
    details = usage.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0)
    written = int(details.get("cache_write_tokens") or 0)
    return {
        "input_tokens": usage["prompt_tokens"] - cached - written,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": written,
        "output_tokens": usage["completion_tokens"],
        "cost": usage["cost"],
    }


def openai_to_anthropic(
    body: dict[str, Any], upstream_model: str, max_tokens: int, reasoning: ReasoningPlan | None = None
) -> dict[str, Any]:
    """An OpenAI chat request as an Anthropic /v1/messages request."""
    system_parts: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in body.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):
            system_parts += [b for b in _content_blocks(message.get("content")) if b["type"] == "text"]
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
    if any("cache_control" in part for part in system_parts):
        request["system"] = system_parts  # blocks keep their cache breakpoints
    elif system_parts:
        request["system"] = "\n\n".join(part["text"] for part in system_parts)
    # Extended thinking takes no temperature or top_k other than the defaults.
    sampling = ("top_p",) if reasoning is not None else ("temperature", "top_p", "top_k")
    for name in sampling:
        if body.get(name) is not None:
            request[name] = body[name]
    if reasoning is not None:
        request["thinking"] = {"type": "enabled", "budget_tokens": reasoning.budget_tokens}
        request["max_tokens"] = max_tokens + reasoning.budget_tokens
    stop = body.get("stop")
    if stop:
        request["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        request["tools"] = [_tool(t) for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    tool_choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if tool_choice is not None:
        request["tool_choice"] = tool_choice
    if body.get("stream"):
        request["stream"] = True
    return request


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool["function"]
    converted = {
        "name": function.get("name", ""),
        "description": function.get("description", ""),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    cache_control = tool.get("cache_control") or function.get("cache_control")
    if isinstance(cache_control, dict):
        converted["cache_control"] = cache_control
    return converted


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    """OpenAI's tool_choice and parallel_tool_calls as Anthropic's one tool_choice object."""
    converted: dict[str, Any] | None = None
    if choice == "required":
        converted = {"type": "any"}
    elif choice == "auto":
        converted = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        converted = {"type": "tool", "name": choice["function"].get("name", "")}
    if parallel is False:
        converted = converted or {"type": "auto"}
        converted["disable_parallel_tool_use"] = True
    return converted


def anthropic_message_to_openai(content: list[dict[str, Any]], exclude_reasoning: bool = False) -> dict[str, Any]:
    """Anthropic content blocks as an OpenAI assistant message (text, tool calls, and thinking as `reasoning`)."""
    content = [block for block in content if isinstance(block, dict)]
    text = "".join(block.get("text", "") for block in content if block.get("type") == "text")
    thinking = "".join(block.get("thinking", "") for block in content if block.get("type") == "thinking")
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
    if thinking and not exclude_reasoning:
        message["reasoning"] = thinking
    return message


def anthropic_request_to_openai(body: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic /v1/messages request as an OpenAI chat request (for /api/v1/messages)."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    elif isinstance(system, list):
        blocks = [b for b in system if isinstance(b, dict)]
        if any("cache_control" in b for b in blocks):
            messages.append({"role": "system", "content": [_text_part(b) for b in blocks]})
        else:
            messages.append({"role": "system", "content": "".join(str(b.get("text", "")) for b in blocks)})
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
                texts.append(_text_part(block))
            elif kind == "image":
                source = block.get("source") or {}
                url = (
                    source.get("url")
                    if source.get("type") == "url"
                    else (f"data:{source.get('media_type')};base64,{source.get('data')}")
                )
                image: dict[str, Any] = {"type": "image_url", "image_url": {"url": url}}
                if isinstance(block.get("cache_control"), dict):
                    image["cache_control"] = block["cache_control"]
                images.append(image)
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
            keep_parts = images or any("cache_control" in part for part in texts)
            joined = "".join(str(part["text"]) for part in texts)
            entry: dict[str, Any] = {
                "role": message.get("role"),
                "content": [*texts, *images] if keep_parts else joined,
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
    if isinstance(body.get("tools"), list) and body["tools"]:
        chat["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.get("name"),
                    "description": t.get("description"),
                    "parameters": t.get("input_schema"),
                },
                **({"cache_control": t["cache_control"]} if isinstance(t.get("cache_control"), dict) else {}),
            }
            for t in body["tools"]
            if isinstance(t, dict)
        ]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind in ("auto", "none"):
            chat["tool_choice"] = kind
        elif kind == "any":
            chat["tool_choice"] = "required"
        elif kind == "tool":
            chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        if choice.get("disable_parallel_tool_use") is True:
            chat["parallel_tool_calls"] = False
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        chat["reasoning"] = {"max_tokens": budget} if isinstance(budget, int) else {"enabled": True}
    return chat


def _text_part(block: dict[str, Any]) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "text", "text": block.get("text", "")}
    if isinstance(block.get("cache_control"), dict):
        part["cache_control"] = block["cache_control"]
    return part


def openai_message_to_anthropic(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if isinstance(message.get("reasoning"), str) and message["reasoning"]:
        blocks.append({"type": "thinking", "thinking": message["reasoning"], "signature": ""})
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
