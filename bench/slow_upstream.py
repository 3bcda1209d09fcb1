"""A fake OpenAI-compatible upstream that takes a fixed time to answer (the 50 ms upstream case)."""

from __future__ import annotations

import argparse
import asyncio

import orjson
import uvloop
from aiohttp import web

REPLY = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1,
    "model": "slow",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello from a slow upstream."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    args = parser.parse_args()
    body = orjson.dumps(REPLY)

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(args.delay_ms / 1000)
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
