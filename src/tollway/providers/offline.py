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
import random
import re
from collections.abc import AsyncIterator
from typing import Any

from tollway.providers.base import (
    Completion,
    Embeddings,
    StreamChunk,
    UpstreamRequest,
    Usage,
    before_upstream_wait,
    message_text,
    prompt_tokens,
)

_TOKEN = re.compile(r"\w+|[^\w\s]")
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


class OfflineProvider:
    """A real provider module (not a test double), priced like any other model."""

    def __init__(self, name: str = "offline", display_name: str = "Tollway Offline", delay_ms: float = 0.0) -> None:
        self.name = name
        self.display_name = display_name
        self._delay_s = delay_ms / 1000

    def count_tokens(self, text: str) -> int:
        return count_tokens(text)

    @staticmethod
    def _inputs(request: UpstreamRequest) -> tuple[list[dict[str, Any]], int | None]:
        messages = request.body.get("messages") or []
        if not messages and isinstance(request.body.get("prompt"), str):
            messages = [{"role": "user", "content": request.body["prompt"]}]
        seed = request.body.get("seed")
        return messages, seed if isinstance(seed, int) else None

    async def embed(self, inputs: list[str], upstream_model: str, extra: dict[str, Any]) -> Embeddings:
        dimensions = extra.get("dimensions")
        size = dimensions if isinstance(dimensions, int) and 0 < dimensions <= 1024 else _EMBEDDING_DIMENSIONS
        return Embeddings(
            vectors=[offline_embedding(text, size) for text in inputs],
            prompt_tokens=sum(count_tokens(text) for text in inputs),
        )

    async def complete(self, request: UpstreamRequest) -> Completion:
        messages, seed = self._inputs(request)
        tokens, truncated = generate_tokens(messages, seed, request.max_tokens)
        finish = "length" if truncated else "stop"
        return Completion(
            message={"role": "assistant", "content": "".join(tokens)},
            finish_reason=finish,
            native_finish_reason=finish,
            usage=Usage(prompt_tokens=prompt_tokens(self, messages), completion_tokens=len(tokens)),
        )

    async def stream(self, request: UpstreamRequest) -> AsyncIterator[StreamChunk]:
        messages, seed = self._inputs(request)
        tokens, truncated = generate_tokens(messages, seed, request.max_tokens)
        yield StreamChunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}}])
        for token in tokens:
            if self._delay_s:
                await before_upstream_wait()
                await asyncio.sleep(self._delay_s)
            yield StreamChunk(choices=[{"index": 0, "delta": {"content": token}}])
        finish = "length" if truncated else "stop"
        yield StreamChunk(choices=[{"index": 0, "delta": {}, "finish_reason": finish}])
        yield StreamChunk(usage=Usage(prompt_tokens=prompt_tokens(self, messages), completion_tokens=len(tokens)))
