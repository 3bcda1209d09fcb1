"""POST /api/v1/completions (legacy text completions) through the official openai SDK: prompt in,
choices[].text out, streamed and not, billed exactly like chat; bad bodies refused with the ledger untouched."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support import GatewayServer, nanos, start_sqlite_gateway


@pytest.fixture(scope="module")
def gateway(upstream: FakeOpenAIUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("legacy")
    server = start_sqlite_gateway(directory, upstream.base_url)
    yield server
    server.stop()


def test_prompt_in_text_out_billed_like_chat(gateway: GatewayServer, upstream: FakeOpenAIUpstream) -> None:
    account = gateway.new_account("10")
    client = openai.OpenAI(base_url=gateway.api, api_key=account.key, max_retries=0)
    completion = client.completions.create(model="fake/chat", prompt="Once upon a time", max_tokens=4)
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "Hello from the fake"
    assert completion.choices[0].finish_reason == "stop"
    assert upstream.calls[-1].body["messages"] == [{"role": "user", "content": "Once upon a time"}]
    assert upstream.calls[-1].body["max_tokens"] == 4
    usage = completion.model_dump()["usage"]
    assert usage["prompt_tokens"] == 11 and usage["completion_tokens"] == 4
    cost = nanos(usage["cost"])
    assert cost == 11 * 1000 + 4 * 2000  # 0.000001 and 0.000002 USD a token
    record = gateway.get("/generation", account.key, id=completion.id).json()["data"]
    assert nanos(record["total_cost"]) == cost
    assert nanos(gateway.balance(account.id)["total_usage"]) == cost


def test_stream_gives_text_chunks_and_the_cost_last(gateway: GatewayServer) -> None:
    account = gateway.new_account("10")
    client = openai.OpenAI(base_url=gateway.api, api_key=account.key, max_retries=0)
    chunks = list(client.completions.create(model="fake/chat", prompt=["Hi"], stream=True))
    assert all(chunk.object == "text_completion" for chunk in chunks)
    text = "".join(choice.text for chunk in chunks for choice in chunk.choices)
    assert text == "Hello from the fake upstream."
    usage = chunks[-1].model_dump()["usage"]
    assert usage["completion_tokens"] == 6
    figures = gateway.balance(account.id)
    assert nanos(figures["total_usage"]) == nanos(usage["cost"]) and nanos(figures["held_in_flight"]) == 0


def test_offline_model_answers_a_prompt(gateway: GatewayServer) -> None:
    account = gateway.new_account("10")
    client = openai.OpenAI(base_url=gateway.api, api_key=account.key, max_retries=0)
    completion = client.completions.create(model="tollway/offline-small", prompt="Tell me a story", max_tokens=8)
    assert completion.choices[0].text
    assert completion.usage is not None and 0 < completion.usage.completion_tokens <= 8


BAD: list[tuple[Any, str]] = [
    ({"model": "fake/chat"}, "prompt"),
    ({"model": "fake/chat", "prompt": ""}, "prompt"),
    ({"model": "fake/chat", "prompt": ["a", "b"]}, "prompt"),
    ({"model": "fake/chat", "prompt": [1, 2, 3]}, "prompt"),
    ({"model": "fake/chat", "prompt": "hi", "echo": True}, "echo"),
    ({"model": "fake/chat", "prompt": "hi", "suffix": "end"}, "suffix"),
    ({"model": "fake/chat", "prompt": "hi", "best_of": 3}, "best_of"),
    ({"model": "fake/chat", "prompt": "hi", "logprobs": "yes"}, "logprobs"),
    ({"model": "fake/chat", "prompt": "hi", "max_tokens": -1}, "max_tokens"),
    ({"model": "fake/chat", "prompt": "hi", "temperature": 9}, "temperature"),
    ({"model": "fake/chat", "prompt": "hi", "stop": 5}, "stop"),
    ({"prompt": "hi"}, "model"),
]


def test_bad_bodies_name_the_field_and_leave_the_ledger_untouched(
    gateway: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    account = gateway.new_account("10")
    for body, field in BAD:
        response = gateway.post("/completions", account.key, body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["metadata"]["field"] == field, (body, response.text)
    for raw in (b"[]", b'"prompt"', b"{", b""):
        response = httpx.post(
            gateway.api + "/completions", content=raw, headers={"Authorization": f"Bearer {account.key}"}, timeout=10
        )
        assert response.status_code == 400, raw
    assert httpx.post(gateway.api + "/completions", json={"prompt": "hi"}, timeout=10).status_code == 401
    assert upstream.calls == []
    figures = gateway.balance(account.id)
    assert nanos(figures["total_usage"]) == 0 and nanos(figures["held_in_flight"]) == 0
