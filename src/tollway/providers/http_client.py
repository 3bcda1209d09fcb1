"""A lean keep-alive HTTP/1.1 client for upstream calls: an asyncio protocol around httptools' parser.

The upstream call is on every request's path, and aiohttp's client spends about 0.25 ms of CPU on it on
the bench machine (request and response objects, multidict headers, trace hooks, one timer per phase);
this client spends about a third of that. It does what LLM APIs need and no more: POST or GET with a
byte body, answers framed by Content-Length, chunked encoding or connection close, bodies read whole or
line by line (server-sent events), TLS, and one pool of idle connections per origin.

Every answer is bounded: a body read whole stops at `max_response_bytes`, a server-sent line at
`max_line_bytes` (both raise `UpstreamTooLarge` and close the connection, so memory stays near the cap),
and time is bounded per phase, never as a total: connecting, waiting for the first byte of the
answer, and silence between bytes (a live stream may run for hours as long as bytes keep coming).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import cast
from urllib.parse import urlsplit

import httptools

from tollway.providers.base import before_upstream_wait

_PAUSE_AT = 1 << 20  # buffered answer bytes before the socket stops being read (slow consumer)
_RESUME_AT = 1 << 16
MAX_RESPONSE_BYTES = 32 << 20  # defaults; the settings pass their own
MAX_LINE_BYTES = 16 << 20
IDLE_TIMEOUT_S = 300.0
FIRST_BYTE_TIMEOUT_S = 600.0


class UpstreamHTTPError(Exception):
    """The connection failed or broke, or the upstream spoke something that is not HTTP/1.1."""


class UpstreamTooLarge(UpstreamHTTPError):
    """The answer passed a size bound: the body read whole or one server-sent line."""


class _StaleConnection(UpstreamHTTPError):
    """A kept-alive connection closed before any byte of the answer: the request never reached a handler."""


class _Origin:
    __slots__ = ("host", "host_header", "idle", "port", "server_hostname", "ssl")

    def __init__(self, scheme: str, host: str, port: int | None, tls: ssl.SSLContext | None) -> None:
        default_port = 443 if scheme == "https" else 80
        self.host = host
        self.port = port or default_port
        self.ssl: ssl.SSLContext | None = tls if scheme == "https" else None
        self.server_hostname = host if scheme == "https" else None
        shown = f"[{host}]" if ":" in host else host
        self.host_header = shown if self.port == default_port else f"{shown}:{self.port}"
        self.idle: list[tuple[float, _Connection]] = []


class UpstreamResponse:
    """One answer: status and headers once received, the body as it arrives."""

    __slots__ = (
        "_buffer",
        "_complete",
        "_connection",
        "_error",
        "_got_headers",
        "_headers_ready",
        "_idle_s",
        "_keep_alive",
        "_last_byte_at",
        "_loop",
        "_max_body",
        "_max_line",
        "_pause_at",
        "_pool",
        "_reading_whole",
        "_received_any",
        "_released",
        "_timer",
        "_waiter",
        "headers",
        "status",
    )

    def __init__(
        self, connection: _Connection, pool: UpstreamPool, loop: asyncio.AbstractEventLoop, idle_s: float
    ) -> None:
        self._connection = connection
        self._pool = pool
        self._loop = loop
        self._buffer = bytearray()
        self._complete = False
        self._keep_alive = False
        self._pause_at = _PAUSE_AT
        self._error: BaseException | None = None
        self._headers_ready: asyncio.Future[None] = loop.create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._received_any = False
        self._got_headers = False
        self._timer: asyncio.TimerHandle | None = None
        self._idle_s = idle_s
        self._last_byte_at = 0.0
        self._max_body = pool.max_response_bytes
        self._max_line = pool.max_line_bytes
        self._reading_whole = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self._released = False

    # ---- fed by the connection ----

    def _on_header(self, name: bytes, value: bytes) -> None:
        if self._complete:  # bytes after the answer: the connection cannot be trusted with another
            self._keep_alive = False
            return
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def _on_headers_complete(self, status: int) -> None:
        self.status = status
        self._got_headers = True
        if not self._headers_ready.done():
            self._headers_ready.set_result(None)

    def _on_body(self, data: bytes) -> None:
        if self._complete:
            self._keep_alive = False
            return
        self._buffer += data
        if len(self._buffer) > self._pause_at:
            if self._reading_whole:  # read(): the answer passed its bound, stop before memory does
                self._buffer.clear()
                self._fail(UpstreamTooLarge(f"Upstream answer is larger than {self._max_body} bytes"))
                self._connection.abort()
                return
            self._connection.pause()
        self._wake()

    def _on_complete(self, keep_alive: bool) -> None:
        if self._complete:
            self._keep_alive = False
            return
        self._complete = True
        self._keep_alive = keep_alive
        self._wake()

    def _on_bytes(self) -> None:
        self._last_byte_at = self._loop.time()
        if not self._received_any:  # the first byte: from now on the bound is silence between bytes
            self._received_any = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._loop.call_at(self._last_byte_at + self._idle_s, self._check_silence)

    def _fail(self, error: BaseException) -> None:
        if self._complete or self._error is not None:
            return
        self._error = error
        if not self._headers_ready.done():
            self._headers_ready.set_exception(error)
            self._headers_ready.exception()  # retrieved here: the caller may never await it
        self._wake()

    def _connection_lost(self) -> None:
        if self._complete:
            return
        if self._got_headers and self._framed_by_close():
            self._on_complete(keep_alive=False)
        elif self._connection.reused and not self._received_any:
            self._fail(_StaleConnection("Upstream closed a kept-alive connection"))
        else:
            self._fail(UpstreamHTTPError("Upstream closed the connection before the answer ended"))

    def _framed_by_close(self) -> bool:
        return "content-length" not in self.headers and "chunked" not in self.headers.get("transfer-encoding", "")

    def _check_silence(self) -> None:
        """The phase timer fired: time out if the upstream stayed silent, otherwise look again later."""
        self._timer = None
        if self._complete or self._error is not None:
            return
        now = self._loop.time()
        if self._received_any:
            if self._connection.paused:  # our reader is slow, not the upstream: that is no silence
                self._last_byte_at = now
            due = self._last_byte_at + self._idle_s
            if due > now:
                self._timer = self._loop.call_at(due, self._check_silence)
                return
        self._fail(TimeoutError())
        self._connection.abort()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ---- used by the caller ----

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _take(self, size: int) -> bytes:
        if size == len(self._buffer):  # one copy, not two, for a whole body
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
        if len(self._buffer) < _RESUME_AT:
            self._connection.resume()
        return data

    async def read(self, limit_bytes: int | None = None) -> bytes:
        """The whole body, at most `max_response_bytes` or `limit_bytes` if smaller (an error body needs
        little); the socket is not paused for it below that."""
        self._reading_whole = True
        if limit_bytes is not None and limit_bytes < self._max_body:
            self._max_body = limit_bytes
        self._pause_at = self._max_body
        if len(self._buffer) > self._max_body:
            self._buffer.clear()
            self._fail(UpstreamTooLarge(f"Upstream answer is larger than {self._max_body} bytes"))
            self._connection.abort()
        self._connection.resume()
        while not self._complete:
            await self._wait()
        return self._take(len(self._buffer))

    def lines(self) -> AsyncIterator[bytes]:
        """The body line by line, each with its b"\\n" (the last may lack it): server-sent events."""
        return self._pieces(_line_end, 0, "a line")

    def event_runs(self) -> AsyncIterator[bytes]:
        """The body as runs of whole server-sent events: everything received up to its last blank line, in
        one piece (a burst of events is one run, not one item per line); the last run may lack the blank
        line."""
        return self._pieces(_events_end, 2, "an event")

    async def _pieces(self, end_of: Callable[[bytearray, int], int], straddle: int, unit: str) -> AsyncIterator[bytes]:
        """The body cut where `end_of` says a piece ends (0: not yet), each piece as soon as it is whole; one
        longer than `max_line_bytes` raises UpstreamTooLarge. `straddle`: bytes of a separator that may
        already have arrived when the rest has not (searched again with what comes next)."""
        scanned = 0
        while True:
            end = end_of(self._buffer, scanned)
            if end:
                scanned = 0
                if self._pause_at != _PAUSE_AT:
                    self._pause_at = _PAUSE_AT
                yield self._take(end)
                continue
            if self._complete:
                if self._buffer:
                    yield self._take(len(self._buffer))
                return
            if len(self._buffer) > self._max_line:
                raise UpstreamTooLarge(f"Upstream sent {unit} longer than {self._max_line} bytes")
            seen = len(self._buffer)
            scanned = max(seen - straddle, 0)
            if seen > _RESUME_AT:
                # A long piece: keep reading (a paused socket would never complete it), up to the bound.
                self._pause_at = self._max_line
                self._connection.resume()
            await before_upstream_wait()
            if len(self._buffer) == seen and not self._complete:
                await self._wait()

    def release(self) -> None:
        """Give the connection back if the answer was read to its end; otherwise close it."""
        if self._released:
            return
        self._released = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._complete and self._keep_alive and self._error is None:
            # Unread bytes of a finished answer (a stream's blank line after [DONE]) are just dropped.
            self._buffer.clear()
            self._pool._give_back(self._connection)
        else:
            self._connection.abort()


def _line_end(buffer: bytearray, start: int) -> int:
    """Where the first complete line in the buffer ends (after its b"\\n"), 0 if none."""
    return buffer.find(b"\n", start) + 1


def _events_end(buffer: bytearray, start: int) -> int:
    """Where the last complete event in the buffer ends (after its blank line, LF or CRLF), 0 if none."""
    lf = buffer.rfind(b"\n\n", start)
    crlf = buffer.rfind(b"\n\r\n", start)
    return max(lf + 2 if lf >= 0 else 0, crlf + 3 if crlf >= 0 else 0)


class _Connection(asyncio.Protocol):
    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.response: UpstreamResponse | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.reused = False
        self.lost = False
        self.paused = False

    # ---- asyncio protocol ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes nobody asked for: the connection cannot be trusted any more
            self.abort()
            return
        response._on_bytes()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response._fail(UpstreamHTTPError(f"Upstream sent invalid HTTP: {exc}"))
            self.abort()

    def eof_received(self) -> bool | None:
        return None  # close the transport: HTTP/1.1 has no half-closed use here

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.response is not None:
            self.response._connection_lost()

    # ---- httptools callbacks ----

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is not None:
            self.response._on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.response is not None:
            self.response._on_headers_complete(self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response._on_body(body)

    def on_message_complete(self) -> None:
        if self.response is not None:
            self.response._on_complete(self.parser.should_keep_alive())

    # ---- used by the pool ----

    def send(self, data: list[bytes], response: UpstreamResponse) -> None:
        assert self.transport is not None
        self.response = response
        self.transport.writelines(data)

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.lost:
            self.paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()


class UpstreamPool:
    """Idle kept-alive connections per origin; one request at a time on each connection."""

    def __init__(
        self,
        keepalive_s: float = 60.0,
        tls: ssl.SSLContext | None = None,
        *,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_line_bytes: int = MAX_LINE_BYTES,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        first_byte_timeout_s: float = FIRST_BYTE_TIMEOUT_S,
    ) -> None:
        self.max_response_bytes = max_response_bytes
        self.first_byte_timeout_s = first_byte_timeout_s  # for callers without a timeout of their own
        self.max_line_bytes = max_line_bytes
        self.idle_timeout_s = idle_timeout_s
        self._keepalive_s = keepalive_s
        self._origins: dict[str, _Origin] = {}
        self._tls = tls  # the system's roots are loaded on the first https origin, not at start-up
        self._closed = False

    def _origin(self, url: str) -> tuple[_Origin, str]:
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        origin = self._origins.get(key)
        if origin is None:
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise UpstreamHTTPError(f"Not an http(s) URL: {url!r}")
            if parts.scheme == "https" and self._tls is None:
                self._tls = ssl.create_default_context()
            origin = _Origin(parts.scheme, parts.hostname, parts.port, self._tls)
            self._origins[key] = origin
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return origin, target

    async def request(
        self,
        method: str,
        url: str,
        body: bytes,
        headers: dict[str, str],
        timeout_s: float,
        connect_timeout_s: float,
        idle_timeout_s: float | None = None,
    ) -> UpstreamResponse:
        """Send and wait for the status line and headers; the body is read from the response.

        `timeout_s` bounds the wait for the answer's first byte, `idle_timeout_s` (the pool's by default)
        each silence after it; there is no total deadline. A kept-alive connection the upstream had closed
        while idle is replaced once, transparently.
        """
        if self._closed:
            raise UpstreamHTTPError("The upstream pool is closed")
        loop = asyncio.get_running_loop()
        idle_s = self.idle_timeout_s if idle_timeout_s is None else idle_timeout_s
        origin, target = self._origin(url)
        head = [f"{method} {target} HTTP/1.1\r\nHost: {origin.host_header}\r\nContent-Length: {len(body)}\r\n"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                raise UpstreamHTTPError(f"Header {name} holds a line break")
            head.append(f"{name}: {value}\r\n")
        head.append("\r\n")
        message = ["".join(head).encode("latin-1"), body]
        for attempt in range(2):
            connection = await self._acquire(origin, loop, connect_timeout_s)
            response = UpstreamResponse(connection, self, loop, idle_s)
            response._timer = loop.call_later(timeout_s, response._check_silence)
            connection.send(message, response)
            try:
                await response._headers_ready
            except _StaleConnection:
                response.release()
                if attempt == 0:
                    continue
                raise UpstreamHTTPError("Upstream closed the connection before answering") from None
            except BaseException:
                response.release()
                raise
            return response
        raise AssertionError("unreachable")

    async def _acquire(self, origin: _Origin, loop: asyncio.AbstractEventLoop, connect_s: float) -> _Connection:
        now = time.monotonic()
        while origin.idle:
            idle_since, connection = origin.idle.pop()
            if connection.lost or now - idle_since > self._keepalive_s:
                connection.abort()
                continue
            connection.reused = True
            return connection
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(origin),
                    origin.host,
                    origin.port,
                    ssl=origin.ssl,
                    server_hostname=origin.server_hostname,
                ),
                max(connect_s, 0.001),
            )
        except TimeoutError:  # an OSError too, but it must stay a timeout (408), not a failed connection
            raise
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamHTTPError(f"Cannot connect to {origin.host}:{origin.port}: {exc}") from exc
        return protocol

    def _give_back(self, connection: _Connection) -> None:
        connection.response = None
        if self._closed or connection.lost:
            connection.abort()
            return
        connection.origin.idle.append((time.monotonic(), connection))

    async def close(self) -> None:
        self._closed = True
        for origin in self._origins.values():
            for _, connection in origin.idle:
                connection.abort()
            origin.idle.clear()
