"""Every token kind priced, on every provider kind, streamed and not: cache reads, cache writes (5-minute
and 1-hour), reasoning, images and the request fee, each billed by the formula from what the fake
upstreams report in their own providers' usage shapes; tools, tool_choice and response_format
translated; reasoning returned; upstreams that report no usage billed by the estimate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import ROUND_CEILING, Decimal
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropicUpstream
from tests.fakes.gemini_upstream import FakeGeminiUpstream
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support import GatewayServer, nanos, provider_kinds, run_cli, start_sqlite_gateway

pytestmark = pytest.mark.usefixtures("fresh_fakes")

PRICING = {
    "prompt": "0.000003",
    "completion": "0.000015",
    "request": "0.00001",
    "input_cache_read": "0.0000003",
    "input_cache_write": "0.00000375",
    "input_cache_write_1h": "0.000006",
    "internal_reasoning": "0.00002",
    "image": "0.001",
    "web_search": "0.01",
}
PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def expected_nanos(
    *,
    prompt: int,
    completion: int,
    cached: int = 0,
    write_5m: int = 0,
    write_1h: int = 0,
    reasoning: int = 0,
    images: int = 0,
) -> int:
    """The issue's formula in Decimal USD, rounded up once to the nano-dollar."""
    p = {k: Decimal(v) for k, v in PRICING.items()}
    usd = (
        (prompt - cached - write_5m - write_1h) * p["prompt"]
        + cached * p["input_cache_read"]
        + write_5m * p["input_cache_write"]
        + write_1h * p["input_cache_write_1h"]
        + (completion - reasoning) * p["completion"]
        + reasoning * p["internal_reasoning"]
        + images * p["image"]
        + p["request"]
    )
    return int((usd * 10**9).to_integral_value(rounding=ROUND_CEILING))


