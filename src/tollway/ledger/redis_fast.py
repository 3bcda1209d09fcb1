"""A lean runner for the hot-path Lua scripts: reserve and settle a hold, acquire and correct limits.

redis-py spends about 40 µs of CPU per call here (a pool checkout, a retry wrapper, a timeout context,
command packing in Python); these scripts run on every paid request (two where the limiter rides in
the book's scripts, four where it does not), so in Redis mode that was a third of the gateway's CPU.
This runner keeps one connection and pipelines every call on it (Redis answers in order, so each reply
resolves the oldest waiting call), writes every command queued during one turn of the event loop in one
system call, packs commands in one join and parses replies with hiredis.

It behaves as `redis_loader.connect`'s client does where the money rules depend on it: errors are
redis-py's exception classes (so every caller's `except RedisError` still applies), a dropped
connection is retried once on a new connection, a reply slower than the timeout fails with
`TimeoutError` and is not retried, and a script Redis does not know (after a restart or SCRIPT FLUSH)
is sent in full once. A reply that timed out leaves the connection unusable (later replies would
answer the wrong calls), so it is closed and every call waiting on it fails too.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from collections.abc import Awaitable, Sequence
from typing import Any, cast

import hiredis
import redis.asyncio as redis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

_TIMEOUT_S = 2.0


def _encode(arguments: Sequence[Any]) -> bytes:
    parts = [b"*%d\r\n" % len(arguments)]
    for argument in arguments:
        if isinstance(argument, bytes):
            value = argument
        elif isinstance(argument, str):
            value = argument.encode()
        else:
            value = str(argument).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(value), value))
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    def __init__(self, timeout_s: float) -> None:
        self._reader = hiredis.Reader(replyError=ResponseError)
        self._waiting: collections.deque[tuple[asyncio.Future[Any], asyncio.TimerHandle]] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self._timeout_s = timeout_s
        self._loop = asyncio.get_running_loop()
        self._outgoing: list[bytes] = []
        self.closed = False
        self.scripts: set[str] = set()  # SHAs this connection sent in full: Redis holds them until it restarts

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while self._waiting:
            reply = self._reader.gets()
            if reply is False:
                return
            future, timer = self._waiting.popleft()
            timer.cancel()
            if future.done():
                continue
            if isinstance(reply, ResponseError):
                message = str(reply)
                future.set_exception(NoScriptError(message) if message.startswith("NOSCRIPT") else reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"Connection to Redis closed: {exc or 'by the server'}"))

    def _fail(self, error: Exception) -> None:
        self.closed = True
        self._outgoing.clear()
        while self._waiting:
            future, timer = self._waiting.popleft()
            timer.cancel()
            if not future.done():
                future.set_exception(error)
        if self._transport is not None:
            self._transport.abort()

    def _timed_out(self) -> None:
        self._fail(RedisTimeoutError("Timeout reading from Redis"))

    def request(self, command: bytes, now: bool = False) -> asyncio.Future[Any]:
        """Queue `command` for this turn's write, or with `now` write it (and whatever is queued) at once."""
        if self.closed or self._transport is None or self._transport.is_closing():
            raise RedisConnectionError("Connection to Redis closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._waiting.append((future, self._loop.call_later(self._timeout_s, self._timed_out)))
        if not self._outgoing and not now:
            self._loop.call_soon(self._send)
        self._outgoing.append(command)
        if now:
            self._send()  # a turn's write already scheduled finds nothing left and writes nothing
        return future

    def _send(self) -> None:
        """Every command queued during one turn of the loop leaves in one write (one system call)."""
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        if data and not self.closed and self._transport is not None:
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self.closed = True


class ScriptRunner:
    """Runs registered scripts over one pipelined connection, opened on first use and after each loss."""

    def __init__(
        self,
        host: str,
        port: int,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = _TIMEOUT_S,
    ) -> None:
        self._address = (host, port)
        self._timeout_s = timeout_s
        self._setup: list[bytes] = []
        if password is not None:
            self._setup.append(_encode(["AUTH", username, password] if username else ["AUTH", password]))
        if db:
            self._setup.append(_encode(["SELECT", db]))
        self._connection: _Connection | None = None
        self._opening = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, timeout_s: float = _TIMEOUT_S) -> ScriptRunner | None:
        """A runner for a plain TCP Redis URL; None for TLS or a Unix socket (redis-py serves those)."""
        options = parse_url(url)
        if "connection_class" in options or "path" in options or "host" not in options:
            return None
        return cls(
            str(options["host"]),
            int(options.get("port", 6379)),
            int(options.get("db", 0)),
            options.get("username"),
            options.get("password"),
            timeout_s,
        )

    async def _open(self) -> _Connection:
        async with self._opening:
            if self._connection is not None and not self._connection.closed:
                return self._connection
            loop = asyncio.get_running_loop()
            try:
                _transport, connection = await asyncio.wait_for(
                    loop.create_connection(lambda: _Connection(self._timeout_s), *self._address), self._timeout_s
                )
            except (OSError, TimeoutError) as exc:
                raise RedisConnectionError(f"Error connecting to Redis at {self._address}: {exc}") from exc
            replies = [connection.request(command) for command in self._setup]
            for reply in replies:
                await reply
            self._connection = connection
            return connection

    def send_script_now(
        self, sha: str, body: str, keys: Sequence[Any], args: Sequence[Any]
    ) -> asyncio.Future[Any] | None:
        """Write a script call at once on the open connection and return its reply's future; None when none is open.

        The first call of a script on a connection carries its body (EVAL): a NOSCRIPT answer would need a
        second write, which would come only after the caller went on.
        """
        connection = self._connection
        if connection is None or connection.closed:
            return None
        known = sha in connection.scripts
        command = ["EVALSHA", sha] if known else ["EVAL", body]
        try:
            future = connection.request(_encode([*command, len(keys), *keys, *args]), now=True)
        except RedisConnectionError:
            return None
        connection.scripts.add(sha)
        return future

    async def call(self, arguments: Sequence[Any], attempts: int = 2) -> Any:
        command = _encode(arguments)
        for attempt in range(attempts):  # one retry on a dropped connection, as redis_loader.connect's client does
            connection = self._connection
            if connection is None or connection.closed:
                connection = await self._open()
            try:
                return await connection.request(command)
            except RedisConnectionError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def register_script(self, body: str) -> FastScript:
        return FastScript(self, body)

    async def aclose(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class FastScript:
    """Called as redis-py's Script is: `await script(keys=[...], args=[...])`."""

    def __init__(self, runner: ScriptRunner, body: str) -> None:
        self._runner = runner
        self._body = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = (), attempts: int = 2) -> Any:
        try:
            return await self._runner.call(["EVALSHA", self.sha, len(keys), *keys, *args], attempts)
        except NoScriptError:
            return await self._runner.call(["EVAL", self._body, len(keys), *keys, *args])

    def begin(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Awaitable[Any]:
        """Write the call now, before the caller's next write reaches anyone; await the returned reply later.

        With no connection open, nothing can be written yet: the call then goes out when awaited.
        """
        sent = self._runner.send_script_now(self.sha, self._body, keys, args)
        if sent is None:
            return self(keys=keys, args=args)
        return self._reply(sent, keys, args)

    async def _reply(self, sent: asyncio.Future[Any], keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await sent
        except NoScriptError:
            return await self._runner.call(["EVAL", self._body, len(keys), *keys, *args])
        except RedisConnectionError:  # dropped before the reply: the one retry, on a new connection
            return await self(keys=keys, args=args, attempts=1)


def script_for(client: redis.Redis, runner: ScriptRunner | None, body: str) -> Any:
    """The fast runner's script where there is one, else redis-py's (TLS, Unix sockets)."""
    return runner.register_script(body) if runner is not None else client.register_script(body)
