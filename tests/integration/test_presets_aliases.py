"""Presets (saved per account, checked when saved, request fields win) and model aliases (config and ~latest)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml

from tests.conftest import make_database_url
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support import GatewayServer, start_gateway, write_config

HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, upstream: FakeOpenAIUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("presets")
    path = write_config(directory / "config.yaml", upstream.base_url)
    config = yaml.safe_load(path.read_text())
    newer = {
        "id": "fake/chat-2",
        "name": "Fake Chat 2",
        "endpoints": [{"provider": "fakeup", "upstream_model": "fake-chat-2", "pricing": {"prompt": "0.000003"}}],
    }
    config["models"].append(newer)
    config["aliases"] = {"fast": "fake/chat", "embedder": "fake/embed"}
    path.write_text(yaml.safe_dump(config))
    databases = make_database_url(request.param, directory)
    gateway = start_gateway(next(databases), path, directory)
    yield gateway
    gateway.stop()
    databases.close()


def call(server: GatewayServer, method: str, path: str, key: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, server.api + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_aliases_and_latest_ids_resolve_before_routing(server: GatewayServer, upstream: FakeOpenAIUpstream) -> None:
    account = server.new_account("5")
    client = openai.OpenAI(base_url=server.api, api_key=account.key, max_retries=0)
    answer = client.chat.completions.create(model="fast", messages=HELLO)  # type: ignore[arg-type]
    assert answer.model == "fake/chat"
    assert upstream.calls[-1].body["model"] == "fake-chat-1"
    assert server.generation(account.key, answer.id)["model"] == "fake/chat"

    latest = client.chat.completions.create(model="~fake/chat-latest", messages=HELLO)  # type: ignore[arg-type]
    assert latest.model == "fake/chat-2" and upstream.calls[-1].body["model"] == "fake-chat-2"
    streamed = list(client.chat.completions.create(model="fast", messages=HELLO, stream=True))  # type: ignore[arg-type]
    assert {chunk.model for chunk in streamed} == {"fake/chat"}
    embedded = client.embeddings.create(model="embedder", input="hello")
    assert embedded.model == "fake/embed"

    unknown = call(
        server, "POST", "/chat/completions", account.key, {"model": "~fake/nothing-latest", "messages": HELLO}
    )
    assert unknown.status_code == 400 and "~fake/nothing-latest" in unknown.json()["error"]["message"]


def test_presets_fill_requests_and_request_fields_win(server: GatewayServer, upstream: FakeOpenAIUpstream) -> None:
    account = server.new_account("5")
    manage, _ = server.new_key(account.id, management=True)
    preset = {
        "name": "team-default",
        "description": "What the team uses",
        "model": "fast",
        "models": ["fake/failover"],
        "provider": {"allow_fallbacks": True},
        "parameters": {"temperature": 0.3, "max_tokens": 40, "top_p": 0.5},
    }
    created = call(server, "POST", "/presets", manage, preset)
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    assert data["name"] == "team-default" and data["parameters"]["temperature"] == 0.3 and data["model"] == "fast"

    answer = call(
        server, "POST", "/chat/completions", account.key, {"model": "@preset/team-default", "messages": HELLO}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "fake/chat"
    sent = upstream.calls[-1].body
    assert (sent["temperature"], sent["max_tokens"], sent["top_p"]) == (0.3, 40, 0.5)
    assert "preset" not in sent
    assert server.generation(account.key, answer.json()["id"])["preset_id"] == data["id"]

    overridden = call(
        server,
        "POST",
        "/chat/completions",
        account.key,
        {"preset": "team-default", "model": "fake/chat-2", "temperature": 0.9, "messages": HELLO},
    )
    assert overridden.status_code == 200, overridden.text
    assert overridden.json()["model"] == "fake/chat-2"
    sent = upstream.calls[-1].body
    assert (sent["model"], sent["temperature"], sent["max_tokens"]) == ("fake-chat-2", 0.9, 40)

    patched = call(server, "PATCH", "/presets/team-default", manage, {"parameters": {"temperature": 1.1}})
    assert patched.status_code == 200 and patched.json()["data"]["parameters"] == {"temperature": 1.1}
    assert patched.json()["data"]["model"] == "fast"  # fields left out keep their values
    call(server, "POST", "/chat/completions", account.key, {"preset": "team-default", "messages": HELLO})
    assert upstream.calls[-1].body["temperature"] == 1.1 and upstream.calls[-1].body["max_tokens"] != 40

    listed = call(server, "GET", "/presets", manage).json()["data"]
    assert [p["name"] for p in listed] == ["team-default"]
    assert call(server, "GET", "/presets/team-default", manage).json()["data"]["description"] == "What the team uses"
    assert call(server, "DELETE", "/presets/team-default", manage).json() == {"deleted": True}
    gone = call(server, "POST", "/chat/completions", account.key, {"model": "@preset/team-default", "messages": HELLO})
    assert gone.status_code == 404 and gone.json()["error"]["metadata"]["field"] == "preset"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "model": "acme/unknown"}, "model"),
        ({"name": "x", "model": "fake/chat", "models": ["fake/chat", "nope/nope"]}, "models"),
        ({"name": "x", "model": "fake/chat", "models": ["a", "b", "c", "d"]}, "models"),
        ({"name": "x"}, "model"),
        ({"name": "Bad Name!", "model": "fake/chat"}, "name"),
        ({"name": "", "model": "fake/chat"}, "name"),
        ({"model": "fake/chat"}, "name"),
        ({"name": "x", "model": "fake/chat", "parameters": {"temperature": 7}}, "parameters.temperature"),
        ({"name": "x", "model": "fake/chat", "parameters": {"messages": []}}, "parameters"),
        ({"name": "x", "model": "fake/chat", "parameters": [1]}, "parameters"),
        ({"name": "x", "model": "fake/chat", "provider": "fast"}, "provider"),
        (
            {"name": "x", "model": "fake/chat", "parameters": {"reasoning": {"effort": "huge"}}},
            "parameters.reasoning.effort",
        ),
        ({"name": "x", "model": 12}, "model"),
        ({"name": "x", "model": "fake/chat", "description": 5}, "description"),
    ],
)
def test_a_bad_preset_is_refused_when_saved(server: GatewayServer, body: dict[str, Any], field: str) -> None:
    account = server.new_account("1")
    manage, _ = server.new_key(account.id, management=True)
    response = call(server, "POST", "/presets", manage, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["metadata"]["field"] == field
    assert call(server, "GET", "/presets", manage).json()["data"] == []


def test_presets_belong_to_one_account_and_need_a_management_key(server: GatewayServer) -> None:
    owner = server.new_account("2")
    other = server.new_account("2")
    owner_manage, _ = server.new_key(owner.id, management=True)
    other_manage, _ = server.new_key(other.id, management=True)
    assert call(server, "POST", "/presets", owner_manage, {"name": "mine", "model": "fake/chat"}).status_code == 201
    again = call(server, "POST", "/presets", owner_manage, {"name": "mine", "model": "fake/chat"})
    assert again.status_code == 409 and again.json()["error"]["metadata"]["field"] == "name"

    assert call(server, "GET", "/presets/mine", other_manage).status_code == 404
    assert call(server, "DELETE", "/presets/mine", other_manage).status_code == 404
    assert call(server, "GET", "/presets", owner.key).status_code == 403
    assert call(server, "POST", "/presets", owner.key, {"name": "n", "model": "fake/chat"}).status_code == 403
    before = server.balance(other.id)
    used = call(server, "POST", "/chat/completions", other.key, {"model": "@preset/mine", "messages": HELLO})
    assert used.status_code == 404
    assert server.balance(other.id) == before
    renamed = call(server, "PATCH", "/presets/mine", owner_manage, {"name": "yours"})
    assert renamed.status_code == 400 and renamed.json()["error"]["metadata"]["field"] == "name"
    for raw in (b"[]", b"not json", b'{"name": "z", "model": "fake/chat", "models": "fake/chat"}'):
        response = httpx.post(
            server.api + "/presets",
            content=raw,
            headers={"Authorization": f"Bearer {owner_manage}", "Content-Type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 400, response.text
    for name in ("nul\u0000", "mine\n", "x" * 300):
        strange = call(server, "POST", "/chat/completions", owner.key, {"preset": name, "messages": HELLO})
        assert strange.status_code == 404 and strange.json()["error"]["metadata"]["field"] == "preset"
    assert call(server, "GET", "/presets/nul%00", owner_manage).status_code == 404
    bad_use = call(server, "POST", "/chat/completions", owner.key, {"preset": 5, "messages": HELLO})
    assert bad_use.status_code == 400 and bad_use.json()["error"]["metadata"]["field"] == "preset"


def test_presets_and_aliases_work_on_responses_completions_and_messages(
    server: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    account = server.new_account("5")
    manage, _ = server.new_key(account.id, management=True)
    preset = {"name": "everywhere", "model": "fast", "parameters": {"temperature": 0.25}}
    assert call(server, "POST", "/presets", manage, preset).status_code == 201
    client = openai.OpenAI(base_url=server.api, api_key=account.key, max_retries=0)

    response = client.responses.create(model="@preset/everywhere", input="hi")
    assert response.model == "fake/chat" and upstream.calls[-1].body["temperature"] == 0.25
    response = client.responses.create(model="fast", input="hi", temperature=0.5, extra_body={"preset": "everywhere"})
    assert response.model == "fake/chat" and upstream.calls[-1].body["temperature"] == 0.5

    legacy = call(server, "POST", "/completions", account.key, {"model": "@preset/everywhere", "prompt": "Once"})
    assert legacy.status_code == 200, legacy.text
    assert legacy.json()["model"] == "fake/chat" and upstream.calls[-1].body["temperature"] == 0.25

    message = anthropic.Anthropic(
        base_url=server.base_url + "/api", api_key=account.key, max_retries=0
    ).messages.create(model="@preset/everywhere", max_tokens=32, messages=[{"role": "user", "content": "Say hello"}])
    assert message.model == "fake/chat" and upstream.calls[-1].body["temperature"] == 0.25
    alias = anthropic.Anthropic(base_url=server.base_url + "/api", api_key=account.key, max_retries=0).messages.create(
        model="fast", max_tokens=32, messages=[{"role": "user", "content": "Say hello"}]
    )
    assert alias.model == "fake/chat"


def test_an_alias_to_no_model_stops_the_start(
    upstream: FakeOpenAIUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    directory = tmp_path_factory.mktemp("bad-alias")
    for aliases, said in (
        ({"fast": "acme/missing"}, "'fast' names 'acme/missing', which is not a model of this gateway"),
        ({"fake/chat": "fake/embed"}, "'fake/chat' is already a model id"),
    ):
        path = write_config(directory / "config.yaml", upstream.base_url, {"aliases": aliases})
        with pytest.raises(RuntimeError) as caught:
            start_gateway(f"sqlite:///{directory / 'bad.db'}", path, directory).stop()
        assert said in str(caught.value)
