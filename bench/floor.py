"""The floor: a bare aiohttp + uvloop pass-through proxy with no features (no auth, no ledger, no parsing).

Whatever a gateway on the same server stack costs beyond this is its own work. The body goes upstream as
received; the answer comes back with its status and content type, streamed chunk by chunk for SSE.
"""

from __future__ import annotations

import argparse
import contextlib

import aiohttp
import uvloop
from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    args = parser.parse_args()
    sessions: list[aiohttp.ClientSession] = []

    async def start(_app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        sessions.append(aiohttp.ClientSession(connector=connector, auto_decompress=False))

    async def stop(_app: web.Application) -> None:
        await sessions[0].close()

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path = request.match_info["tail"]
        async with sessions[0].post(
            f"{args.upstream}/{path}", data=body, headers={"Content-Type": "application/json"}
        ) as upstream:
            content_type = upstream.headers.get("Content-Type", "application/json")
            if not content_type.startswith("text/event-stream"):
                return web.Response(body=await upstream.read(), status=upstream.status, content_type=content_type)
            response = web.StreamResponse(status=upstream.status, headers={"Content-Type": content_type})
            with contextlib.suppress(ConnectionResetError):  # wrk closes its connections mid-answer at the end
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            return response

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_post("/{tail:.*}", chat)
    app.router.add_get("/", health)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
