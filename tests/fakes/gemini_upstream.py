"""A fake Gemini API on loopback: generateContent and streamGenerateContent (SSE), text or a function call."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from tests.fakes.loopback import LoopbackServer


class FakeGeminiUpstream(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        # As the API reports it: promptTokenCount includes cachedContentTokenCount; thoughts are apart.
        self.usage: dict[str, Any] = {"promptTokenCount": 9, "candidatesTokenCount": 3, "totalTokenCount": 12}
        self.thought: str | None = None  # sent as a part with "thought": true before the answer

    def reset(self) -> None:
        self.calls.clear()
        self.usage = {"promptTokenCount": 9, "candidatesTokenCount": 3, "totalTokenCount": 12}
        self.thought = None

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{call}", self._call)

    async def _call(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.calls.append((request.path_qs, body, dict(request.headers)))
        usage = self.usage
        mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
        tool = bool(body.get("tools")) and mode != "NONE"
        thought = [{"text": self.thought, "thought": True}] if self.thought is not None else []
        parts: list[dict[str, Any]] = (
            [{"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]
            if tool
            else [{"text": "Ciao from Gemini"}]
        )
        if ":generateContent" in request.path:
            return web.json_response(
                {
                    "candidates": [{"content": {"role": "model", "parts": thought + parts}, "finishReason": "STOP"}],
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
        pieces = thought + pieces
        for index, piece in enumerate(pieces):
            event: dict[str, Any] = {"candidates": [{"content": {"role": "model", "parts": [piece]}}]}
            if index == len(pieces) - 1:
                event["candidates"][0]["finishReason"] = "STOP"
                event["usageMetadata"] = usage
            await response.write(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
        return response
