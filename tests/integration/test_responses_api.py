"""POST /api/v1/responses through the official openai SDK: text, streams, a function call round trip and
json_schema on OpenAI-compatible, Anthropic, Gemini and the offline model, each billed exactly (the usage's
cost, /generation and the ledger agree); stateless requests refused with the ledger untouched."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import ROUND_CEILING, Decimal
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.fakes.anthropic_upstream import FakeAnthropicUpstream
from tests.fakes.gemini_upstream import FakeGeminiUpstream
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support import GatewayServer, nanos, provider_kinds, start_sqlite_gateway

pytestmark = pytest.mark.usefixtures("fresh_fakes")

PRICING = {"prompt": "0.000003", "completion": "0.000015", "request": "0.00001"}
KINDS = ("oa", "cl", "gm")
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def expected_nanos(prompt: int, completion: int) -> int:
    p = {k: Decimal(v) for k, v in PRICING.items()}
    usd = prompt * p["prompt"] + completion * p["completion"] + p["request"]
    return int((usd * 10**9).to_integral_value(rounding=ROUND_CEILING))


@pytest.fixture(scope="module")
def gateway_of_kinds(
    claude: FakeAnthropicUpstream,
    gemini: FakeGeminiUpstream,
    upstream: FakeOpenAIUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("responses")
    extra = provider_kinds(upstream.base_url, claude.base_url, gemini.base_url, PRICING)
    server = start_sqlite_gateway(directory, upstream.base_url, extra)
    yield server
    server.stop()


def client_for(gateway: GatewayServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api, api_key=key, max_retries=0)


def assert_billed(gateway: GatewayServer, account_id: str, key: str, response: Any) -> int:
    """The response's usage cost equals /generation's and the ledger's; returns it in nanos."""
    usage = response.usage.model_dump()
    cost = nanos(usage["cost"])
    record = gateway.get("/generation", key, id=response.id).json()["data"]
    assert nanos(record["total_cost"]) == cost
    assert record["tokens_prompt"] == usage["input_tokens"]
    assert record["tokens_completion"] == usage["output_tokens"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    figures = gateway.balance(account_id)
    assert nanos(figures["total_usage"]) == cost and nanos(figures["held_in_flight"]) == 0
    return cost


REPLIES = {"oa": "Hello from the fake upstream.", "cl": "Hello from Claude.", "gm": "Ciao from Gemini"}


@pytest.mark.parametrize("kind", KINDS)
def test_text_answer_on_every_provider_kind_is_billed_exactly(
    gateway_of_kinds: GatewayServer,
    upstream: FakeOpenAIUpstream,
    claude: FakeAnthropicUpstream,
    gemini: FakeGeminiUpstream,
    kind: str,
) -> None:
    account = gateway_of_kinds.new_account("10")
    client = client_for(gateway_of_kinds, account.key)
    response = client.responses.create(model=f"kinds/{kind}", input="Say hello", instructions="Be brief.")
    assert response.output_text == REPLIES[kind]
    assert response.status == "completed" and response.object == "response"
    assert response.model == f"kinds/{kind}"
    usage = response.usage
    assert usage is not None
    cost = assert_billed(gateway_of_kinds, account.id, account.key, response)
    assert cost == expected_nanos(usage.input_tokens, usage.output_tokens)
    if kind == "oa":
        sent = upstream.calls[-1].body["messages"]
        assert sent == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
    elif kind == "cl":
        assert claude.calls[-1]["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
    else:
        assert gemini.calls[-1][1]["systemInstruction"]["parts"][0]["text"] == "Be brief."


@pytest.mark.parametrize("kind", KINDS)
def test_stream_gives_the_event_sequence_and_the_cost(gateway_of_kinds: GatewayServer, kind: str) -> None:
    account = gateway_of_kinds.new_account("10")
    client = client_for(gateway_of_kinds, account.key)
    with client.responses.stream(model=f"kinds/{kind}", input=[{"role": "user", "content": "Say hello"}]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for expected in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert expected in kinds
    numbers = [event.sequence_number for event in events]
    assert numbers == list(range(len(events)))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text == REPLIES[kind] == final.output_text
    assert final.usage is not None and final.usage.model_dump()["cost"] > 0
    assert_billed(gateway_of_kinds, account.id, account.key, final)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("kind", KINDS)
def test_function_call_round_trip(
    gateway_of_kinds: GatewayServer,
    upstream: FakeOpenAIUpstream,
    claude: FakeAnthropicUpstream,
    gemini: FakeGeminiUpstream,
    kind: str,
    stream: bool,
) -> None:
    account = gateway_of_kinds.new_account("10")
    client = client_for(gateway_of_kinds, account.key)
    upstream.behaviour.tool_call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
    }
    question: Any = {"role": "user", "content": "Weather in the capital?"}
    first: Any
    if stream:
        with client.responses.stream(model=f"kinds/{kind}", input=[question], tools=[WEATHER]) as events:
            seen = [event.type for event in events]
            first = events.get_final_response()
        assert "response.function_call_arguments.done" in seen
        if kind == "oa":
            assert "response.function_call_arguments.delta" in seen
    else:
        first = client.responses.create(
            model=f"kinds/{kind}", input=[question], tools=[WEATHER], tool_choice="required"
        )
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments)["city"] in ("Oslo", "Paris", "Rome")
    assert first.tools[0].model_dump()["name"] == "get_weather"
    assert_billed(gateway_of_kinds, account.id, account.key, first)
    spent = nanos(gateway_of_kinds.balance(account.id)["total_usage"])

    upstream.behaviour.tool_call = None
    # The SDK's own output items go back as they came (ids, statuses, any text and reasoning included).
    history: list[Any] = [
        question,
        *first.output,
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"celsius": 21}'},
    ]
    second = client.responses.create(model=f"kinds/{kind}", input=history, tools=[WEATHER], tool_choice="none")
    assert second.output_text
    assert second.usage is not None
    cost = nanos(second.usage.model_dump()["cost"])
    assert nanos(gateway_of_kinds.balance(account.id)["total_usage"]) == spent + cost
    if kind == "oa":
        sent = upstream.calls[-1].body["messages"]
        assert len(sent) == 3, sent
        assert sent[1]["role"] == "assistant" and sent[1]["tool_calls"][0]["id"] == calls[0].call_id
        assert sent[2] == {"role": "tool", "tool_call_id": calls[0].call_id, "content": '{"celsius": 21}'}
    elif kind == "cl":
        blocks = claude.calls[-1]["messages"][-1]["content"]
        assert blocks[0]["type"] == "tool_result" and blocks[0]["tool_use_id"] == calls[0].call_id
    else:
        parts = [p for c in gemini.calls[-1][1]["contents"] for p in c["parts"]]
        assert any("functionResponse" in part for part in parts)


