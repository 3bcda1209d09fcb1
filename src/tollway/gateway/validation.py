"""Checks of a chat request body, each failure a precise 400 that says which field and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tollway.errors import InvalidRequest

_ROLES = {"system", "user", "assistant", "tool", "developer", "function"}
# Bounds on each field, checked before admission (the body's byte limit bounds the whole).
MAX_LIST_ITEMS = 10_000
MAX_STRING_CHARS = 10 * 1024 * 1024
MAX_TOKENS_LIMIT = 2**31 - 1
_MAX_STOPS = 16
_MAX_NAME_CHARS = 256


@dataclass(frozen=True, slots=True)
class ChatBody:
    raw: dict[str, Any]
    model: str | None
    fallback_models: tuple[str, ...]
    messages: list[dict[str, Any]]
    stream: bool
    max_tokens: int | None
    user: str | None


def bad(message: str, field: str) -> InvalidRequest:
    return InvalidRequest(message, metadata={"field": field})


_bad = bad


def check_number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    """An optional finite number within [low, high] (the comparison also turns NaN away)."""
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(f"{name} must be a number between {low} and {high}", name)
    if not low <= value <= high:
        raise _bad(f"{name} must be between {low} and {high}, got {value}", name)


_optional_number = check_number


def check_string(value: Any, field: str, *, required: bool = True) -> str | None:
    """A string of at most MAX_STRING_CHARS characters (or, when not required, None)."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise _bad(f"{field} must be a string", field)
    if len(value) > MAX_STRING_CHARS:
        raise _bad(f"{field} is longer than {MAX_STRING_CHARS} characters", field)
    return value


def check_list(value: Any, field: str, what: str) -> list[Any]:
    """An array of at most MAX_LIST_ITEMS items; `what` names the items in the message."""
    if not isinstance(value, list):
        raise _bad(f"{field} must be an array of {what}", field)
    if len(value) > MAX_LIST_ITEMS:
        raise _bad(f"{field} has more than {MAX_LIST_ITEMS} items", field)
    return value


def check_object(value: Any, field: str, what: str) -> dict[str, Any]:
    """A JSON object; `what` describes the one expected."""
    if not isinstance(value, dict):
        raise _bad(f"{field} must be {what}", field)
    return value


def _check_integer(body: dict[str, Any], name: str, low: int, high: int) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{name} must be an integer between {low} and {high}", name)


def _check_kind(body: dict[str, Any], name: str, kinds: tuple[type, ...], what: str) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, kinds):
        raise _bad(f"{name} must be {what}", name)


def _check_parts(content: list[Any], where: str) -> None:
    if len(content) > MAX_LIST_ITEMS:
        raise _bad(f"{where} has more than {MAX_LIST_ITEMS} parts", where)
    for index, part in enumerate(content):
        field = f"{where}[{index}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _bad(f'{field} must be a content part object such as {{"type": "text", "text": "..."}}', field)
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise _bad(f"{field}.text must be a string", f"{field}.text")
        if part["type"] == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise _bad(f"{field}.image_url.url must be a string", f"{field}.image_url")


def _check_tool_calls(calls: Any, where: str) -> None:
    if not isinstance(calls, list) or len(calls) > MAX_LIST_ITEMS:
        raise _bad(f"{where} must be an array of tool call objects", where)
    for index, call in enumerate(calls):
        field = f"{where}[{index}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name", ""), str):
            raise _bad(f"{field} must be a tool call with a function object", field)
        if not isinstance(function.get("arguments", ""), (str, type(None))):
            raise _bad(f"{field}.function.arguments must be a JSON string", f"{field}.function.arguments")
        if not isinstance(call.get("id", ""), (str, type(None))):
            raise _bad(f"{field}.id must be a string", f"{field}.id")


def _check_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or len(tools) > MAX_LIST_ITEMS:
            raise _bad("tools must be an array of function tools", "tools")
        for index, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise _bad(
                    f'tools[{index}] must be {{"type": "function", "function": {{"name": ..., "parameters": ...}}}}',
                    f"tools[{index}]",
                )
            if not isinstance(function.get("parameters", {}), (dict, type(None))):
                raise _bad(f"tools[{index}].function.parameters must be an object", f"tools[{index}]")
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice, (str, dict)):
        raise _bad("tool_choice must be a string or an object", "tool_choice")


