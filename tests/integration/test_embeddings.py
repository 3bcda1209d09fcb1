"""POST /api/v1/embeddings: the OpenAI SDK's embeddings, billed per input token like any request."""

from __future__ import annotations

import openai

from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support import GatewayServer, nanos


def test_embeddings_through_an_openai_compatible_upstream_are_billed_per_token(
    gateway: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    account = gateway.new_account("1")
    client = openai.OpenAI(base_url=gateway.api, api_key=account.key, max_retries=0)
    result = client.embeddings.create(model="fake/embed", input=["one", "two"])
    assert [item.index for item in result.data] == [0, 1]
    assert [round(x, 6) for x in result.data[1].embedding] == [0.2, 0.2, 0.3]  # float32 through base64
    assert upstream.calls[-1].body == {"model": "embed-1", "input": ["one", "two"]}
    assert result.usage.prompt_tokens == 14
    cost = nanos(result.usage.model_extra["cost"])  # type: ignore[index]
    assert cost == 14 * 100
    assert 10**9 - nanos(gateway.balance(account.id)["balance"]) == cost


def test_offline_embeddings_are_deterministic_unit_vectors(gateway: GatewayServer) -> None:
    account = gateway.new_account("1")
    client = openai.OpenAI(base_url=gateway.api, api_key=account.key, max_retries=0)
    first = client.embeddings.create(model="tollway/offline-embed", input="the same text")
    again = client.embeddings.create(model="tollway/offline-embed", input="the same text")
    vector = first.data[0].embedding
    assert vector == again.data[0].embedding and len(vector) == 64
    plain = gateway.post(
        "/embeddings",
        account.key,
        {"model": "tollway/offline-embed", "input": "the same text", "encoding_format": "float"},
    ).json()["data"][0]["embedding"]
    assert all(abs(a - b) < 1e-6 for a, b in zip(plain, vector, strict=True))
    assert abs(sum(v * v for v in vector) - 1) < 1e-3


def test_embeddings_bad_input_and_chat_models(gateway: GatewayServer) -> None:
    account = gateway.new_account("1")
    for body in (
        {"model": "fake/embed"},
        {"model": "fake/embed", "input": []},
        {"input": "x"},
        {"model": "nope/nothing", "input": "x"},
    ):
        response = gateway.post("/embeddings", account.key, body)
        assert response.status_code == 400, body
    assert nanos(gateway.balance(account.id)["total_usage"]) == 0