@pytest.fixture(scope="module")
def priced(
    claude: FakeAnthropicUpstream,
    gemini: FakeGeminiUpstream,
    upstream: FakeOpenAIUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("pricing")
    extra = provider_kinds(upstream.base_url, claude.base_url, gemini.base_url, PRICING)
    extra["models"].append(
        {
            "id": "plain/oa",
            "endpoints": [
                {
                    "provider": "oa",
                    "upstream_model": "plain",
                    "pricing": {"prompt": "0.000001", "completion": "0.000002"},
                }
            ],
        }
    )
    server = start_sqlite_gateway(directory, upstream.base_url, extra)
    yield server
    server.stop()


def chat(gateway: GatewayServer, key: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One request, streamed or not: (the message or the joined deltas, the usage object)."""
    if not body.get("stream"):
        response = gateway.post("/chat/completions", key, body)
        assert response.status_code == 200, response.text
        data = response.json()
        return data["choices"][0]["message"], data["usage"] | {"id": data["id"]}
    message: dict[str, Any] = {"content": "", "reasoning": "", "tool_calls": []}
    usage: dict[str, Any] = {}
    with httpx.stream(
        "POST",
        gateway.api + "/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json=body,
        timeout=60,
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            assert "error" not in chunk, chunk
            for choice in chunk["choices"]:
                delta = choice["delta"]
                message["content"] += delta.get("content") or ""
                message["reasoning"] += delta.get("reasoning") or ""
                message["tool_calls"] += delta.get("tool_calls") or []
            if chunk.get("usage"):
                usage = chunk["usage"] | {"id": chunk["id"]}
    return message, usage


def generation(gateway: GatewayServer, key: str, generation_id: str) -> dict[str, Any]:
    response = gateway.get("/generation", key, id=generation_id)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


STREAMED = pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])


@STREAMED
def test_openai_cache_read_cache_write_and_reasoning(
    priced: GatewayServer, upstream: FakeOpenAIUpstream, stream: bool
) -> None:
    account = priced.new_account("10")
    upstream.behaviour.prompt_tokens = 1000
    upstream.behaviour.usage_override = {
        "completion_tokens": 506,
        "prompt_tokens_details": {"cached_tokens": 700, "cache_write_tokens": 200},
        "completion_tokens_details": {"reasoning_tokens": 500},
    }
    upstream.behaviour.message_extra = {"reasoning_content": "Let me think."}
    message, usage = chat(
        priced,
        account.key,
        {
            "model": "kinds/oa",
            "messages": [{"role": "user", "content": "hi"}],
            "reasoning": {"effort": "high"},
            "stream": stream,
        },
    )
    cost = expected_nanos(prompt=1000, completion=506, cached=700, write_5m=200, reasoning=500)
    assert nanos(usage["cost"]) == cost
    assert usage["prompt_tokens"] == 1000 and usage["completion_tokens"] == 506
    assert usage["prompt_tokens_details"]["cached_tokens"] == 700
    assert usage["prompt_tokens_details"]["cache_write_tokens"] == 200
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 500
    assert message["reasoning"] == "Let me think."
    sent = upstream.calls[-1].body
    assert sent["reasoning_effort"] == "high" and "reasoning" not in sent
    record = generation(priced, account.key, usage["id"])
    assert nanos(record["total_cost"]) == cost
    assert record["native_tokens_cached"] == 700 and record["native_tokens_reasoning"] == 500
    # The cache saved (1 - 0.1) × 700 reads and cost 0.25 × 200 writes more than plain prompt tokens.
    discount = Decimal(700) * (Decimal("0.000003") - Decimal("0.0000003")) - Decimal(200) * (
        Decimal("0.00000375") - Decimal("0.000003")
    )
    assert Decimal(str(record["cache_discount"])) == discount
    assert record["usage_estimated"] is False
    assert nanos(priced.balance(account.id)["total_usage"]) == cost


@STREAMED
def test_anthropic_cache_reads_and_both_cache_writes(
    priced: GatewayServer, claude: FakeAnthropicUpstream, stream: bool
) -> None:
    account = priced.new_account("10")
    claude.usage = {
        "input_tokens": 50,
        "cache_read_input_tokens": 400,
        "cache_creation_input_tokens": 300,
        "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
    }
    system = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    _, usage = chat(
        priced,
        account.key,
        {
            "model": "kinds/cl",
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
            ],
            "stream": stream,
        },
    )
    completion = len(claude.reply_words)
    cost = expected_nanos(prompt=750, completion=completion, cached=400, write_5m=100, write_1h=200)
    assert nanos(usage["cost"]) == cost
    assert usage["prompt_tokens"] == 750  # input_tokens excludes cache reads and writes: added back once
    assert usage["prompt_tokens_details"] == {
        "cached_tokens": 400,
        "cache_write_tokens": 300,
        "audio_tokens": 0,
        "video_tokens": 0,
    }
    sent = claude.calls[-1]
    assert sent["system"] == system  # cache breakpoints reach Anthropic unchanged
    assert sent["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert nanos(generation(priced, account.key, usage["id"])["total_cost"]) == cost


@STREAMED
def test_anthropic_thinking_is_output_and_comes_back_as_reasoning(
    priced: GatewayServer, claude: FakeAnthropicUpstream, stream: bool
) -> None:
    account = priced.new_account("10")
    claude.thinking = "Weighing it up."
    claude.thinking_tokens = 120
    message, usage = chat(
        priced,
        account.key,
        {
            "model": "kinds/cl",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 100,
            "reasoning": {"max_tokens": 2000},
            "stream": stream,
        },
    )
    sent = claude.calls[-1]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    assert sent["max_tokens"] == 2100  # the budget comes on top of the answer's max_tokens
    assert "temperature" not in sent
    assert message["reasoning"] == "Weighing it up."
    completion = len(claude.reply_words) + 120
    assert usage["completion_tokens"] == completion
    assert nanos(usage["cost"]) == expected_nanos(prompt=21, completion=completion)


@STREAMED
def test_gemini_thinking_tokens_are_billed_as_output(
    priced: GatewayServer, gemini: FakeGeminiUpstream, stream: bool
) -> None:
    account = priced.new_account("10")
    gemini.usage = {
        "promptTokenCount": 10,
        "candidatesTokenCount": 5,
        "thoughtsTokenCount": 500,
        "cachedContentTokenCount": 4,
        "totalTokenCount": 515,
    }
    gemini.thought = "Pondering."
    message, usage = chat(
        priced,
        account.key,
        {
            "model": "kinds/gm",
            "messages": [{"role": "user", "content": "hi"}],
            "reasoning": {"max_tokens": 4096},
            "stream": stream,
        },
    )
    assert usage["completion_tokens"] == 505  # Google bills thinking as output: 5 + 500
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 500
    assert usage["prompt_tokens"] == 10 and usage["prompt_tokens_details"]["cached_tokens"] == 4
    cost = expected_nanos(prompt=10, completion=505, cached=4, reasoning=500)
    assert nanos(usage["cost"]) == cost
    assert message["reasoning"] == "Pondering."
    assert "Pondering" not in (message["content"] or "")
    config = gemini.calls[-1][1]["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingBudget": 4096, "includeThoughts": True}
    assert config["maxOutputTokens"] == 1024 + 4096  # thinking counts against the output limit


@pytest.mark.parametrize("model", ["kinds/oa", "kinds/cl", "kinds/gm"])
@STREAMED
def test_an_image_is_priced_and_reaches_every_provider(
    priced: GatewayServer,
    upstream: FakeOpenAIUpstream,
    claude: FakeAnthropicUpstream,
    gemini: FakeGeminiUpstream,
    model: str,
    stream: bool,
) -> None:
    account = priced.new_account("10")
    parts = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": PIXEL}}]
    _, usage = chat(
        priced, account.key, {"model": model, "messages": [{"role": "user", "content": parts}], "stream": stream}
    )
    if model == "kinds/oa":
        assert upstream.calls[-1].body["messages"][0]["content"][1]["image_url"]["url"] == PIXEL
    elif model == "kinds/cl":
        assert claude.calls[-1]["messages"][0]["content"][1]["type"] == "image"
    else:
        assert gemini.calls[-1][1]["contents"][0]["parts"][1]["inlineData"]["mimeType"] == "image/png"
    record = generation(priced, account.key, usage["id"])
    assert record["num_media_prompt"] == 1
    expected = expected_nanos(prompt=usage["prompt_tokens"], completion=usage["completion_tokens"], images=1)
    assert nanos(usage["cost"]) == expected == nanos(record["total_cost"])


@pytest.mark.parametrize(
    ("choice", "anthropic_choice", "gemini_mode"),
    [
        ("auto", {"type": "auto"}, "AUTO"),
        ("none", {"type": "none"}, "NONE"),
        ("required", {"type": "any"}, "ANY"),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}, "ANY"),
    ],
    ids=["auto", "none", "required", "named"],
)
@STREAMED
def test_tool_choice_each_way_on_every_provider(
    priced: GatewayServer,
    upstream: FakeOpenAIUpstream,
    claude: FakeAnthropicUpstream,
    gemini: FakeGeminiUpstream,
    choice: Any,
    anthropic_choice: dict[str, Any],
    gemini_mode: str,
    stream: bool,
) -> None:
    account = priced.new_account("10")
    body = {
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": choice,
        "parallel_tool_calls": False,
        "stream": stream,
    }
    calls_tool = choice != "none"
    upstream.behaviour.tool_call = (
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
        if calls_tool
        else None
    )
    for model in ("kinds/oa", "kinds/cl", "kinds/gm"):
        message, usage = chat(priced, account.key, {**body, "model": model})
        assert bool(message.get("tool_calls")) == calls_tool, (model, message)
        assert nanos(usage["cost"]) == expected_nanos(
            prompt=usage["prompt_tokens"], completion=usage["completion_tokens"]
        )
    assert upstream.calls[-1].body["tool_choice"] == choice
    assert upstream.calls[-1].body["parallel_tool_calls"] is False
    assert claude.calls[-1]["tool_choice"] == {**anthropic_choice, "disable_parallel_tool_use": True} or (
        anthropic_choice == {"type": "none"} and claude.calls[-1]["tool_choice"] == anthropic_choice
    )
    assert gemini.calls[-1][1]["toolConfig"]["functionCallingConfig"]["mode"] == gemini_mode


def test_response_format_reaches_gemini_and_anthropic_says_it_cannot(
    priced: GatewayServer, gemini: FakeGeminiUpstream
) -> None:
    account = priced.new_account("10")
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    chat(
        priced,
        account.key,
        {"model": "kinds/gm", "messages": [{"role": "user", "content": "hi"}], "response_format": response_format},
    )
    config = gemini.calls[-1][1]["generationConfig"]
    assert config["responseMimeType"] == "application/json" and config["responseJsonSchema"] == schema
    refused = priced.post(
        "/chat/completions",
        account.key,
        {
            "model": "kinds/cl",
            "messages": [{"role": "user", "content": "hi"}],
            "response_format": response_format,
            "provider": {"require_parameters": True},
        },
    )
    assert refused.status_code == 404, refused.text
    assert "response_format" in refused.json()["error"]["message"]
    models = {m["id"]: m for m in httpx.get(priced.api + "/models", timeout=10).json()["data"]}
    assert "response_format" not in models["kinds/cl"]["supported_parameters"]
    assert {"response_format", "reasoning", "tools", "tool_choice"} <= set(models["kinds/gm"]["supported_parameters"])


def test_models_show_every_pricing_field(priced: GatewayServer) -> None:
    models = {m["id"]: m for m in httpx.get(priced.api + "/models", timeout=10).json()["data"]}
    pricing = models["kinds/oa"]["pricing"]
    for kind, value in PRICING.items():
        assert Decimal(pricing[kind]) == Decimal(value), kind
    plain = models["plain/oa"]["pricing"]
    # Kinds the operator left out are charged as plain tokens, and shown as what they cost.
    assert plain["input_cache_read"] == plain["input_cache_write"] == plain["prompt"] == "0.000001"
    assert plain["internal_reasoning"] == plain["completion"] == "0.000002"
    assert plain["image"] == plain["web_search"] == plain["audio"] == "0"
    endpoints = httpx.get(priced.api + "/models/kinds/cl/endpoints", timeout=10).json()["data"]["endpoints"]
    assert Decimal(endpoints[0]["pricing"]["input_cache_write_1h"]) == Decimal(PRICING["input_cache_write_1h"])
    assert "response_format" not in endpoints[0]["supported_parameters"]


@STREAMED
def test_no_usage_from_upstream_bills_the_estimate_never_zero_prompt(
    priced: GatewayServer, upstream: FakeOpenAIUpstream, stream: bool
) -> None:
    account = priced.new_account("10")
    upstream.behaviour.report_usage = False
    question = "Explain the ledger in detail, please. " * 30
    _, usage = chat(
        priced,
        account.key,
        {"model": "plain/oa", "messages": [{"role": "user", "content": question}], "stream": stream},
    )
    assert usage["prompt_tokens"] >= len(question.encode()) // 3  # bytes / 3 of what was sent, not 0
    assert usage["completion_tokens"] > 0
    record = generation(priced, account.key, usage["id"])
    assert record["usage_estimated"] is True
    assert nanos(record["total_cost"]) == nanos(usage["cost"]) > 0


def test_tool_schemas_are_held_so_a_small_balance_never_goes_negative(
    priced: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    """30 concurrent requests each with a ~40k-token tool schema on a balance worth a handful of them."""
    import concurrent.futures

    properties = {f"field_{i:05d}": {"type": "string", "description": "x" * 90} for i in range(1150)}
    tool = {
        "type": "function",
        "function": {"name": "huge", "parameters": {"type": "object", "properties": properties}},
    }
    upstream.behaviour.prompt_tokens = 30_000  # what a real tokenizer counts for that schema (about bytes / 4)
    account = priced.new_account("0.2")  # 30k prompt tokens at 1 USD / M: 0.03 USD each, about 6 requests' worth
    body = {"model": "plain/oa", "messages": [{"role": "user", "content": "hi"}], "tools": [tool], "max_tokens": 16}

    def one(_: int) -> httpx.Response:
        return priced.post("/chat/completions", account.key, body)

    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        responses = list(pool.map(one, range(30)))
    served = [r for r in responses if r.status_code == 200]
    # Each hold counts the schema (about 40k tokens by bytes / 3): at most 0.2 / 0.04 = 5 fit at once.
    assert 1 <= len(served) <= 6, [r.text for r in responses[:2]]
    assert all(r.status_code in (200, 402) for r in responses), {r.status_code for r in responses}
    figures = priced.balance(account.id)
    assert nanos(figures["balance"]) >= 0
    assert nanos(figures["total_usage"]) == sum(nanos(r.json()["usage"]["cost"]) for r in served)
    for response in served:
        record = generation(priced, account.key, response.json()["id"])
        assert record["hold_overrun"] == 0


def test_a_settlement_above_its_hold_is_recorded_as_an_overrun(
    priced: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    account = priced.new_account("10")
    upstream.behaviour.prompt_tokens = 50_000  # an upstream that counts far more than was sent
    _, usage = chat(priced, account.key, {"model": "plain/oa", "messages": [{"role": "user", "content": "hi"}]})
    record = generation(priced, account.key, usage["id"])
    assert nanos(record["hold_overrun"]) == nanos(record["total_cost"]) - nanos(record["hold"]) > 0
    metrics = httpx.get(priced.base_url + "/metrics", timeout=10).text
    assert 'tollway_hold_overruns_total{model="plain/oa"}' in metrics
    shown = json.loads(run_cli("reconcile", "--json", database_url=priced.database_url).stdout)
    mine = next(o for o in shown["hold_overruns"] if o["account_id"] == account.id)
    assert mine["generations"] == 1 and nanos(mine["overrun"]) == nanos(record["hold_overrun"])


@pytest.mark.parametrize(
    "chunk",
    [b'{"id":"x","choices":[null]}', b'{"id":"x","choices":[{"delta":[1,2]}]}', b'{"choices":"nope"}', b"[1,2,3]"],
    ids=["null-choice", "list-delta", "string-choices", "array-event"],
)
def test_a_malformed_stream_chunk_ends_cleanly_and_frees_the_slot(
    priced: GatewayServer, upstream: FakeOpenAIUpstream, chunk: bytes
) -> None:
    """Whatever an upstream sends, the client gets a whole stream (or an error chunk), the hold is settled
    and a key limited to one request at a time can make the next one."""
    account = priced.new_account("10")
    priced.admin("PUT", f"/keys/{account.key_hash}/limits", {"concurrency": 1})
    upstream.behaviour.raw_chunk = chunk
    body = {"model": "plain/oa", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream(
        "POST", priced.api + "/chat/completions", headers={"Authorization": f"Bearer {account.key}"}, json=body
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]" or "error" in json.loads(lines[-1][6:])
    upstream.behaviour.raw_chunk = None
    again = priced.post("/chat/completions", account.key, {**body, "stream": False})
    assert again.status_code == 200, again.text
    figures = priced.balance(account.id)
    assert nanos(figures["held_in_flight"]) == 0


def test_offline_model_follows_a_json_schema_through_the_openai_sdk(priced: GatewayServer) -> None:
    import openai
    from pydantic import BaseModel

    class City(BaseModel):
        name: str
        population: int
        landmarks: list[str]

    class Answer(BaseModel):
        city: City
        sunny: bool

    account = priced.new_account("10")
    client = openai.OpenAI(base_url=priced.api, api_key=account.key)
    completion = client.chat.completions.parse(
        model="tollway/offline-small",
        messages=[{"role": "user", "content": "Tell me of Paris"}],
        response_format=Answer,
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Answer) and parsed.city.name
    loose = client.chat.completions.create(
        model="tollway/offline-small",
        messages=[{"role": "user", "content": "hi"}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(loose.choices[0].message.content or ""), dict)


@STREAMED
def test_offline_model_makes_the_tool_call_it_is_told_to(priced: GatewayServer, stream: bool) -> None:
    account = priced.new_account("10")
    body = {
        "model": "tollway/offline-small",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "stream": stream,
    }
    message, usage = chat(priced, account.key, body)
    call = message["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert isinstance(json.loads(call["function"]["arguments"])["city"], str)
    assert usage["completion_tokens"] > 0 and nanos(usage["cost"]) > 0
    if not stream:
        response = priced.post("/chat/completions", account.key, body)
        assert response.json()["choices"][0]["finish_reason"] == "tool_calls"
    named_elsewhere = {**body, "tool_choice": {"type": "function", "function": {"name": "missing"}}, "stream": False}
    refused = priced.post("/chat/completions", account.key, named_elsewhere)
    assert refused.status_code == 400 and "missing" in refused.json()["error"]["message"]
    figures = priced.balance(account.id)
    assert nanos(figures["held_in_flight"]) == 0 and nanos(figures["total_usage"]) > 0


def test_messages_api_passes_cache_control_and_reports_cache_usage_in_anthropic_shape(
    priced: GatewayServer, claude: FakeAnthropicUpstream
) -> None:
    import anthropic

    account = priced.new_account("10")
    claude.usage = {"input_tokens": 30, "cache_read_input_tokens": 500, "cache_creation_input_tokens": 70}
    claude.thinking = "Hmm."
    client = anthropic.Anthropic(base_url=priced.base_url + "/api", api_key=account.key)
    system = [{"type": "text", "text": "Long instructions.", "cache_control": {"type": "ephemeral"}}]
    tool = {
        "name": "get_weather",
        "description": "Weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        "cache_control": {"type": "ephemeral"},
    }
    message = client.messages.create(
        model="kinds/cl",
        max_tokens=200,
        system=system,  # type: ignore[arg-type]
        tools=[tool],  # type: ignore[list-item]
        tool_choice={"type": "none"},
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "hi"}],
    )
    sent = claude.calls[-1]
    assert sent["system"] == system
    assert sent["tools"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert message.usage.input_tokens == 30
    assert message.usage.cache_read_input_tokens == 500
    assert message.usage.cache_creation_input_tokens == 70
    assert message.content[0].type == "thinking"
    cost = (message.usage.model_extra or {})["cost"]
    completion = len(claude.reply_words)
    assert nanos(cost) == expected_nanos(prompt=600, completion=completion, cached=500, write_5m=70)
    with client.messages.stream(
        model="kinds/cl",
        max_tokens=200,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "hi"}],
    ) as stream:
        final = stream.get_final_message()
    assert [block.type for block in final.content][:2] == ["thinking", "text"]
    assert final.usage.cache_read_input_tokens == 500