class City(BaseModel):
    name: str
    population: int


def test_json_schema_reaches_the_upstream_and_the_offline_model_follows_it(
    gateway_of_kinds: GatewayServer, upstream: FakeOpenAIUpstream, gemini: FakeGeminiUpstream
) -> None:
    account = gateway_of_kinds.new_account("10")
    client = client_for(gateway_of_kinds, account.key)
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    text: Any = {"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}}
    client.responses.create(model="kinds/oa", input="Which city?", text=text)
    assert upstream.calls[-1].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }
    client.responses.create(model="kinds/gm", input="Which city?", text=text)
    assert gemini.calls[-1][1]["generationConfig"]["responseJsonSchema"] == schema
    parsed = client.responses.parse(model="tollway/offline-small", input="Tell me of Paris", text_format=City)
    assert isinstance(parsed.output_parsed, City)
    with client.responses.stream(model="tollway/offline-small", input="Paris?", text_format=City) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert isinstance(final.output_parsed, City)
    assert final.usage is not None and nanos(final.usage.model_dump()["cost"]) > 0


def test_offline_model_text_stream_reasoning_and_max_output_tokens(gateway_of_kinds: GatewayServer) -> None:
    account = gateway_of_kinds.new_account("10")
    client = client_for(gateway_of_kinds, account.key)
    response = client.responses.create(
        model="tollway/offline-small", input="Tell me a story", max_output_tokens=5, reasoning={"effort": "low"}
    )
    assert response.usage is not None and response.usage.output_tokens <= 5 + 1024
    assert response.max_output_tokens == 5
    stream = client.responses.create(model="tollway/offline-small", input="Tell me a story", stream=True)
    events = list(stream)
    assert events[-1].type == "response.completed"
    final = events[-1].response
    assert final.output_text and final.usage is not None
    assert_billed_total = nanos(gateway_of_kinds.balance(account.id)["total_usage"])
    assert assert_billed_total == nanos(response.usage.model_dump()["cost"]) + nanos(final.usage.model_dump()["cost"])


