"""Anthropic upstreams and /api/v1/messages, routing preferences, failover and the circuit breaker."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropicUpstream
from tests.fakes.gemini_upstream import FakeGeminiUpstream
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support import GatewayServer, nanos, start_sqlite_gateway

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def routed(
    claude: FakeAnthropicUpstream,
    gemini: FakeGeminiUpstream,
    upstream: FakeOpenAIUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("routing")
    cheap = {"prompt": "0.000001", "completion": "0.000001"}
    dear = {"prompt": "0.000002", "completion": "0.000002"}
    extra = {
        "providers": [
            {"name": "fakeup", "kind": "openai", "base_url": upstream.base_url, "display_name": "FakeUp"},
            {"name": "fakeup2", "kind": "openai", "base_url": upstream.base_url, "display_name": "FakeUp Two"},
            {
                "name": "claude",
                "kind": "anthropic",
                "base_url": claude.base_url,
                "api_key_env": "CLAUDE_KEY",
                "display_name": "Claude Co",
            },
            {"name": "deadup", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"},
            {"name": "gem", "kind": "gemini", "base_url": gemini.base_url, "api_key_env": "GEMINI_KEY"},
        ],
        "models": [
            {
                "id": "google/gemini-flash",
                "endpoints": [{"provider": "gem", "upstream_model": "gemini-flash", "pricing": cheap}],
            },
            {
                "id": "claude/sonnet",
                "max_completion_tokens": 512,
                "endpoints": [{"provider": "claude", "upstream_model": "claude-sonnet", "pricing": cheap}],
            },
            {
                "id": "spread/chat",
                "endpoints": [
                    {"provider": "fakeup", "upstream_model": "cheap", "pricing": cheap},
                    {
                        "provider": "fakeup2",
                        "upstream_model": "dear",
                        "pricing": dear,
                        "data_collection": "allow",
                        "supports": ["temperature", "max_tokens"],
                    },
                ],
            },
            {
                "id": "breaker/chat",
                "endpoints": [
                    {"provider": "deadup", "upstream_model": "dead", "pricing": cheap},
                    {"provider": "fakeup", "upstream_model": "alive", "pricing": dear},
                ],
            },
        ],
    }
    server = start_sqlite_gateway(
        directory, upstream.base_url, extra, env={"CLAUDE_KEY": "sk-ant-x", "GEMINI_KEY": "g-key"}
    )
    yield server
    server.stop()


def sdk(gateway: GatewayServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api, api_key=key, max_retries=0)


def test_openai_request_is_translated_to_anthropic_and_back(
    routed: GatewayServer, claude: FakeAnthropicUpstream
) -> None:
    account = routed.new_account("5")
    completion = sdk(routed, account.key).chat.completions.create(
        model="claude/sonnet",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        stop=["END"],
    )
    sent = claude.calls[-1]
    assert sent["system"] == "Be brief." and sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]}
    ]
    assert sent["max_tokens"] <= 512 and sent["stop_sequences"] == ["END"] and sent["model"] == "claude-sonnet"
    assert claude.headers[-1]["x-api-key"] == "sk-ant-x"
    assert claude.headers[-1]["anthropic-version"] == "2023-06-01"
    assert completion.choices[0].message.content == "Hello from Claude."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].model_extra["native_finish_reason"] == "end_turn"  # type: ignore[index]
    assert completion.usage is not None and completion.usage.prompt_tokens == 21
    assert nanos(completion.usage.model_extra["cost"]) == 21 * 1000 + 4 * 1000  # type: ignore[index]
    assert completion.model_extra["provider"] == "Claude Co"  # type: ignore[index]


def test_anthropic_tools_streamed_and_not(routed: GatewayServer) -> None:
    account = routed.new_account("5")
    client = sdk(routed, account.key)
    completion = client.chat.completions.create(
        model="claude/sonnet", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL]
    )
    call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    stream = client.chat.completions.create(
        model="claude/sonnet", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL], stream=True
    )
    arguments, names, finish, text = "", [], None, ""
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for tool_call in choice.delta.tool_calls or []:
                if tool_call.function and tool_call.function.name:
                    names.append(tool_call.function.name)
                arguments += (tool_call.function.arguments or "") if tool_call.function else ""
            finish = choice.finish_reason or finish
    assert text == "Hello from Claude." and names == ["get_weather"]
    assert json.loads(arguments) == {"city": "Paris"} and finish == "tool_calls"


def test_anthropic_sdk_against_messages_endpoint(routed: GatewayServer) -> None:
    account = routed.new_account("5")
    client = anthropic.Anthropic(base_url=routed.base_url + "/api", api_key=account.key, max_retries=0)
    message = client.messages.create(
        model="tollway/offline-small",
        max_tokens=50,
        system="You are terse.",
        messages=[{"role": "user", "content": "/echo bonjour tout le monde"}],
    )
    assert message.content[0].text == "bonjour tout le monde"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 4
    with client.messages.stream(
        model="claude/sonnet", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from Claude."
    assert final.usage.input_tokens == 21 and final.usage.output_tokens == 4
    spent = 5 * 10**9 - nanos(routed.balance(account.id)["balance"])
    assert spent > 0
    header_auth = httpx.post(
        routed.api + "/messages",
        headers={"x-api-key": account.key},
        json={"model": "tollway/offline-small", "max_tokens": 5, "messages": [{"role": "user", "content": "/echo ok"}]},
    )
    assert header_auth.status_code == 200 and header_auth.json()["content"][0]["text"] == "ok"


def test_routing_preferences_filter_and_fail_precisely(routed: GatewayServer, upstream: FakeOpenAIUpstream) -> None:
    account = routed.new_account("5")
    body = {"model": "spread/chat", "messages": [{"role": "user", "content": "x"}]}
    unknown = routed.post("/chat/completions", account.key, {**body, "provider": {"only": ["nobody"]}})
    assert unknown.status_code == 400 and "nobody" in unknown.json()["error"]["message"]
    empty = routed.post("/chat/completions", account.key, {**body, "provider": {"only": ["claude"]}})
    assert empty.status_code == 404 and empty.json()["error"]["message"] == "No endpoints found for spread/chat."
    too_dear = routed.post("/chat/completions", account.key, {**body, "provider": {"max_price": {"prompt": 0.5}}})
    assert too_dear.status_code == 404
    fits = routed.post("/chat/completions", account.key, {**body, "provider": {"max_price": {"prompt": 1.5}}})
    assert fits.status_code == 200 and fits.json()["provider"] == "FakeUp"
    ordered = routed.post("/chat/completions", account.key, {**body, "provider": {"order": ["fakeup2"]}})
    assert ordered.json()["provider"] == "FakeUp Two"
    private = routed.post(
        "/chat/completions", account.key, {**body, "provider": {"data_collection": "deny", "order": ["fakeup2"]}}
    )
    assert private.json()["provider"] == "FakeUp"
    floor = routed.post("/chat/completions", account.key, {**body, "model": "spread/chat:floor"})
    assert floor.json()["provider"] == "FakeUp" and floor.json()["model"] == "spread/chat"


def test_default_spread_weights_endpoints_by_inverse_square_price(routed: GatewayServer) -> None:
    account = routed.new_account("5")
    providers = Counter(
        routed.post(
            "/chat/completions", account.key, {"model": "spread/chat", "messages": [{"role": "user", "content": "x"}]}
        ).json()["provider"]
        for _ in range(100)
    )
    # Weights 1/1² : 1/2² = 80 % : 20 %.
    assert 65 <= providers["FakeUp"] <= 93, providers
    assert providers["FakeUp"] + providers["FakeUp Two"] == 100


def test_circuit_breaker_skips_a_failing_endpoint_then_retries_it(routed: GatewayServer) -> None:
    account = routed.new_account("5")
    body = {
        "model": "breaker/chat",
        "messages": [{"role": "user", "content": "x"}],
        "provider": {"order": ["deadup", "fakeup"]},
    }
    attempts = []
    for _ in range(5):
        response = routed.post("/chat/completions", account.key, body)
        assert response.status_code == 200
        generation = routed.get("/generation", account.key, id=response.json()["id"]).json()["data"]
        attempts.append([a["status"] for a in generation["provider_responses"]])
    assert attempts[:3] == [[0, 200]] * 3  # three connection failures open the circuit...
    assert attempts[3:] == [[200]] * 2  # ...then the dead endpoint is skipped
    endpoints = httpx.get(routed.api + "/models/breaker/chat/endpoints").json()["data"]["endpoints"]
    assert {e["tag"]: e["circuit"] for e in endpoints}["deadup"] == "open"


def test_models_fallback_bills_the_serving_model(routed: GatewayServer, upstream: FakeOpenAIUpstream) -> None:
    account = routed.new_account("5")
    upstream.behaviour.status = 503
    response = routed.post(
        "/chat/completions",
        account.key,
        {
            "model": "fake/chat",
            "models": ["unknown/model", "claude/sonnet"],
            "messages": [{"role": "user", "content": "x"}],
        },
    )
    assert response.status_code == 200
    assert response.json()["model"] == "claude/sonnet"
    assert nanos(response.json()["usage"]["cost"]) == 21 * 1000 + 4 * 1000


def test_gemini_translation_streamed_and_not_with_tools(routed: GatewayServer, gemini: FakeGeminiUpstream) -> None:
    account = routed.new_account("5")
    client = sdk(routed, account.key)
    completion = client.chat.completions.create(
        model="google/gemini-flash",
        messages=[{"role": "system", "content": "Short answers."}, {"role": "user", "content": "Hi"}],
        max_tokens=50,
    )
    path, body, headers = gemini.calls[-1]
    assert path == "/v1beta/models/gemini-flash:generateContent" and headers["x-goog-api-key"] == "g-key"
    assert body["systemInstruction"] == {"parts": [{"text": "Short answers."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]
    assert body["generationConfig"]["maxOutputTokens"] == 50
    assert completion.choices[0].message.content == "Ciao from Gemini"
    assert completion.usage is not None and completion.usage.prompt_tokens == 9
    assert nanos(completion.usage.model_extra["cost"]) == 12 * 1000  # type: ignore[index]
    stream = client.chat.completions.create(
        model="google/gemini-flash", stream=True, messages=[{"role": "user", "content": "Hi"}]
    )
    text = "".join(choice.delta.content or "" for chunk in stream for choice in chunk.choices)
    assert text == "Ciao from Gemini"
    assert gemini.calls[-1][0].endswith(":streamGenerateContent?alt=sse")
    tools = client.chat.completions.create(
        model="google/gemini-flash", tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "Weather in Rome?"}]
    )
    call = tools.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert tools.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Rome"}
    assert gemini.calls[-1][1]["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"


def test_require_parameters_skips_endpoints_that_do_not_support_them(routed: GatewayServer) -> None:
    account = routed.new_account("5")
    body = {"model": "spread/chat", "messages": [{"role": "user", "content": "x"}], "tools": [WEATHER_TOOL]}
    served = routed.post(
        "/chat/completions",
        account.key,
        {**body, "provider": {"require_parameters": True, "order": ["fakeup2", "fakeup"]}},
    )
    assert served.status_code == 200 and served.json()["provider"] == "FakeUp"
    none_left = routed.post(
        "/chat/completions", account.key, {**body, "provider": {"require_parameters": True, "only": ["fakeup2"]}}
    )
    assert none_left.status_code == 404
    assert none_left.json()["error"]["message"] == (
        "No endpoints found for spread/chat that support tools (provider.require_parameters is true)."
    )
    ignored = routed.post("/chat/completions", account.key, {**body, "provider": {"only": ["fakeup2"]}})
    assert ignored.status_code == 200  # without require_parameters, unsupported parameters are ignored
