"""A fake Gemini API on loopback: generateContent and streamGenerateContent (SSE), text or a function call."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import orjson
from aiohttp import web


class FakeGeminiUpstream:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeGeminiUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1beta/models/{call}", self._call)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def _call(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.calls.append((request.path_qs, body, dict(request.headers)))
        usage = {"promptTokenCount": 9, "candidatesTokenCount": 3, "totalTokenCount": 12}
        tool = bool(body.get("tools"))
        parts: list[dict[str, Any]] = (
            [{"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]
            if tool
            else [{"text": "Ciao from Gemini"}]
        )
        if ":generateContent" in request.path:
            return web.json_response(
                {
                    "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}],
                    "usageMetadata": usage,
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        pieces = (
            [{"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]
            if tool
            else [{"text": "Ciao"}, {"text": " from"}, {"text": " Gemini"}]
        )
        for index, piece in enumerate(pieces):
            event: dict[str, Any] = {"candidates": [{"content": {"role": "model", "parts": [piece]}}]}
            if index == len(pieces) - 1:
                event["candidates"][0]["finishReason"] = "STOP"
                event["usageMetadata"] = usage
            await response.write(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
        return response
