"""Streams from an OpenAI-compatible upstream pass its chunks through as bytes (but for the leading fields),
and the client, the bill and the ledger see exactly what the parsed way gives."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support import GatewayServer, nanos

STREAM_REQUEST = {"model": "fake/chat", "stream": True, "messages": [{"role": "user", "content": "go"}]}
WORDS = [f' w{i} "quoted" \\ {{"finish_reason":"stop"}} é' for i in range(30)]


def stream(gateway: GatewayServer, key: str) -> tuple[bytes, list[dict[str, Any]]]:
    """The raw body of a streamed completion and its chunks (up to `[DONE]`, when it came)."""
    response = httpx.post(
        f"{gateway.api}/chat/completions",
        json=STREAM_REQUEST,
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert response.status_code == 200
    raw = response.content
    events = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]
    return raw, [orjson.loads(event) for event in events if event != b"[DONE]"]


def content_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


@pytest.mark.parametrize("burst", [True, False], ids=["one-burst", "chunk-by-chunk"])
def test_passed_through_chunks_carry_the_gateways_fields_and_the_bill_matches(
    gateway: GatewayServer, upstream: FakeOpenAIUpstream, burst: bool
) -> None:
    account = gateway.new_account("1")
    upstream.behaviour.reply_words = WORDS
    upstream.behaviour.burst = burst
    raw, chunks = stream(gateway, account.key)
    assert raw.endswith(b"data: [DONE]\n\n")
    generation_id = chunks[0]["id"]
    assert generation_id.startswith("gen-")
    for chunk in chunks:
        assert chunk["id"] == generation_id
        assert chunk["model"] == "fake/chat"
        assert chunk["object"] == "chat.completion.chunk"
        assert "provider" in chunk and "system_fingerprint" not in chunk
        for choice in chunk["choices"]:
            assert {"index", "delta", "finish_reason", "native_finish_reason"} <= choice.keys()
    assert content_of(chunks) == "".join(WORDS)
    # The content chunks went out as the upstream wrote them: its key order, not the gateway's.
    assert raw.count(b'"logprobs":null,"finish_reason":null,"native_finish_reason":null') >= len(WORDS)
    finish = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [(f["finish_reason"], f["native_finish_reason"]) for f in finish] == [("stop", "stop")]
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == len(WORDS)
    generation = gateway.generation(account.key, generation_id)
    assert generation["tokens_completion"] == len(WORDS)
    assert generation["finish_reason"] == "stop"
    assert nanos(usage["cost"]) == nanos(generation["total_cost"]) == nanos(gateway.balance(account.id)["total_usage"])


def test_unreported_usage_is_counted_the_same_from_passed_through_chunks(
    gateway: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    """The upstream never reports usage: the tokens counted from chunks that went out as bytes equal those
    counted when every chunk was read (choices without finish_reason are read one by one)."""
    upstream.behaviour.reply_words = WORDS
    upstream.behaviour.report_usage = False
    upstream.behaviour.burst = True
    counted = []
    for full in (True, False):
        upstream.behaviour.full_chunks = full
        account = gateway.new_account("1")
        _, chunks = stream(gateway, account.key)
        assert content_of(chunks) == "".join(WORDS)
        counted.append(chunks[-1]["usage"]["completion_tokens"])
        balance = gateway.balance(account.id)
        assert nanos(balance["total_usage"]) == nanos(chunks[-1]["usage"]["cost"]) > 0
    assert counted[0] == counted[1] > len(WORDS)


def test_a_broken_chunk_inside_a_burst_ends_the_stream_with_an_error_and_bills_what_was_sent(
    gateway: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    """A chunk that starts like every other but is cut short is never passed on: the run holding it is read
    chunk by chunk, and the stream ends with an error chunk as for any broken upstream."""
    account = gateway.new_account("1")
    upstream.behaviour.reply_words = WORDS
    upstream.behaviour.burst = True
    upstream.behaviour.raw_chunk = (
        b'{"id":"chatcmpl-fake","object":"chat.completion.chunk","created":1,"model":"fake-chat-1",'
        b'"system_fingerprint":"fp_fake","choices":[{"index":0,"delta":{"content":"cut'
    )
    raw, events = stream(gateway, account.key)
    assert b"cut" not in raw and b"[DONE]" not in raw
    assert events[-1]["error"]["code"] == 502
    assert events[-1]["choices"][0]["finish_reason"] == "error"
    assert content_of(events) == "".join(WORDS)
    generation = gateway.generation(account.key, events[0]["id"])
    assert generation["tokens_completion"] > 0
    assert nanos(gateway.balance(account.id)["total_usage"]) == nanos(generation["total_cost"]) > 0
    assert nanos(gateway.balance(account.id)["held_in_flight"]) == 0
