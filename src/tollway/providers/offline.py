"""The built-in offline provider: local, deterministic text with honest token counts and no network.

It is what the quick start and the tests run on when no upstream is configured. Text is drawn from
a fixed vocabulary by a generator seeded from the request's `seed` and prompt, so a given seed and
prompt always give the same answer. One token is one word or punctuation mark; streaming sends one
token per chunk at a configurable pace. A prompt starting with "/echo " is answered with the rest
of it, which lets tests predict the output exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from tollway.errors import ProviderError
from tollway.providers.base import (
    Completion,
    Embeddings,
    StreamChunk,
    UpstreamRequest,
    before_upstream_wait,
    message_text,
    prompt_tokens,
)
from tollway.providers.offline_json import SchemaError, instance
from tollway.usage import Usage

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PIECE = re.compile(r"\s*(?:\w+|[^\w\s])")
_VOCABULARY = (
    "the a gateway credit ledger request model token stream answer balance key limit route provider "
    "price exact offline local quick steady small bright careful simple honest clear light river stone "
    "cloud garden window morning evening quiet signal number letter paper story harbor valley meadow "
    "and of to in on with for from by is was are be has have will can may should every each"
).split()


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def generate_tokens(messages: list[dict[str, Any]], seed: int | None, max_tokens: int) -> tuple[list[str], bool]:
    """The reply as a list of token strings (with leading spaces), and whether max_tokens cut it."""
    prompt = _last_user_text(messages)
    if prompt.startswith("/echo "):
        words = _TOKEN.findall(prompt[len("/echo ") :])
    else:
        digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
        rng = random.Random(digest)
        length = rng.randint(12, 40)
        words = [rng.choice(_VOCABULARY) for _ in range(length - 1)]
        words[0] = words[0].capitalize()
        words.append(".")
    pieces = [word if index == 0 or not word[0].isalnum() else " " + word for index, word in enumerate(words)]
    truncated = len(pieces) > max_tokens
    return pieces[:max_tokens], truncated


_EMBEDDING_DIMENSIONS = 64


def offline_embedding(text: str, dimensions: int = _EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic unit vector from the text's hash: same text, same vector; no model needed."""
    digest = b""
    counter = 0
    while len(digest) < dimensions * 2:
        digest += hashlib.sha256(f"{counter}\x00{text}".encode()).digest()
        counter += 1
    raw = [int.from_bytes(digest[i * 2 : i * 2 + 2], "big") / 32767.5 - 1 for i in range(dimensions)]
    norm = sum(v * v for v in raw) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in raw]


@dataclass(frozen=True, slots=True)
class _Answer:
    pieces: list[str]  # the text, token by token (empty for a tool call)
    tool_call: dict[str, Any] | None
    finish: str

    @property
    def completion_tokens(self) -> int:
        if self.tool_call is not None:
            function = self.tool_call["function"]
            return count_tokens(function["name"]) + count_tokens(function["arguments"])
        return len(self.pieces)

    def message(self) -> dict[str, Any]:
        if self.tool_call is not None:
            return {"role": "assistant", "content": None, "tool_calls": [self.tool_call]}
        return {"role": "assistant", "content": "".join(self.pieces)}


def _pieces(text: str) -> list[str]:
    """A text as tokens that join back to it exactly (JSON included)."""
    return _PIECE.findall(text)


def _refuse(message: str, field: str) -> ProviderError:
    return ProviderError(message, upstream_status=400, provider_name="Tollway Offline", metadata={"field": field})


def _forced_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The tool a request forces (tool_choice "required" or named), None when the model may answer in text."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    usable = [t for t in tools or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    if tools is not None and (not isinstance(tools, list) or len(usable) != len(tools)):
        raise _refuse("tools must be an array of {type: function, function: {name, parameters}} objects", "tools")
    if choice in (None, "auto", "none"):
        return None
    if choice == "required":
        if not usable:
            raise _refuse('tool_choice "required" needs at least one tool in tools', "tool_choice")
        return dict(usable[0]["function"])
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if not isinstance(name, str):
        raise _refuse(
            'tool_choice must be "none", "auto", "required" or {type: function, function: {name}}', "tool_choice"
        )
    for tool in usable:
        if tool["function"].get("name") == name:
            return dict(tool["function"])
    raise _refuse(f"tool_choice names {name!r}, which is not in tools", "tool_choice")


