"""A fake OpenAI-compatible upstream: a real HTTP server on loopback whose behaviour tests control.

It runs its own event loop in a thread so that synchronous tests (and a Tollway server in another
process) can talk to it. Every call is recorded; `behaviour` decides the next answers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.loopback import LoopbackServer


@dataclass
class Behaviour:
    """What the upstream does next. Fields can be changed by a test between requests."""

    status: int = 200
    error_body: bytes = b'{"error":{"message":"upstream exploded","type":"server_error"}}'
    reply_words: list[str] = field(default_factory=lambda: ["Hello", " from", " the", " fake", " upstream", "."])
    prompt_tokens: int = 11
    report_usage: bool = True
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    break_after_chunks: int | None = None
    invalid_json: bool = False
    finish_reason: str = "stop"
    # Merged into the usage object as the real API reports it (e.g. prompt_tokens_details.cached_tokens).
    usage_override: dict[str, Any] = field(default_factory=dict)
    # Merged into the message (and sent as one delta first when streaming), e.g. {"reasoning_content": "..."}.
    message_extra: dict[str, Any] = field(default_factory=dict)
    tool_call: dict[str, Any] | None = None  # answer with this call (finish_reason tool_calls)
    raw_chunk: bytes | None = None  # one extra SSE data line sent before the finish chunk (malformed input)
    # Stream chunks as OpenAI writes them (`logprobs` and `finish_reason: null` in every choice, a
    # system_fingerprint); False: choices with `index` and `delta` alone, as some compatible servers write them.
    full_chunks: bool = True
    burst: bool = False  # the whole stream in one write (one read on the gateway's side)


@dataclass
class Call:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


class FakeOpenAIUpstream(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.behaviour = Behaviour()
        self.calls: list[Call] = []
        self.cancelled_streams = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self) -> None:
        self.behaviour = Behaviour()
        self.calls.clear()
        self.cancelled_streams = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)

    def _usage(self, completion_tokens: int) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": self.behaviour.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.behaviour.prompt_tokens + completion_tokens,
        }
        usage.update(self.behaviour.usage_override)
        return usage

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.calls.append(Call(request.path, body, dict(request.headers)))
        if self.behaviour.status != 200:
            return web.Response(
                status=self.behaviour.status, body=self.behaviour.error_body, content_type="application/json"
            )
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [0.1 * (i + 1), 0.2, 0.3]} for i in range(len(inputs))]
        tokens = 7 * len(inputs)
        payload = {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return web.Response(body=orjson.dumps(payload), content_type="application/json")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.calls.append(Call(request.path, body, dict(request.headers)))
        behaviour = self.behaviour
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        if behaviour.status != 200:
            return web.Response(status=behaviour.status, body=behaviour.error_body, content_type="application/json")
        if behaviour.invalid_json:
            return web.Response(status=200, body=b"{not json", content_type="application/json")
        words = behaviour.reply_words[: body.get("max_tokens") or body.get("max_completion_tokens") or 10**6]
        if not body.get("stream"):
            payload: dict[str, Any] = {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": None if behaviour.tool_call else "".join(words),
                            **({"tool_calls": [behaviour.tool_call]} if behaviour.tool_call else {}),
                            **behaviour.message_extra,
                        },
                        "finish_reason": "tool_calls" if behaviour.tool_call else behaviour.finish_reason,
                    }
                ],
            }
            if behaviour.report_usage:
                payload["usage"] = self._usage(len(words))
            return web.Response(body=orjson.dumps(payload), content_type="application/json")
        return await self._stream(request, body, words)

    async def _stream(self, request: web.Request, body: dict[str, Any], words: list[str]) -> web.StreamResponse:
        behaviour = self.behaviour
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        def event(payload: dict[str, Any]) -> bytes:
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": body["model"],
            **({"system_fingerprint": "fp_fake"} if behaviour.full_chunks else {}),
        }
        held: list[bytes] = []

        def choice(delta: dict[str, Any]) -> list[dict[str, Any]]:
            if behaviour.full_chunks:
                return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]
            return [{"index": 0, "delta": delta}]

        async def send(data: bytes) -> None:
            if behaviour.burst:
                held.append(data)
            else:
                await response.write(data)

        try:
            await send(b": keep-alive\n\n")
            await send(event({**base, "choices": choice({"role": "assistant"})}))
            if behaviour.message_extra:
                await send(event({**base, "choices": choice(behaviour.message_extra)}))
            if behaviour.tool_call:
                words = []
                call = {"index": 0, **behaviour.tool_call}
                await send(event({**base, "choices": choice({"tool_calls": [call]})}))
            for index, word in enumerate(words):
                if behaviour.break_after_chunks is not None and index >= behaviour.break_after_chunks:
                    if held:
                        await response.write(b"".join(held))
                    request.transport.close()  # type: ignore[union-attr]
                    return response
                if behaviour.chunk_delay_s:
                    await asyncio.sleep(behaviour.chunk_delay_s)
                await send(event({**base, "choices": choice({"content": word})}))
            if behaviour.raw_chunk is not None:
                await send(b"data: " + behaviour.raw_chunk + b"\n\n")
            finish = "tool_calls" if behaviour.tool_call else behaviour.finish_reason
            await send(event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
            if behaviour.report_usage:
                await send(event({**base, "choices": [], "usage": self._usage(len(words))}))
            await send(b"data: [DONE]\n\n")
            if held:
                await response.write(b"".join(held))
        except (ConnectionResetError, asyncio.CancelledError):
            self.cancelled_streams += 1
            raise
        return response