def _check_optional_fields(body: dict[str, Any]) -> None:
    _check_tools(body)
    stop = body.get("stop")
    if not (stop is None or isinstance(stop, str)) and (
        not isinstance(stop, list) or len(stop) > _MAX_STOPS or not all(isinstance(s, str) for s in stop)
    ):
        raise _bad(f"stop must be a string or an array of at most {_MAX_STOPS} strings", "stop")
    for name in ("response_format", "logit_bias", "reasoning", "stream_options", "usage", "prediction"):
        _check_kind(body, name, (dict,), "an object")
    for name in ("logprobs", "parallel_tool_calls"):
        _check_kind(body, name, (bool,), "true or false")
    _check_integer(body, "seed", -(2**63), 2**63 - 1)
    _check_integer(body, "top_k", 0, MAX_TOKENS_LIMIT)
    _check_integer(body, "top_logprobs", 0, 20)
    _check_integer(body, "n", 1, 128)
    check_number(body, "min_p", 0, 1)
    check_number(body, "top_a", 0, 1)


def _validate_messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise _bad("messages must be a non-empty array of {role, content} objects", "messages")
    if len(raw) > MAX_LIST_ITEMS:
        raise _bad(f"messages has more than {MAX_LIST_ITEMS} items", "messages")
    for index, message in enumerate(raw):
        if not isinstance(message, dict):
            raise _bad(f"messages[{index}] must be an object with role and content", f"messages[{index}]")
        role = message.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise _bad(
                f"messages[{index}].role must be one of {', '.join(sorted(_ROLES))}, got {role!r}",
                f"messages[{index}].role",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise _bad(
                f"messages[{index}].content must be a string or an array of content parts",
                f"messages[{index}].content",
            )
        if isinstance(content, list):
            _check_parts(content, f"messages[{index}].content")
        if message.get("tool_calls") is not None:
            _check_tool_calls(message["tool_calls"], f"messages[{index}].tool_calls")
        for name in ("name", "tool_call_id"):
            value = message.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > _MAX_NAME_CHARS):
                raise _bad(f"messages[{index}].{name} must be a string", f"messages[{index}].{name}")
    return raw


def parse_chat_body(body: Any, fallback_limit: int) -> ChatBody:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object")
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip() or len(model) > _MAX_NAME_CHARS):
        raise _bad("model must be a non-empty string such as tollway/offline-small", "model")
    models = body.get("models")
    fallback: tuple[str, ...] = ()
    if models is not None:
        if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
            raise _bad("models must be an array of model id strings", "models")
        if len(models) > fallback_limit:
            raise _bad(f"models array must have {fallback_limit} items or fewer", "models")
        fallback = tuple(models)
    if model is None and not fallback:
        raise _bad("model is required (or a models array); see GET /api/v1/models for ids", "model")
    if "messages" in body:
        messages = _validate_messages(body["messages"])
    elif isinstance(body.get("prompt"), str) and body["prompt"]:
        messages = [{"role": "user", "content": body["prompt"]}]
    else:
        raise _bad("messages is required: an array of {role, content} objects", "messages")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad("stream must be true or false", "stream")
    max_tokens = None
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS_LIMIT:
            raise _bad(f"{name} must be a positive integer up to {MAX_TOKENS_LIMIT}", name)
        max_tokens = value if max_tokens is None else min(max_tokens, value)
    _optional_number(body, "temperature", 0, 2)
    _optional_number(body, "top_p", 0, 1)
    _optional_number(body, "frequency_penalty", -2, 2)
    _optional_number(body, "presence_penalty", -2, 2)
    _optional_number(body, "repetition_penalty", 0, 2)
    _check_optional_fields(body)
    user = body.get("user")
    # Stored on the generation: a NUL byte would make PostgreSQL refuse the settlement's write.
    if user is not None and (not isinstance(user, str) or len(user) > _MAX_NAME_CHARS or "\x00" in user):
        raise _bad(f"user must be a string of at most {_MAX_NAME_CHARS} characters, without NUL", "user")
    return ChatBody(
        raw=body,
        model=model,
        fallback_models=fallback,
        messages=messages,
        stream=stream,
        max_tokens=max_tokens,
        user=user,
    )
