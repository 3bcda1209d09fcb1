"""A client that goes away mid-stream: the upstream is cancelled and the tokens produced are billed."""

from __future__ import annotations

import itertools
import socket
import time

import httpx
import orjson

from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support import GatewayServer, nanos


def read_until(sock: socket.socket, needle: bytes, limit: int = 200_000) -> bytes:
    data = b""
    while needle not in data and len(data) < limit:
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    return data


STREAM_REQUEST = {"model": "fake/chat", "stream": True, "messages": [{"role": "user", "content": "go"}]}


def paced_upstream(upstream: FakeOpenAIUpstream, words: int, delay_s: float) -> None:
    upstream.behaviour.reply_words = [f" w{i}" for i in range(words)]
    upstream.behaviour.chunk_delay_s = delay_s


def test_disconnect_mid_stream_cancels_upstream_and_bills_tokens_produced(
    gateway: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    account = gateway.new_account("1")
    paced_upstream(upstream, words=200, delay_s=0.02)
    body = orjson.dumps(STREAM_REQUEST)
    host, port = gateway.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {account.key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = read_until(sock, b'"content":" w4"')
        assert b"200 OK" in head
    generation_id = head.split(b'"id":"', 1)[1].split(b'"', 1)[0].decode()
    deadline = time.monotonic() + 10
    generation = None
    while time.monotonic() < deadline:
        response = gateway.get("/generation", account.key, id=generation_id)
        if response.status_code == 200:
            generation = response.json()["data"]
            break
        time.sleep(0.05)
    assert generation is not None
    assert generation["cancelled"] is True
    assert 5 <= generation["tokens_completion"] < 200
    balance = gateway.balance(account.id)
    assert nanos(balance["total_usage"]) == nanos(generation["total_cost"]) > 0
    assert nanos(balance["held_in_flight"]) == 0
    deadline = time.monotonic() + 5
    while upstream.cancelled_streams == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.cancelled_streams == 1


def test_paced_tokens_reach_the_client_as_they_are_produced(
    gateway: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    """Events are written in bursts when the upstream sends bursts, but never held while it is silent."""
    account = gateway.new_account("1")
    paced_upstream(upstream, words=5, delay_s=0.15)
    arrivals: list[float] = []
    started = time.monotonic()
    with httpx.stream(
        "POST",
        f"{gateway.api}/chat/completions",
        json=STREAM_REQUEST,
        headers={"Authorization": f"Bearer {account.key}"},
        timeout=10,
    ) as response:
        for line in response.iter_lines():
            if '"content":" w' in line:
                arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 5
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert all(gap > 0.08 for gap in gaps), arrivals
