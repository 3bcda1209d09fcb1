"""Checks of an Anthropic Messages request (/api/v1/messages) before it is translated: every field's shape.

The translation trusts the shapes checked here, so no input reaches it that could make it fail; each
failure is a 400 naming the field, in the words of Anthropic's API.
"""

from __future__ import annotations

from typing import Any

from tollway.errors import InvalidRequest
from tollway.gateway.validation import (
    bad,
    check_list,
    check_number,
    check_object,
    check_string,
)

_ROLES = ("user", "assistant")
_BLOCKS = ("text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking", "document")
_TOOL_CHOICES = ("auto", "any", "tool", "none")


def _text_blocks(value: Any, field: str) -> None:
    for index, block in enumerate(check_list(value, field, "text blocks")):
        where = f"{field}[{index}]"
        check_object(block, where, 'a text block such as {"type": "text", "text": "..."}')
        if block.get("type") != "text":
            raise bad(f"{where}.type must be text", f"{where}.type")
        check_string(block.get("text"), f"{where}.text")


def _block(block: Any, where: str) -> None:
    check_object(block, where, 'a content block object with a "type"')
    kind = block.get("type")
    if kind not in _BLOCKS:
        raise bad(f"{where}.type must be one of {', '.join(_BLOCKS)}, got {str(kind)[:40]!r}", f"{where}.type")
    if kind == "text":
        check_string(block.get("text"), f"{where}.text")
    elif kind == "image":
        source = check_object(block.get("source"), f"{where}.source", "an object with type base64 or url")
        if source.get("type") == "url":
            check_string(source.get("url"), f"{where}.source.url")
        elif source.get("type") == "base64":
            check_string(source.get("media_type"), f"{where}.source.media_type")
            check_string(source.get("data"), f"{where}.source.data")
        else:
            raise bad(f"{where}.source.type must be base64 or url", f"{where}.source.type")
    elif kind == "tool_use":
        check_string(block.get("id"), f"{where}.id")
        check_string(block.get("name"), f"{where}.name")
        if block.get("input") is not None:
            check_object(block["input"], f"{where}.input", "an object")
    elif kind == "tool_result":
        check_string(block.get("tool_use_id"), f"{where}.tool_use_id")
        content = block.get("content")
        if content is not None and not isinstance(content, str):
            for index, inner in enumerate(check_list(content, f"{where}.content", "content blocks")):
                _block(inner, f"{where}.content[{index}]")


def _messages(value: Any) -> None:
    messages = check_list(value, "messages", "{role, content} objects")
    if not messages:
        raise bad("messages must be a non-empty array", "messages")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        check_object(message, where, "an object with role and content")
        if message.get("role") not in _ROLES:
            raise bad(f"{where}.role must be user or assistant", f"{where}.role")
        content = message.get("content")
        if isinstance(content, str):
            check_string(content, f"{where}.content")
            continue
        for position, block in enumerate(check_list(content, f"{where}.content", "content blocks or a string")):
            _block(block, f"{where}.content[{position}]")


def _tools(value: Any) -> None:
    for index, tool in enumerate(check_list(value, "tools", "tool objects")):
        where = f"tools[{index}]"
        check_object(tool, where, "a tool object with a name")
        check_string(tool.get("name"), f"{where}.name")
        check_string(tool.get("description"), f"{where}.description", required=False)
        if tool.get("input_schema") is not None:
            check_object(tool["input_schema"], f"{where}.input_schema", "a JSON schema object")


def check_anthropic_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object")
    check_string(body.get("model"), "model")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise bad("max_tokens is required: a positive integer", "max_tokens")
    _messages(body.get("messages"))
    system = body.get("system")
    if isinstance(system, list):
        _text_blocks(system, "system")
    else:
        check_string(system, "system", required=False)
    if body.get("tools") is not None:
        _tools(body["tools"])
    choice = body.get("tool_choice")
    if choice is not None:
        check_object(choice, "tool_choice", 'an object such as {"type": "auto"}')
        if choice.get("type") not in _TOOL_CHOICES:
            raise bad(f"tool_choice.type must be one of {', '.join(_TOOL_CHOICES)}", "tool_choice.type")
        check_string(choice.get("name"), "tool_choice.name", required=choice.get("type") == "tool")
    stops = body.get("stop_sequences")
    if stops is not None:
        for index, stop in enumerate(check_list(stops, "stop_sequences", "strings")):
            check_string(stop, f"stop_sequences[{index}]")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise bad("stream must be true or false", "stream")
    if body.get("metadata") is not None:
        check_object(body["metadata"], "metadata", "an object")
    thinking = body.get("thinking")
    if thinking is not None:
        check_object(thinking, "thinking", 'an object such as {"type": "enabled", "budget_tokens": 1024}')
        budget = thinking.get("budget_tokens")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
            raise bad("thinking.budget_tokens must be a non-negative integer", "thinking.budget_tokens")
    check_number(body, "temperature", 0, 1)
    check_number(body, "top_p", 0, 1)
    top_k = body.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise bad("top_k must be a non-negative integer", "top_k")
    return body
