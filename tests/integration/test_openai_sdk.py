"""The official openai SDK against a real Tollway server: answers, streams, and exact billing."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support import GatewayServer, nanos


def client(gateway: GatewayServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api, api_key=key, max_retries=0)


def usage_cost(usage: object) -> int:
    return nanos(usage.model_extra["cost"])  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", ["tollway/offline-small", "fake/chat"])
def test_non_streamed_completion_bills_exactly_usage_cost(
    gateway: GatewayServer, upstream: FakeOpenAIUpstream, model: str
) -> None:
    account = gateway.new_account("10")
    before = gateway.balance(account.id)

    completion = client(gateway, account.key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello"}]
    )

    assert completion.choices[0].message.content
    assert completion.model == model
    assert completion.id.startswith("gen-")
    cost = usage_cost(completion.usage)
    assert cost > 0
    after = gateway.balance(account.id)
    assert nanos(before["balance"]) - nanos(after["balance"]) == cost
    assert nanos(after["held_in_flight"]) == 0
    generation = gateway.get("/generation", account.key, id=completion.id).json()["data"]
    assert nanos(generation["total_cost"]) == cost
    assert generation["tokens_prompt"] == completion.usage.prompt_tokens  # type: ignore[union-attr]
    assert generation["tokens_completion"] == completion.usage.completion_tokens  # type: ignore[union-attr]
    if model == "fake/chat":
        assert len(upstream.calls) == 1
        assert upstream.calls[0].body["model"] == "fake-chat-1"
        # 11 prompt tokens at 1e-6 + 6 completion tokens at 2e-6 USD
        assert cost == 11 * 1000 + 6 * 2000


@pytest.mark.parametrize("model", ["tollway/offline-small", "fake/chat"])
def test_streamed_completion_ends_with_usage_cost_then_done(
    gateway: GatewayServer, upstream: FakeOpenAIUpstream, model: str
) -> None:
    account = gateway.new_account("10")
    stream = client(gateway, account.key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Tell me a story"}], stream=True
    )
    text = []
    usage_chunks = []
    ids = set()
    for chunk in stream:
        ids.add(chunk.id)
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
        if chunk.usage is not None:
            usage_chunks.append(chunk.usage)
    assert "".join(text)
    assert len(ids) == 1
    assert len(usage_chunks) == 1
    cost = usage_cost(usage_chunks[0])
    balance = gateway.balance(account.id)
    assert 10 * 10**9 - nanos(balance["balance"]) == cost
    generation = gateway.get("/generation", account.key, id=ids.pop()).json()["data"]
    assert generation["streamed"] is True
    assert nanos(generation["total_cost"]) == cost
    if model == "fake/chat":
        assert upstream.calls[0].body["stream_options"] == {"include_usage": True}


def test_async_client_streams_and_completes(gateway: GatewayServer) -> None:
    account = gateway.new_account("10")

    async def main() -> int:
        async_client = openai.AsyncOpenAI(base_url=gateway.api, api_key=account.key, max_retries=0)
        total = 0
        completion = await async_client.chat.completions.create(
            model="tollway/offline-small", messages=[{"role": "user", "content": "one"}]
        )
        total += usage_cost(completion.usage)
        stream = await async_client.chat.completions.create(
            model="tollway/offline-small", messages=[{"role": "user", "content": "two"}], stream=True
        )
        async for chunk in stream:
            if chunk.usage is not None:
                total += usage_cost(chunk.usage)
        await async_client.close()
        return total

    total = asyncio.run(main())
    assert 10 * 10**9 - nanos(gateway.balance(account.id)["balance"]) == total


def test_offline_model_is_deterministic_for_a_seed(gateway: GatewayServer) -> None:
    account = gateway.new_account("10")
    sdk = client(gateway, account.key)
    answers = {
        sdk.chat.completions.create(
            model="tollway/offline-small", seed=7, messages=[{"role": "user", "content": "same prompt"}]
        )
        .choices[0]
        .message.content
        for _ in range(3)
    }
    assert len(answers) == 1


def test_free_variant_costs_nothing(gateway: GatewayServer) -> None:
    account = gateway.new_account("1")
    completion = client(gateway, account.key).chat.completions.create(
        model="tollway/offline-small:free", messages=[{"role": "user", "content": "hi"}]
    )
    assert usage_cost(completion.usage) == 0
    assert nanos(gateway.balance(account.id)["balance"]) == 10**9


def test_failover_to_second_endpoint_before_any_byte(gateway: GatewayServer, upstream: FakeOpenAIUpstream) -> None:
    account = gateway.new_account("10")
    completion = client(gateway, account.key).chat.completions.create(
        model="fake/failover",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"provider": {"order": ["deadup", "fakeup"]}},
    )
    assert completion.model_extra["provider"] == "FakeUp"  # type: ignore[index]
    generation = gateway.get("/generation", account.key, id=completion.id).json()["data"]
    statuses = [attempt["status"] for attempt in generation["provider_responses"]]
    assert statuses == [0, 200]
    # Billed at the serving endpoint's price only.
    assert usage_cost(completion.usage) == 11 * 1000 + 6 * 2000


def test_upstream_error_is_openrouter_shaped_and_releases_the_hold(
    gateway: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    account = gateway.new_account("10")
    upstream.behaviour.status = 500
    response = gateway.post(
        "/chat/completions",
        account.key,
        {"model": "fake/chat", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == 502
    assert error["message"] == "Provider returned error"
    assert error["metadata"]["provider_name"] == "FakeUp"
    assert error["metadata"]["upstream_status"] == 500
    assert "raw" not in error["metadata"] and "upstream exploded" not in response.text  # the body stays in logs
    balance = gateway.balance(account.id)
    assert nanos(balance["balance"]) == 10 * 10**9
    assert nanos(balance["held_in_flight"]) == 0


def test_upstream_invalid_json_is_a_502(gateway: GatewayServer, upstream: FakeOpenAIUpstream) -> None:
    account = gateway.new_account("10")
    upstream.behaviour.invalid_json = True
    response = gateway.post(
        "/chat/completions",
        account.key,
        {"model": "fake/chat", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 502
    assert nanos(gateway.balance(account.id)["balance"]) == 10 * 10**9


def test_mid_stream_break_bills_streamed_tokens_and_ends_with_error_chunk(
    gateway: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    account = gateway.new_account("10")
    upstream.behaviour.break_after_chunks = 3
    with httpx.stream(
        "POST",
        gateway.api + "/chat/completions",
        headers={"Authorization": f"Bearer {account.key}"},
        json={"model": "fake/chat", "stream": True, "messages": [{"role": "user", "content": "x"}]},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    import json

    last = json.loads(lines[-1][len("data: ") :])
    assert last["error"]["code"] == 502
    assert last["choices"][0]["finish_reason"] == "error"
    generation_id = last["id"]
    generation = gateway.get("/generation", account.key, id=generation_id).json()["data"]
    # Counted locally: the prompt by estimate, "Hello from the" = 3 words ≈ 4 tokens by the 4-char rule.
    assert generation["tokens_completion"] > 0
    spent = 10 * 10**9 - nanos(gateway.balance(account.id)["balance"])
    assert spent == nanos(generation["total_cost"]) > 0
    assert nanos(gateway.balance(account.id)["held_in_flight"]) == 0
