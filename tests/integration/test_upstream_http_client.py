"""The upstream HTTP client against real sockets on loopback: framing, reuse, stale connections, failures, TLS.

Each test runs a scripted server: for every request it reads the head and body, then plays the
bytes the test wrote for that request (or closes, or stays silent), so every framing and failure
an upstream can produce is exercised on a real connection.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tollway.providers.http_client import UpstreamHTTPError, UpstreamPool

Script = Callable[[int, bytes, asyncio.StreamWriter], Awaitable[bool]]


def ok(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def chunked(*parts: bytes) -> bytes:
    framed = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framed + b"0\r\n\r\n"


class ScriptedServer:
    """Counts connections and requests; `script(n, request, writer)` answers request n, False to hang up."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if self.tls else 'http'}://{'localhost' if self.tls else '127.0.0.1'}:{port}/v1/chat"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if not await self.script(len(self.requests), request, writer):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def exercise(script: Script, check: Callable[[UpstreamPool, ScriptedServer], Awaitable[None]]) -> None:
    """Run `check` against a fresh pool and a server playing `script`."""

    async def run() -> None:
        pool = UpstreamPool()
        try:
            async with ScriptedServer(script) as server:
                await check(pool, server)
        finally:
            await pool.close()

    asyncio.run(run())


async def post(pool: UpstreamPool, url: str, body: bytes = b'{"q":1}', timeout_s: float = 5.0) -> tuple[int, bytes]:
    response = await pool.request("POST", url, body, {"Content-Type": "application/json"}, timeout_s, 2.0)
    try:
        return response.status, await response.read()
    finally:
        response.release()


def test_content_length_answers_reuse_one_connection() -> None:
    async def script(n: int, request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok(f'{{"n":{n}}}'.encode()))
        return True

    async def check(pool: UpstreamPool, server: ScriptedServer) -> None:
        answers = [await post(pool, server.url) for _ in range(3)]
        assert answers == [(200, b'{"n":1}'), (200, b'{"n":2}'), (200, b'{"n":3}')]
        assert server.connections == 1
        first = server.requests[0]
        assert first.startswith(b"POST /v1/chat HTTP/1.1\r\n")
        assert b"\r\nContent-Length: 7\r\n" in first and first.endswith(b'{"q":1}')
        assert f"Host: 127.0.0.1:{server.url.split(':')[2].split('/')[0]}".encode() in first

    exercise(script, check)


def test_chunked_answer_read_line_by_line_across_chunk_boundaries() -> None:
    events = [b'data: {"a":1}\n\n', b'data: {"b":2}\n\n', b"data: [DONE]\n\n"]
    joined = b"".join(events)

    async def script(n: int, request: bytes, writer: asyncio.StreamWriter) -> bool:
        # split at awkward places: inside a line, right after a newline, one byte at a time
        writer.write(chunked(joined[:7], joined[7:16], joined[16:17], joined[17:]))
        return True

    async def check(pool: UpstreamPool, server: ScriptedServer) -> None:
        response = await pool.request("POST", server.url, b"{}", {}, 5.0, 2.0)
        lines = [line async for line in response.lines()]
        response.release()
        assert lines == [b'data: {"a":1}\n', b"\n", b'data: {"b":2}\n', b"\n", b"data: [DONE]\n", b"\n"]
        assert await post(pool, server.url) == (200, joined)
        assert server.connections == 1  # the chunked answer ended cleanly, so the connection was kept

    exercise(script, check)


@pytest.mark.parametrize(
    ("answer", "body", "hang_up"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it", b"all of it", True),  # framed by the close
        (ok(b"one") + ok(b"unasked"), b"one", False),  # bytes after the answer: the connection is not trusted
    ],
)
def test_answers_that_end_their_connection_leave_the_next_request_a_new_one(
    answer: bytes, body: bytes, hang_up: bool
) -> None:
    async def script(n: int, request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer)
        return not hang_up

    async def check(pool: UpstreamPool, server: ScriptedServer) -> None:
        assert await post(pool, server.url) == (200, body)
        assert await post(pool, server.url) == (200, body)
        assert server.connections == 2

    exercise(script, check)


def test_kept_alive_connection_closed_by_the_upstream_is_replaced_transparently() -> None:
    async def script(n: int, request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok(b"fine"))
        return False  # hang up after every answer although it promised keep-alive

    async def check(pool: UpstreamPool, server: ScriptedServer) -> None:
        assert await post(pool, server.url) == (200, b"fine")
        await asyncio.sleep(0.05)  # the close reaches the idle connection
        assert await post(pool, server.url) == (200, b"fine")
        assert server.connections == 2
        assert len(server.requests) == 2

    exercise(script, check)