def test_images_reach_the_upstream_as_image_parts(
    gateway_of_kinds: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    account = gateway_of_kinds.new_account("10")
    client = client_for(gateway_of_kinds, account.key)
    url = "https://example.com/cat.png"
    client.responses.create(
        model="kinds/oa",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": url, "detail": "low"},
                ],
            }
        ],
    )
    content = upstream.calls[-1].body["messages"][0]["content"]
    assert content == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
    ]


STATELESS = [
    ({"store": True}, "store"),
    ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"background": True}, "background"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
]


@pytest.mark.parametrize(("extra", "field"), STATELESS)
def test_stateful_requests_are_refused_saying_the_api_is_stateless(
    gateway_of_kinds: GatewayServer, upstream: FakeOpenAIUpstream, extra: dict[str, Any], field: str
) -> None:
    account = gateway_of_kinds.new_account("10")
    client = client_for(gateway_of_kinds, account.key)
    body = {"model": "kinds/oa", "input": "hi", **extra}
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/responses", cast_to=object, body=body)
    error = caught.value.body
    assert isinstance(error, dict)
    assert "stateless" in error["message"] and error["metadata"]["field"] == field
    assert upstream.calls == []
    figures = gateway_of_kinds.balance(account.id)
    assert nanos(figures["total_usage"]) == 0 and nanos(figures["held_in_flight"]) == 0


