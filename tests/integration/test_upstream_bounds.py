"""Upstreams are bounded: answer size, line size, per-phase timeouts; the gateway's memory stays near the cap.

A loopback upstream plays the hostile or broken answers; the gateway runs as a real process so its
resident memory can be read from /proc.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from tests.fakes.loopback import LoopbackServer
from tests.support import GatewayServer, nanos, start_gateway, write_config

MIB = 1024 * 1024
MAX_LINE = 4 * MIB  # the gateway under test runs with a 4 MiB line bound (16 MiB by default)
MAX_RESPONSE = 32 * MIB  # the default
HUGE = 1536 * MIB


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def delta(content: str) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": content}}]}


class HostileUpstream(LoopbackServer):
    """Answers by upstream model name: huge bodies, long lines, slow but live streams, silence."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes_sent = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        handler = getattr(self, "_" + body["model"].replace("-", "_"))
        response: web.StreamResponse = await handler(request)
        return response

    async def _huge(self, request: web.Request, status: int = 200) -> web.StreamResponse:
        """A 1.5 GB JSON answer, written in 1 MiB pieces until the reader hangs up."""
        response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
        response.content_length = HUGE
        await response.prepare(request)
        piece = b" " * MIB
        try:
            await response.write(b'{"choices": [{"message": {"content": "')
            for _ in range(HUGE // MIB - 1):
                await response.write(piece)
                self.bytes_sent += len(piece)
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            pass
        return response

    async def _huge_error(self, request: web.Request) -> web.StreamResponse:
        return await self._huge(request, status=500)

    async def _stream(self, request: web.Request, lines: list[tuple[float, bytes]]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for delay_s, line in lines:
                if delay_s:
                    await asyncio.sleep(delay_s)
                await response.write(line)
        except (ConnectionResetError, ConnectionError):
            pass
        return response

    def _done(self, completion_tokens: int) -> list[tuple[float, bytes]]:
        usage = {"prompt_tokens": 3, "completion_tokens": completion_tokens, "total_tokens": 3 + completion_tokens}
        end = {"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": usage}
        return [
            (0, event({**delta(""), "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})),
            (0, event(end)),
            (0, b"data: [DONE]\n\n"),
        ]

    async def _long_line(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, [(0, event(delta("x" * (2 * MIB)))), *self._done(1)])

    async def _too_long_line(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, [(0, event(delta("a"))), (0, b"data: " + b"y" * (MAX_LINE + MIB))])

    async def _slow_live(self, request: web.Request) -> web.StreamResponse:
        # 12 tokens 0.25 s apart: 3 s in all, longer than the 1.5 s first-byte and 1 s idle timeouts.
        return await self._stream(request, [(0.25, event(delta(f"t{i} "))) for i in range(12)] + self._done(12))

    async def _goes_silent(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, [(0, event(delta("hello"))), (6, event(delta("late")))])

    async def _never_answers(self, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(6)
        return web.Response(body=b"{}")

    async def _secret_error(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=500, body=b'{"error": "db at internal-db.corp.example:5432 refused, token sk-live-SECRET"}'
        )


MODELS = [
    "huge",
    "huge-error",
    "long-line",
    "too-long-line",
    "slow-live",
    "goes-silent",
    "never-answers",
    "secret-error",
]


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileUpstream]:
    server = HostileUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bounded_gateway(hostile: HostileUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("bounds")
    models = [
        {
            "id": f"hostile/{name}",
            "endpoints": [
                {
                    "provider": "hostile",
                    "upstream_model": name,
                    "pricing": {"prompt": "0.000001", "completion": "0.000002"},
                }
            ],
        }
        for name in MODELS
    ]
    config = write_config(
        directory / f"config-{secrets.token_hex(3)}.yaml",
        "http://127.0.0.1:9/v1",
        {
            "providers": [
                {"name": "hostile", "kind": "openai", "base_url": hostile.base_url + "/v1", "display_name": "Hostile"}
            ],
            "models": models,
        },
    )
    server = start_gateway(
        f"sqlite:///{directory / 'bounds.db'}",
        config,
        directory,
        env={
            "TOLLWAY_MAX_SSE_LINE_BYTES": str(MAX_LINE),
            "TOLLWAY_UPSTREAM_FIRST_BYTE_TIMEOUT_SECONDS": "1.5",
            "TOLLWAY_UPSTREAM_IDLE_TIMEOUT_SECONDS": "1",
        },
    )
    yield server
    server.stop()


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def ask(gateway: GatewayServer, key: str, model: str, stream: bool = False) -> httpx.Response:
    body = {"model": f"hostile/{model}", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return httpx.post(
        gateway.api + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def assert_nothing_held_or_charged(gateway: GatewayServer, account_id: str, usd: str = "10") -> None:
    balance = gateway.balance(account_id)
    assert nanos(balance["held_in_flight"]) == 0
    assert nanos(balance["balance"]) == nanos(usd)


def test_a_huge_answer_is_a_clean_502_and_memory_stays_near_the_cap(
    bounded_gateway: GatewayServer, hostile: HostileUpstream
) -> None:
    account = bounded_gateway.new_account("10")
    pid = bounded_gateway.process.pid
    before = memory_kib(pid)
    response = ask(bounded_gateway, account.key, "huge")
    after = memory_kib(pid)
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["metadata"]["provider_name"] == "Hostile"
    assert "too large" in error["message"]
    # The gateway stopped reading soon after the cap; the upstream did not get to send its 1.5 GB.
    assert hostile.bytes_sent < 256 * MIB
    risen_mib = (after["VmHWM"] - before["VmRSS"]) / 1024
    print(f"RSS before {before['VmRSS'] / 1024:.0f} MiB, peak after {after['VmHWM'] / 1024:.0f} MiB")
    assert risen_mib <= MAX_RESPONSE / MIB + 64, f"RSS rose {risen_mib:.0f} MiB"
    assert_nothing_held_or_charged(bounded_gateway, account.id)
    # The gateway is still serving.
    assert ask(bounded_gateway, account.key, "long-line", stream=True).status_code == 200


def test_a_2_mib_stream_line_flows_whole(bounded_gateway: GatewayServer) -> None:
    account = bounded_gateway.new_account("10")
    response = ask(bounded_gateway, account.key, "long-line", stream=True)
    assert response.status_code == 200
    content = ""
    for line in response.text.splitlines():
        if line.startswith("data: {"):
            payload = orjson.loads(line[6:])
            for choice in payload.get("choices", []):
                content += choice.get("delta", {}).get("content") or ""
    assert content == "x" * (2 * MIB)


def test_a_line_over_the_bound_ends_the_stream_with_an_error_and_releases_the_hold(
    bounded_gateway: GatewayServer,
) -> None:
    account = bounded_gateway.new_account("10")
    response = ask(bounded_gateway, account.key, "too-long-line", stream=True)
    assert "too large" in response.text
    assert "[DONE]" not in response.text or '"error"' in response.text
    balance = bounded_gateway.balance(account.id)
    assert nanos(balance["held_in_flight"]) == 0


def test_a_stream_longer_than_the_first_byte_timeout_kept_alive_by_its_tokens_completes(
    bounded_gateway: GatewayServer,
) -> None:
    account = bounded_gateway.new_account("10")
    response = ask(bounded_gateway, account.key, "slow-live", stream=True)
    assert response.status_code == 200
    assert "t11" in response.text and "data: [DONE]" in response.text
    assert '"error"' not in response.text
    balance = bounded_gateway.balance(account.id)
    assert nanos(balance["held_in_flight"]) == 0
    assert nanos(balance["balance"]) == nanos("10") - (3 * 1000 + 12 * 2000)


def test_silence_mid_stream_and_no_first_byte_are_timeouts_that_release_the_hold(
    bounded_gateway: GatewayServer,
) -> None:
    account = bounded_gateway.new_account("10")
    silent = ask(bounded_gateway, account.key, "goes-silent", stream=True)
    assert "hello" in silent.text and "late" not in silent.text
    assert "timed out" in silent.text
    never = ask(bounded_gateway, account.key, "never-answers")
    assert never.status_code in (408, 502, 504), never.text
    assert never.json()["error"]["metadata"]["provider_name"] == "Hostile"
    # Nothing stays held; at most what was delivered before the silence ("hello") is billed.
    balance = bounded_gateway.balance(account.id)
    assert nanos(balance["held_in_flight"]) == 0
    assert nanos("10") - nanos("0.0001") < nanos(balance["balance"]) <= nanos("10")


def test_an_upstream_error_body_and_address_stay_out_of_the_answer(
    bounded_gateway: GatewayServer, hostile: HostileUpstream
) -> None:
    account = bounded_gateway.new_account("10")
    response = ask(bounded_gateway, account.key, "secret-error")
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["metadata"]["provider_name"] == "Hostile"
    assert error["metadata"]["upstream_status"] == 500
    for secret in ("SECRET", "internal-db", "127.0.0.1", str(hostile.port), "raw"):
        assert secret not in response.text
    # The operator still sees what the upstream said, in the log.
    assert "internal-db.corp.example" in bounded_gateway.log_path.read_text()
    assert_nothing_held_or_charged(bounded_gateway, account.id)


def test_a_huge_error_body_is_read_only_a_little(bounded_gateway: GatewayServer, hostile: HostileUpstream) -> None:
    account = bounded_gateway.new_account("10")
    hostile.bytes_sent = 0
    response = ask(bounded_gateway, account.key, "huge-error")
    assert response.status_code == 502, response.text
    assert response.json()["error"]["metadata"]["provider_name"] == "Hostile"
    assert hostile.bytes_sent < 64 * MIB
    assert_nothing_held_or_charged(bounded_gateway, account.id)