def test_connection_lost_before_answering_is_retried_once_on_a_new_connection() -> None:
    async def script(n: int, request: bytes, writer: asyncio.StreamWriter) -> bool:
        if n == 2:
            return False  # the second request meets a connection the server drops without a byte
        writer.write(ok(b"fine"))
        return True

    async def check(pool: UpstreamPool, server: ScriptedServer) -> None:
        assert await post(pool, server.url) == (200, b"fine")
        assert await post(pool, server.url) == (200, b"fine")
        assert server.connections == 2 and len(server.requests) == 3

    exercise(script, check)


def test_answer_cut_mid_body_is_an_error_and_the_connection_is_not_reused() -> None:
    async def script(n: int, request: bytes, writer: asyncio.StreamWriter) -> bool:
        if n == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
            return False
        writer.write(ok(b"whole"))
        return True

    async def check(pool: UpstreamPool, server: ScriptedServer) -> None:
        with pytest.raises(UpstreamHTTPError, match="before the answer ended"):
            await post(pool, server.url)
        assert await post(pool, server.url) == (200, b"whole")
        assert server.connections == 2

    exercise(script, check)


def test_silent_upstream_times_out_and_unread_answers_close_their_connection() -> None:
    async def script(n: int, request: bytes, writer: asyncio.StreamWriter) -> bool:
        if n == 1:
            await asyncio.sleep(2)
            return False
        answer = ok(b"0123456789")
        if n == 2:  # the body follows later: released before it arrives, the answer is unfinished
            writer.write(answer[:-10])
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(answer[-10:])
            return True
        writer.write(answer)
        return True

    async def check(pool: UpstreamPool, server: ScriptedServer) -> None:
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await post(pool, server.url, timeout_s=0.2)
        assert asyncio.get_running_loop().time() - started < 1.0
        response = await pool.request("POST", server.url, b"{}", {}, 5.0, 2.0)
        response.release()  # not read to its end: the connection cannot carry another request
        assert await post(pool, server.url) == (200, b"0123456789")
        assert server.connections == 3

    exercise(script, check)


def test_refused_connection_and_garbage_answers_are_upstream_errors() -> None:
    async def script(n: int, request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SMTP ready\r\n\r\n")
        return True

    async def run() -> None:
        pool = UpstreamPool()
        async with ScriptedServer(script) as server:
            url = server.url
            with pytest.raises(UpstreamHTTPError, match="invalid HTTP"):
                await post(pool, url)
        with pytest.raises(UpstreamHTTPError, match="Cannot connect"):
            await post(pool, url)  # the server is gone: nothing listens on the port
        with pytest.raises(UpstreamHTTPError, match="line break"):
            await pool.request("POST", url, b"", {"X-Evil": "a\r\nInjected: yes"}, 5.0, 2.0)
        await pool.close()

    asyncio.run(run())


def test_large_answer_read_slowly_arrives_whole() -> None:
    line = b"data: " + b"x" * 994 + b"\n"  # 1,001 bytes
    count = 8_000  # 8 MB: well past the point where reading pauses

    async def script(n: int, request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok(line * count))
        return True

    async def check(pool: UpstreamPool, server: ScriptedServer) -> None:
        response = await pool.request("POST", server.url, b"{}", {}, 30.0, 2.0)
        seen = 0
        async for got in response.lines():
            assert got == line
            seen += 1
            if seen % 500 == 0:
                await asyncio.sleep(0.01)  # a slow client downstream
        response.release()
        assert seen == count
        assert await post(pool, server.url) == (200, line * count)
        assert server.connections == 1

    exercise(script, check)


def test_https_upstream(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))

    async def script(n: int, request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok(b"secret"))
        return True

    async def run() -> None:
        async with ScriptedServer(script, tls=server_tls) as server:
            pool = UpstreamPool(tls=client_tls)
            assert await post(pool, server.url) == (200, b"secret")
            assert await post(pool, server.url) == (200, b"secret")
            assert server.connections == 1
            await pool.close()
            untrusting = UpstreamPool()  # the system's roots do not know this certificate
            with pytest.raises(UpstreamHTTPError, match="Cannot connect"):
                await post(untrusting, server.url)
            await untrusting.close()

    asyncio.run(run())


def test_a_stream_read_up_to_its_last_event_gives_its_connection_back() -> None:
    async def script(n: int, request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(chunked(b"data: one\n\n", b"data: [DONE]\n\n"))
        return True

    async def check(pool: UpstreamPool, server: ScriptedServer) -> None:
        for _ in range(3):
            response = await pool.request("POST", server.url, b"{}", {}, 5.0, 2.0)
            async for line in response.lines():
                if line.startswith(b"data: [DONE]"):
                    break  # as the adapters do: the blank line after it stays unread
            await asyncio.sleep(0.01)  # the end of the chunked body arrives
            response.release()
        assert server.connections == 1

    exercise(script, check)
