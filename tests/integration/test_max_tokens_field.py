"""Reasoning models refuse `max_tokens`: a provider with `max_tokens_field: max_completion_tokens` sends the other."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support import GatewayServer, start_gateway


@pytest.fixture(scope="module")
def reasoning_gateway(
    upstream: FakeOpenAIUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("max-tokens-field")
    pricing = {"prompt": "0.000001", "completion": "0.000002"}
    config = {
        "providers": [
            {"name": "plain", "kind": "openai", "base_url": upstream.base_url},
            {
                "name": "reasoner",
                "kind": "openai",
                "base_url": upstream.base_url,
                "max_tokens_field": "max_completion_tokens",
            },
        ],
        "models": [
            {"id": "up/plain", "endpoints": [{"provider": "plain", "upstream_model": "p", "pricing": pricing}]},
            {"id": "up/o-mini", "endpoints": [{"provider": "reasoner", "upstream_model": "o", "pricing": pricing}]},
        ],
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    server = start_gateway(f"sqlite:///{directory / 'db.sqlite'}", path, directory)
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("model", "sent", "expected_field"),
    [
        ("up/o-mini", {"max_tokens": 50}, "max_completion_tokens"),
        ("up/o-mini", {}, "max_completion_tokens"),
        ("up/plain", {"max_tokens": 50}, "max_tokens"),
        ("up/plain", {"max_completion_tokens": 50}, "max_completion_tokens"),
    ],
)
def test_the_output_limit_goes_in_the_field_the_upstream_wants(
    reasoning_gateway: GatewayServer,
    upstream: FakeOpenAIUpstream,
    model: str,
    sent: dict[str, int],
    expected_field: str,
) -> None:
    account = reasoning_gateway.new_account("10")
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **sent}
    response = reasoning_gateway.post("/chat/completions", account.key, body)
    assert response.status_code == 200, response.text
    forwarded = upstream.calls[-1].body
    other = "max_tokens" if expected_field == "max_completion_tokens" else "max_completion_tokens"
    assert isinstance(forwarded[expected_field], int) and forwarded[expected_field] > 0
    assert other not in forwarded
    if sent:
        assert forwarded[expected_field] == 50
