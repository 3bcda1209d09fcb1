"""Checks of a chat request body, each failure a precise 400 that says which field and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tollway.errors import InvalidRequest

_ROLES = {"system", "user", "assistant", "tool", "developer", "function"}


@dataclass(frozen=True, slots=True)
class ChatBody:
    raw: dict[str, Any]
    model: str | None
    fallback_models: tuple[str, ...]
    messages: list[dict[str, Any]]
    stream: bool
    max_tokens: int | None
    user: str | None


def _bad(message: str, field: str) -> InvalidRequest:
    return InvalidRequest(message, metadata={"field": field})


def _optional_number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(f"{name} must be a number between {low} and {high}", name)
    if not low <= value <= high:
        raise _bad(f"{name} must be between {low} and {high}, got {value}", name)


def _validate_messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise _bad("messages must be a non-empty array of {role, content} objects", "messages")
    for index, message in enumerate(raw):
        if not isinstance(message, dict):
            raise _bad(f"messages[{index}] must be an object with role and content", f"messages[{index}]")
        role = message.get("role")
        if role not in _ROLES:
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
    return raw


def parse_chat_body(body: Any, fallback_limit: int) -> ChatBody:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object")
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
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
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _bad(f"{name} must be a positive integer", name)
        max_tokens = value if max_tokens is None else min(max_tokens, value)
    _optional_number(body, "temperature", 0, 2)
    _optional_number(body, "top_p", 0, 1)
    _optional_number(body, "frequency_penalty", -2, 2)
    _optional_number(body, "presence_penalty", -2, 2)
    _optional_number(body, "repetition_penalty", 0, 2)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _bad("seed must be an integer", "seed")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _bad("user must be a string", "user")
    return ChatBody(
        raw=body,
        model=model,
        fallback_models=fallback,
        messages=messages,
        stream=stream,
        max_tokens=max_tokens,
        user=user,
    )
