from __future__ import annotations

import asyncio

from tollway.providers.base import UpstreamRequest
from tollway.providers.offline import OfflineProvider, count_tokens, generate_tokens


def test_same_seed_same_text_other_seed_other_text() -> None:
    messages = [{"role": "user", "content": "hello"}]
    assert generate_tokens(messages, 1, 100) == generate_tokens(messages, 1, 100)
    assert generate_tokens(messages, 1, 100) != generate_tokens(messages, 2, 100)


def test_token_counts_are_honest() -> None:
    provider = OfflineProvider()
    request = UpstreamRequest(
        body={"messages": [{"role": "user", "content": "/echo one two, three"}]},
        upstream_model="x",
        max_tokens=50,
    )
    completion = asyncio.run(provider.complete(request))
    assert completion.message["content"] == "one two, three"
    assert completion.usage.completion_tokens == count_tokens("one two, three") == 4
    assert completion.usage.prompt_tokens == count_tokens("/echo one two, three") + 4


def test_max_tokens_truncates_with_length_finish() -> None:
    request = UpstreamRequest(
        body={"messages": [{"role": "user", "content": "/echo a b c d e"}]}, upstream_model="x", max_tokens=2
    )
    completion = asyncio.run(OfflineProvider().complete(request))
    assert completion.usage.completion_tokens == 2
    assert completion.finish_reason == "length"


def test_stream_sends_one_token_per_chunk_and_usage_last() -> None:
    request = UpstreamRequest(
        body={"messages": [{"role": "user", "content": "/echo a b c"}]}, upstream_model="x", max_tokens=10
    )

    async def collect() -> list[object]:
        return [chunk async for chunk in OfflineProvider().stream(request)]

    chunks = asyncio.run(collect())
    contents = [c.choices[0]["delta"].get("content") for c in chunks if c.choices]  # type: ignore[attr-defined]
    assert "".join(x for x in contents if x) == "a b c"
    assert chunks[-1].usage.completion_tokens == 3  # type: ignore[attr-defined]