HOSTILE: list[Any] = [
    [],
    "input",
    {},
    {"model": "kinds/oa"},
    {"model": "kinds/oa", "input": None},
    {"model": "kinds/oa", "input": []},
    {"model": "kinds/oa", "input": 7},
    {"model": "kinds/oa", "input": [7]},
    {"model": "kinds/oa", "input": [{"role": "wizard", "content": "hi"}]},
    {"model": "kinds/oa", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
    {"model": "kinds/oa", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
    {"model": "kinds/oa", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
    {"model": "kinds/oa", "input": [{"type": "function_call", "name": "x"}]},
    {"model": "kinds/oa", "input": [{"type": "function_call_output", "call_id": "c", "output": 5}]},
    {"model": "kinds/oa", "input": [{"type": "reasoning", "summary": []}]},
    {"model": "kinds/oa", "input": "hi", "tools": [{"type": "web_search"}]},
    {"model": "kinds/oa", "input": "hi", "tools": [{"type": "function"}]},
    {"model": "kinds/oa", "input": "hi", "tools": {"type": "function"}},
    {"model": "kinds/oa", "input": "hi", "tool_choice": "sometimes"},
    {"model": "kinds/oa", "input": "hi", "tool_choice": {"type": "mcp"}},
    {"model": "kinds/oa", "input": "hi", "max_output_tokens": 0},
    {"model": "kinds/oa", "input": "hi", "max_output_tokens": "12"},
    {"model": "kinds/oa", "input": "hi", "max_output_tokens": True},
    {"model": "kinds/oa", "input": "hi", "text": {"format": {"type": "xml"}}},
    {"model": "kinds/oa", "input": "hi", "text": {"format": {"type": "json_schema", "name": "a"}}},
    {"model": "kinds/oa", "input": "hi", "text": "json"},
    {"model": "kinds/oa", "input": "hi", "reasoning": {"effort": "extreme"}},
    {"model": "kinds/oa", "input": "hi", "reasoning": "high"},
    {"model": "kinds/oa", "input": "hi", "temperature": "hot"},
    {"model": "kinds/oa", "input": "hi", "stream": "yes"},
    {"model": "kinds/oa", "input": "hi", "instructions": ["a"]},
    {"model": "kinds/oa", "input": "hi", "metadata": "x"},
    {"model": 5, "input": "hi"},
    {"model": "no/such-model", "input": "hi"},
    {"input": "hi"},
]


def test_hostile_bodies_get_a_precise_4xx_and_the_ledger_is_untouched(
    gateway_of_kinds: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    account = gateway_of_kinds.new_account("10")
    for body in HOSTILE:
        response = gateway_of_kinds.post("/responses", account.key, body)
        assert 400 <= response.status_code < 500, (body, response.text)
        assert response.json()["error"]["message"], body
    raw = httpx.post(
        gateway_of_kinds.api + "/responses",
        content=b"{not json",
        headers={"Authorization": f"Bearer {account.key}"},
        timeout=10,
    )
    assert raw.status_code == 400
    unauthenticated = httpx.post(gateway_of_kinds.api + "/responses", json={"input": "hi"}, timeout=10)
    assert unauthenticated.status_code == 401
    assert upstream.calls == []
    figures = gateway_of_kinds.balance(account.id)
    assert nanos(figures["total_usage"]) == 0 and nanos(figures["held_in_flight"]) == 0


def test_a_refusal_for_money_is_explained_like_chat(gateway_of_kinds: GatewayServer) -> None:
    account = gateway_of_kinds.new_account(None)
    client = client_for(gateway_of_kinds, account.key)
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(model="kinds/oa", input="hi")
    assert caught.value.status_code == 402
    body = caught.value.body
    assert isinstance(body, dict)
    explanation = body["metadata"]["explanation"]
    request_id = caught.value.response.headers["X-Request-Id"]
    report = gateway_of_kinds.get("/balance", account.key).json()["data"]
    last = report["last_refusals"][0]
    assert last["status"] == 402 and last["reason"] == explanation["code"] and last["request_id"] == request_id
    assert report["explanations"][0]["code"] == explanation["code"]


def test_an_upstream_breaking_mid_stream_ends_with_response_failed_and_bills_what_was_sent(
    gateway_of_kinds: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    account = gateway_of_kinds.new_account("10")
    upstream.behaviour.break_after_chunks = 2
    client = client_for(gateway_of_kinds, account.key)
    events = list(client.responses.create(model="kinds/oa", input="hi", stream=True))
    kinds = [event.type for event in events]
    assert kinds[-2:] == ["error", "response.failed"]
    figures = gateway_of_kinds.balance(account.id)
    assert nanos(figures["held_in_flight"]) == 0 and nanos(figures["total_usage"]) > 0


PDF = "data:application/pdf;base64,JVBERi0xLjQK"


@pytest.mark.parametrize("kind", KINDS)
def test_every_input_shape_reaches_every_provider_kind_without_a_server_error(
    gateway_of_kinds: GatewayServer, kind: str
) -> None:
    account = gateway_of_kinds.new_account("10")
    body = {
        "model": f"kinds/{kind}",
        "instructions": "Be brief.",
        "input": [
            {"role": "developer", "content": "Answer in French."},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Look:"},
                    {"type": "input_image", "image_url": "https://example.com/a.png"},
                    {"type": "input_file", "filename": "a.pdf", "file_data": PDF},
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Let me check.", "annotations": []}],
            },
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
            {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "sunny"}]},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "tools": [WEATHER],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "max_output_tokens": 64,
        "store": False,
        "metadata": {"ticket": "42"},
        "include": ["reasoning.encrypted_content"],
        "truncation": "disabled",
    }
    response = gateway_of_kinds.post("/responses", account.key, body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["object"] == "response" and data["usage"]["cost"] > 0
    assert data["metadata"] == {"ticket": "42"} and data["max_output_tokens"] == 64
    figures = gateway_of_kinds.balance(account.id)
    assert nanos(figures["total_usage"]) == nanos(data["usage"]["cost"])


def test_a_stored_response_cannot_be_fetched_or_deleted(gateway_of_kinds: GatewayServer) -> None:
    account = gateway_of_kinds.new_account("10")
    client = client_for(gateway_of_kinds, account.key)
    made = client.responses.create(model="kinds/oa", input="hi")
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve(made.id)
    assert "stateless" in caught.value.message and "/generation" in caught.value.message
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(made.id)
    anonymous = httpx.get(gateway_of_kinds.api + "/responses/" + made.id, timeout=10)
    assert anonymous.status_code == 401


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_anthropic_thinking_comes_back_as_a_reasoning_item_and_is_billed(
    gateway_of_kinds: GatewayServer, claude: FakeAnthropicUpstream, stream: bool
) -> None:
    account = gateway_of_kinds.new_account("10")
    client = client_for(gateway_of_kinds, account.key)
    claude.thinking = "Weighing it up."
    claude.thinking_tokens = 120
    options: Any = {"model": "kinds/cl", "input": "hi", "max_output_tokens": 100, "reasoning": {"max_tokens": 2000}}
    if stream:
        with client.responses.stream(**options) as events:
            kinds = [event.type for event in events]
            response = events.get_final_response()
        assert "response.reasoning_text.delta" in kinds
        assert kinds.index("response.reasoning_text.delta") < kinds.index("response.output_text.delta")
    else:
        response = client.responses.create(**options)
    assert claude.calls[-1]["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    reasoning = response.output[0]
    assert reasoning.type == "reasoning" and reasoning.content is not None
    assert reasoning.content[0].text == "Weighing it up."
    assert response.output_text == REPLIES["cl"]
    usage = response.usage
    assert usage is not None and usage.output_tokens == len(claude.reply_words) + 120
    assert nanos(usage.model_dump()["cost"]) == expected_nanos(usage.input_tokens, usage.output_tokens)
    assert_billed(gateway_of_kinds, account.id, account.key, response)


def test_a_client_leaving_mid_stream_is_billed_for_what_was_produced(
    gateway_of_kinds: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    account = gateway_of_kinds.new_account("10")
    upstream.behaviour.reply_words = [f" w{i}" for i in range(200)]
    upstream.behaviour.chunk_delay_s = 0.02
    body = {"model": "kinds/oa", "input": "count", "stream": True}
    headers = {"Authorization": f"Bearer {account.key}"}
    with httpx.stream("POST", gateway_of_kinds.api + "/responses", json=body, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        generation_id = response.headers["X-Generation-Id"]
        deltas = 0
        for line in response.iter_lines():
            deltas += line.startswith("event: response.output_text.delta")
            if deltas >= 5:
                break  # leaving: the connection closes here
    deadline = time.monotonic() + 10
    record: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        found = gateway_of_kinds.get("/generation", account.key, id=generation_id)
        if found.status_code == 200:
            record = found.json()["data"]
            break
        time.sleep(0.05)
    assert record is not None and record["cancelled"] is True and record["status"] == 499, record
    assert 5 <= record["tokens_completion"] < 200
    figures = gateway_of_kinds.balance(account.id)
    assert nanos(figures["total_usage"]) == nanos(record["total_cost"]) > 0
    assert nanos(figures["held_in_flight"]) == 0


def test_offline_model_makes_the_function_call_it_is_told_to(gateway_of_kinds: GatewayServer) -> None:
    account = gateway_of_kinds.new_account("10")
    client = client_for(gateway_of_kinds, account.key)
    options: Any = {"model": "tollway/offline-small", "input": "Weather in Paris?", "tools": [WEATHER]}
    made = client.responses.create(**options, tool_choice={"type": "function", "name": "get_weather"})
    call = made.output[-1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert isinstance(json.loads(call.arguments)["city"], str)
    with client.responses.stream(**options, tool_choice="required") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    assert final.output[-1].type == "function_call"
    assert final.usage is not None and nanos(final.usage.model_dump()["cost"]) > 0
