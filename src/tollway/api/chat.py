"""POST /api/v1/chat/completions: streamed and not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from tollway.api.admission import admit_chat_request
from tollway.api.context import services_of
from tollway.api.http import json_response
from tollway.gateway.stream import KEEPALIVE, StreamRelay
from tollway.providers.base import BEFORE_UPSTREAM_WAIT

_CLIENT_GONE = (ConnectionResetError, ConnectionError, asyncio.CancelledError)
_MAX_HELD_EVENTS = 64


class _ClientGone(BaseException):
    """The client went away while held events were written. A BaseException, because the write may happen
    inside the provider's stream (before it waits): the provider guard and the relay catch Exception and
    would bill a client leaving as a broken upstream instead of a cancellation."""


async def chat_completions(request: web.Request) -> web.StreamResponse:
    admitted = await admit_chat_request(request)
    services, context, headers = admitted.services, admitted.context, admitted.headers
    if not admitted.body.stream:
        return json_response(await services.gateway.complete(context), headers=headers)

    candidate, upstream, first = await services.gateway.open_stream(context)
    relay = StreamRelay(services.gateway, context, candidate, upstream, first)
    return await send_stream(request, relay, relay.events(), headers)


async def send_stream(
    request: web.Request, relay: StreamRelay, events: AsyncIterator[bytes], headers: dict[str, str]
) -> web.StreamResponse:
    """Write SSE events; if the client goes away, stop the upstream and bill what was produced."""
    services = services_of(request)
    response = _EventStream(
        status=200,
        headers={
            **headers,
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        },
    )
    keepalive: _KeepAlive | None = None
    pending: list[bytes] = []

    async def flush() -> None:
        if pending:
            data = b"".join(pending)
            pending.clear()
            try:
                await response.write(data)
            except ConnectionError as exc:
                raise _ClientGone from exc

    # Events are held while the provider has more at hand and written when it is about to wait:
    # a burst becomes one write (one system call, one chunk) instead of one per event.
    flush_before_wait = BEFORE_UPSTREAM_WAIT.set(flush)
    try:
        await response.prepare(request)
        keepalive = _KeepAlive(response, services.settings.keepalive_interval_seconds)
        async for data in events:
            pending.append(data)
            if len(pending) >= _MAX_HELD_EVENTS:
                await flush()
    except _ClientGone:
        await asyncio.shield(relay.abort())
        return response
    except BaseException:
        # The client went away (or writing failed): bill what was produced; a settled relay ignores this.
        await asyncio.shield(relay.abort())
        raise
    finally:
        BEFORE_UPSTREAM_WAIT.reset(flush_before_wait)
        if keepalive is not None:
            keepalive.cancel()
    # What is held leaves with the end of the body (and the headers, if nothing was written yet): a stream
    # that arrived in one burst costs one write.
    with contextlib.suppress(*_CLIENT_GONE):
        await response.write_eof(b"".join(pending))
    return response


class _EventStream(web.StreamResponse):
    """The headers leave with the first events rather than in a write of their own: the first chunk is
    already in hand when the answer starts, and the writer flushes before the upstream is waited on, so
    nothing is delayed by it (a stream that arrives in one burst is one write)."""

    _send_headers_immediately = False


class _KeepAlive:
    """Comment lines every interval, so proxies and clients do not time a long stream out. A timer, not a
    task per stream: most streams end before it ever fires."""

    def __init__(self, response: web.StreamResponse, interval_s: float) -> None:
        self._response = response
        self._interval_s = interval_s
        self._loop = asyncio.get_running_loop()
        self._writing: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(interval_s, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._writing = self._loop.create_task(self._write())

    async def _write(self) -> None:
        with contextlib.suppress(*_CLIENT_GONE):
            await self._response.write(KEEPALIVE)
            self._timer = self._loop.call_later(self._interval_s, self._fire)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._writing is not None:
            self._writing.cancel()