def _json_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The schema a response_format asks the answer to follow, None for plain text."""
    response_format = body.get("response_format")
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object", "properties": {"answer": {"type": "string"}}}
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            return schema
        raise _refuse("response_format.json_schema.schema must be a JSON Schema object", "response_format")
    raise _refuse('response_format.type must be "text", "json_object" or "json_schema"', "response_format")


def _cut_at_stop(pieces: list[str], stop: Any) -> tuple[list[str], bool]:
    sequences = [stop] if isinstance(stop, str) else [s for s in stop or [] if isinstance(s, str) and s]
    text = ""
    for index, piece in enumerate(pieces):
        text += piece
        if any(sequence in text for sequence in sequences if sequence):
            return pieces[:index], True
    return pieces, False


class OfflineProvider:
    """A real provider module (not a test double), priced like any other model."""

    # What it honours: seed makes answers reproducible; tools and response_format are followed exactly.
    supported_parameters = frozenset(
        {
            "max_tokens",
            "max_completion_tokens",
            "seed",
            "stop",
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "response_format",
        }
    )

    def __init__(self, name: str = "offline", display_name: str = "Tollway Offline", delay_ms: float = 0.0) -> None:
        self.name = name
        self.display_name = display_name
        self._delay_s = delay_ms / 1000

    def count_tokens(self, text: str) -> int:
        return count_tokens(text)

    def count_prompt(self, body: dict[str, Any], messages: list[dict[str, Any]]) -> int:
        """Exact: the messages' text (and tool calls) plus the tool definitions and schemas it reads."""
        total = prompt_tokens(self, messages)
        for message in messages:
            if message.get("tool_calls"):
                total += count_tokens(orjson.dumps(message["tool_calls"]).decode())
        extras = {name: body[name] for name in ("tools", "tool_choice", "response_format") if body.get(name)}
        if extras:
            total += count_tokens(orjson.dumps(extras).decode())
        return total

    @staticmethod
    def _inputs(request: UpstreamRequest) -> tuple[list[dict[str, Any]], int | None]:
        messages = request.body.get("messages") or []
        if not messages and isinstance(request.body.get("prompt"), str):
            messages = [{"role": "user", "content": request.body["prompt"]}]
        seed = request.body.get("seed")
        return messages, seed if isinstance(seed, int) else None

    def _answer(self, request: UpstreamRequest) -> tuple[_Answer, Usage]:
        messages, seed = self._inputs(request)
        body = request.body
        tool = _forced_tool(body)
        schema = _json_schema(body)
        words, _ = generate_tokens(messages, seed, 10**6)
        supply = itertools.cycle([w.strip() for w in words if w.strip().isalnum()] or ["answer"])
        try:
            if tool is not None:
                arguments = orjson.dumps(instance(tool.get("parameters") or {}, supply)).decode()
                call_id = "call_" + hashlib.sha256(arguments.encode()).hexdigest()[:24]
                call = {"id": call_id, "type": "function", "function": {"name": tool["name"], "arguments": arguments}}
                answer = _Answer([], call, "tool_calls")
            else:
                if schema is not None:
                    pieces = _pieces(orjson.dumps(instance(schema, supply)).decode())
                    truncated = len(pieces) > request.max_tokens
                    pieces = pieces[: request.max_tokens]
                else:
                    pieces, truncated = generate_tokens(messages, seed, request.max_tokens)
                pieces, stopped = _cut_at_stop(pieces, body.get("stop"))
                answer = _Answer(pieces, None, "length" if truncated and not stopped else "stop")
        except SchemaError as exc:
            raise _refuse(f"response_format or tool parameters: {exc}", "response_format") from exc
        usage = Usage(
            prompt_tokens=self.count_prompt(body, messages),
            completion_tokens=answer.completion_tokens,
        )
        return answer, usage

    async def embed(self, inputs: list[str], upstream_model: str, extra: dict[str, Any]) -> Embeddings:
        dimensions = extra.get("dimensions")
        size = dimensions if isinstance(dimensions, int) and 0 < dimensions <= 1024 else _EMBEDDING_DIMENSIONS
        return Embeddings(
            vectors=[offline_embedding(text, size) for text in inputs],
            prompt_tokens=sum(count_tokens(text) for text in inputs),
        )

    async def complete(self, request: UpstreamRequest) -> Completion:
        answer, usage = self._answer(request)
        return Completion(
            message=answer.message(),
            finish_reason=answer.finish,
            native_finish_reason=answer.finish,
            usage=usage,
        )

    async def stream(self, request: UpstreamRequest) -> AsyncIterator[StreamChunk]:
        answer, usage = self._answer(request)
        yield StreamChunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}}])
        if answer.tool_call is not None:
            yield StreamChunk(choices=[{"index": 0, "delta": {"tool_calls": [{"index": 0, **answer.tool_call}]}}])
        for token in answer.pieces:
            if self._delay_s:
                await before_upstream_wait()
                await asyncio.sleep(self._delay_s)
            yield StreamChunk(choices=[{"index": 0, "delta": {"content": token}}])
        yield StreamChunk(choices=[{"index": 0, "delta": {}, "finish_reason": answer.finish}])
        yield StreamChunk(usage=usage)
