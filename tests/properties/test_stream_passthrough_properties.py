"""Passing chunks through as bytes changes nothing a client or the bill can see.

For any stream an OpenAI-compatible upstream may send (text with quotes, backslashes and look-alike
markers, tool calls, reasoning, finish reasons, usage, comments, chunks with and without
`finish_reason`, compact or spaced JSON, cut into runs anywhere between events), the adapter yields the
same choices, usage and ids as reading every chunk, and the bytes it passes on read as the upstream's
chunks with the gateway's leading fields.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.errors import ProviderError
from tollway.providers.base import StreamChunk, UpstreamRequest
from tollway.providers.http_client import UpstreamPool
from tollway.providers.openai_compat import OpenAICompatibleProvider

LEADING = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 7, "model": "m-1"}
OWN = {"id": "gen-1", "provider": "Up", "model": "up/m", "object": "chat.completion.chunk", "created": 9}
OWN_PREFIX = b"data: " + orjson.dumps({**OWN, "choices": []})[:-2]

tricky_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(['"finish_reason":"stop"', '"usage":{', "[DONE]", "\n\ndata: {", '\\"error\\"', '"reasoning']),
)


@st.composite
def chunk(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["content", "content", "content", "tool", "finish", "usage", "reasoning", "comment"]))
    if kind == "comment":
        return b": keep-alive\n\n"
    # full: finish_reason null and logprobs in every choice, as OpenAI writes them; lean: index and delta
    # alone; the rest are shapes no client should receive as they are.
    shape = draw(
        st.sampled_from(["full", "full", "full", "lean", "no-index", "null-delta", "not-an-object", "other-id"])
    )
    full = shape != "lean"
    delta: dict[str, Any]
    if kind == "content":
        delta = {"content": draw(tricky_text)}
    elif kind == "tool":
        delta = {"tool_calls": [{"index": 0, "function": {"arguments": draw(tricky_text)}}]}
    elif kind == "reasoning":
        delta = {"reasoning_content": draw(tricky_text)}
    else:
        delta = {}
    choice: dict[str, Any] = {"index": 0, "delta": delta}
    if full:
        choice |= {"logprobs": None, "finish_reason": None}
    if kind == "finish":
        choice["finish_reason"] = draw(st.sampled_from(["stop", "length", "eos"]))
    if shape == "no-index":
        del choice["index"]
    elif shape == "null-delta":
        choice["delta"] = None
    event: dict[str, Any] = {**LEADING, "choices": [] if kind == "usage" else [choice]}
    if shape == "other-id":
        event["id"] = "chatcmpl-y"  # leading bytes unlike the first chunk's: never swapped blindly
    if shape == "not-an-object" and kind != "usage":
        event["choices"] = [draw(st.sampled_from([1, "x", None, []]))]
    if kind == "usage":
        event["usage"] = {"prompt_tokens": 3, "completion_tokens": draw(st.integers(0, 99))}
    elif draw(st.booleans()):
        event["usage"] = None  # OpenAI's include_usage: null in every chunk but the last
    text = orjson.dumps(event) if draw(st.integers(0, 9)) else json.dumps(event).encode()
    return b"data: " + text + b"\n\n"


class Runs:
    """Stands for the upstream response: the body as runs of whole events, as the HTTP client cuts them."""

    def __init__(self, runs: list[bytes]) -> None:
        self._runs = runs

    async def event_runs(self) -> AsyncIterator[bytes]:
        for run in self._runs:
            yield run


def provider() -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        name="up",
        display_name="Up",
        base_url="http://127.0.0.1:9/v1",
        api_key=None,
        pool=UpstreamPool(),
        timeout_s=None,
        connect_timeout_s=1.0,
    )


REQUEST = UpstreamRequest(body={}, upstream_model="m-1", max_tokens=10)


async def collect(stream: AsyncIterator[StreamChunk]) -> tuple[list[StreamChunk], str | None]:
    chunks = []
    try:
        async for item in stream:
            chunks.append(item)
    except ProviderError as exc:
        return chunks, exc.message
    return chunks, None


def expanded(chunks: list[StreamChunk]) -> list[tuple[Any, ...]]:
    """What each chunk tells the relay, with runs opened into their chunks."""
    out: list[tuple[Any, ...]] = []
    for item in chunks:
        if item.run is None:
            out.append((item.choices, item.usage, item.upstream_id))
        else:
            out.extend((event["choices"], None, event["id"]) for event in item.run.events())
    return out


@settings(max_examples=150, deadline=None)
@given(events=st.lists(chunk(), min_size=1, max_size=30), cuts=st.lists(st.integers(0, 30), max_size=6))
def test_passing_through_yields_what_reading_every_chunk_yields(events: list[bytes], cuts: list[int]) -> None:
    body = [*events, b"data: [DONE]\n\n"]
    bounds = sorted({0, len(body), *(c for c in cuts if c < len(body))})
    runs = [b"".join(body[a:b]) for a, b in itertools.pairwise(bounds)]
    adapter = provider()
    passed, passed_error = asyncio.run(collect(adapter._events(Runs(runs), REQUEST)))  # type: ignore[arg-type]
    # The parsed way: every `data:` line read on its own.
    read: list[StreamChunk] = []
    for event in events:
        if event.startswith(b"data:"):
            parsed = adapter._chunk(event[5:].strip(), exclude=False)
            assert parsed is not None
            read.append(parsed)
    assert passed_error is None
    assert expanded(passed) == expanded(read)
    for item in passed:
        if item.run is None:
            continue
        relayed = item.run.relayed(OWN_PREFIX)
        if {event["id"] for event in item.run.events()} != {item.upstream_id}:
            assert relayed is None  # the relay writes these chunks the parsed way
            continue
        assert relayed is not None
        lines = [line for line in relayed.split(b"\n\n") if line]
        assert len(lines) == len(item.run.events())
        for line, sent in zip(lines, item.run.events(), strict=True):
            assert line.startswith(b"data: ")
            out = orjson.loads(line[6:])
            kept = {k: v for k, v in sent.items() if k not in LEADING and k != "system_fingerprint"}
            kept["choices"] = [{**c, "native_finish_reason": None} for c in sent["choices"]]
            assert out == {**OWN, **kept}


@settings(max_examples=60, deadline=None)
@given(events=st.lists(chunk(), min_size=1, max_size=12), at=st.integers(0, 12), cut=st.integers(1, 60))
def test_a_chunk_cut_short_inside_a_run_is_reported_never_passed(events: list[bytes], at: int, cut: int) -> None:
    """A broken chunk anywhere in a run: the stream fails as 'broken' at that chunk, nothing after it passes."""
    broken = b"data: " + orjson.dumps({**LEADING, "choices": [{"index": 0, "delta": {"content": "x" * 80}}]})[:cut]
    position = min(at, len(events))
    body = [*events[:position], broken + b"\n\n", *events[position:], b"data: [DONE]\n\n"]
    passed, error = asyncio.run(collect(provider()._events(Runs([b"".join(body)]), REQUEST)))  # type: ignore[arg-type]
    assert error == "Provider sent a broken stream"
    before = sum(1 for event in events[:position] if event.startswith(b"data:"))
    assert len(expanded(passed)) == before


def test_chunks_from_an_openrouter_shaped_upstream_keep_one_native_finish_reason() -> None:
    """An upstream that already writes `native_finish_reason` (another OpenRouter-compatible gateway) gets
    no second one: every chunk stays valid JSON with unique keys."""
    event = {**LEADING, "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]}
    event["choices"][0]["native_finish_reason"] = None
    line = b"data: " + orjson.dumps(event) + b"\n\n"
    passed, error = asyncio.run(collect(provider()._events(Runs([line * 4 + b"data: [DONE]\n\n"]), REQUEST)))  # type: ignore[arg-type]
    assert error is None
    runs = [item.run for item in passed if item.run is not None]
    assert runs
    for run in runs:
        relayed = run.relayed(OWN_PREFIX)
        assert relayed is not None
        for chunk in relayed.split(b"\n\n")[:-1]:
            assert chunk.count(b'"native_finish_reason"') == 1
            assert orjson.loads(chunk[6:])["choices"][0]["native_finish_reason"] is None
