"""A fake Anthropic Messages API on loopback: answers text or a tool call, streamed or not, calls recorded."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from tests.fakes.loopback import LoopbackServer


class FakeAnthropicUpstream(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.reply_words = ["Hello", " from", " Claude", "."]
        # As the API reports it: input_tokens excludes cache reads and writes; output counts thinking.
        self.usage: dict[str, Any] = {"input_tokens": 21}
        self.thinking: str | None = None  # sent as a thinking block before the text
        self.thinking_tokens = 0  # added to output_tokens

    def reset(self) -> None:
        self.calls.clear()
        self.headers.clear()
        self.usage = {"input_tokens": 21}
        self.thinking = None
        self.thinking_tokens = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.calls.append(body)
        self.headers.append(dict(request.headers))
        use_tool = bool(body.get("tools")) and (body.get("tool_choice") or {}).get("type") != "none"
        words = self.reply_words[: body["max_tokens"]]
        output_tokens = len(words) + self.thinking_tokens
        if not body.get("stream"):
            content: list[dict[str, Any]] = [{"type": "text", "text": "".join(words)}]
            if self.thinking is not None:
                content.insert(0, {"type": "thinking", "thinking": self.thinking, "signature": "sig"})
            if use_tool:
                content.append(
                    {"type": "tool_use", "id": "toolu_1", "name": body["tools"][0]["name"], "input": {"city": "Paris"}}
                )
            return web.json_response(
                {
                    "id": "msg_fake",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": content,
                    "stop_reason": "tool_use" if use_tool else "end_turn",
                    "stop_sequence": None,
                    "usage": {**self.usage, "output_tokens": output_tokens},
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(name: str, payload: dict[str, Any]) -> None:
            await response.write(
                f"event: {name}\n".encode() + b"data: " + orjson.dumps({"type": name, **payload}) + b"\n\n"
            )

        await send(
            "message_start",
            {
                "message": {
                    "id": "msg_fake",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "usage": {**self.usage, "output_tokens": 1},
                }
            },
        )
        if self.thinking is not None:
            await send("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": ""}})
            delta = {"type": "thinking_delta", "thinking": self.thinking}
            await send("content_block_delta", {"index": 0, "delta": delta})
            await send("content_block_stop", {"index": 0})
        await send("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
        await send("ping", {})
        for word in words:
            await send("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": word}})
        await send("content_block_stop", {"index": 0})
        if use_tool:
            await send(
                "content_block_start",
                {
                    "index": 1,
                    "content_block": {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": body["tools"][0]["name"],
                        "input": {},
                    },
                },
            )
            for part in ('{"city"', ': "Paris"}'):
                await send(
                    "content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": part}}
                )
            await send("content_block_stop", {"index": 1})
        await send(
            "message_delta",
            {
                "delta": {"stop_reason": "tool_use" if use_tool else "end_turn"},
                "usage": {"output_tokens": output_tokens},
            },
        )
        await send("message_stop", {})
        return response
