"""The Responses <-> chat translation as pure functions: requests, results and stream events, the events
checked by the openai SDK's own stream accumulator."""

from __future__ import annotations

from typing import Any

import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tollway.errors import InvalidRequest
from tollway.gateway.responses_api import chat_result_to_response, responses_request_to_chat
from tollway.gateway.responses_stream import ResponsesEvents

USAGE = {
    "prompt_tokens": 10,
    "completion_tokens": 7,
    "total_tokens": 17,
    "cost": 0.000123,
    "is_byok": False,
    "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 1},
    "completion_tokens_details": {"reasoning_tokens": 2},
    "cost_details": {},
}


def test_a_conversation_with_a_function_call_becomes_chat_messages() -> None:
    chat = responses_request_to_chat(
        {
            "model": "m/x",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"type": "function_call_output", "call_id": "c2", "output": "rain"},
            ],
            "tools": [{"type": "function", "name": "w", "parameters": {"type": "object"}, "strict": True}],
            "tool_choice": {"type": "function", "name": "w"},
            "max_output_tokens": 50,
            "reasoning": {"effort": "low", "summary": "auto"},
            "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}}},
            "store": False,
        }
    )
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "w", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "rain"},
    ]
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "w", "parameters": {"type": "object"}, "strict": True}}
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "w"}}
    assert chat["max_tokens"] == 50 and chat["reasoning"] == {"effort": "low"}
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "a", "schema": {"type": "object"}},
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input": "hi", "store": True}, "store"),
        ({"input": "hi", "previous_response_id": "r"}, "previous_response_id"),
        ({"input": [{"type": "computer_call"}]}, "input[0].type"),
        ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input[0].content[0].text"),
    ],
)
def test_refusals_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        responses_request_to_chat(body)
    assert caught.value.metadata["field"] == field


def test_a_chat_result_becomes_a_response_the_sdk_reads() -> None:
    result = {
        "id": "gen-1-abc",
        "created": 5,
        "model": "m/x",
        "provider": "P",
        "choices": [
            {
                "finish_reason": "length",
                "message": {
                    "content": "Hi",
                    "reasoning": "hmm",
                    "tool_calls": [{"id": "c1", "function": {"name": "w", "arguments": "{}"}}],
                },
            }
        ],
        "usage": USAGE,
    }
    body = Response.model_validate(chat_result_to_response(result, {"input": "x"}))
    assert [item.type for item in body.output] == ["reasoning", "message", "function_call"]
    assert body.output_text == "Hi" and body.status == "incomplete"
    assert body.usage is not None and body.usage.input_tokens_details.cached_tokens == 4
    assert body.usage.output_tokens_details.reasoning_tokens == 2
    assert body.usage.model_dump()["cost"] == 0.000123


def chunk(delta: dict[str, Any]) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta}]}


def test_stream_events_accumulate_in_the_sdk() -> None:
    events = ResponsesEvents(generation_id="gen-1-abc", created_at=5, model="m/x", body={"input": "x"})
    raw = events.start()
    raw += events.chunk(chunk({"role": "assistant", "reasoning": "let me"}))
    raw += events.chunk(chunk({"reasoning": " think"}))
    raw += events.chunk(chunk({"content": "Hel"}))
    raw += events.chunk(chunk({"content": "lo"}))
    raw += events.chunk(chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "w", "arguments": ""}}]}))
    raw += events.chunk(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}))
    raw += events.chunk(chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}))
    raw += events.chunk(chunk({"tool_calls": [{"index": 1, "id": "c2", "function": {"name": "v", "arguments": "{}"}}]}))
    raw += events.complete({"created": 6, "usage": USAGE, "provider": "P"}, "tool_calls")
    assert [e["sequence_number"] for e in raw] == list(range(len(raw)))
    adapter: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in raw:
        state.handle_event(adapter.validate_python(event))
    final = state._completed_response
    assert final is not None
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call", "function_call"]
    assert final.output_text == "Hello"
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [("c1", "w", '{"a": 1}'), ("c2", "v", "{}")]
    assert final.usage is not None and final.usage.total_tokens == 17


def test_a_broken_stream_ends_failed() -> None:
    events = ResponsesEvents(generation_id="gen-1-abc", created_at=5, model="m/x", body={"input": "x"})
    raw = events.start() + events.chunk(chunk({"content": "Hel"})) + events.fail({"message": "upstream broke"})
    assert [e["type"] for e in raw][-2:] == ["error", "response.failed"]
    assert raw[-1]["response"]["output"][0]["status"] == "incomplete"


def test_interleaved_tool_calls_keep_every_argument_piece() -> None:
    events = ResponsesEvents(generation_id="gen-1-abc", created_at=5, model="m/x", body={"input": "x"})
    events.start()
    events.chunk(chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "w", "arguments": '{"a"'}}]}))
    events.chunk(chunk({"tool_calls": [{"index": 1, "id": "c2", "function": {"name": "v", "arguments": "{}"}}]}))
    events.chunk(chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}))
    done = events.complete({"created": 6, "usage": USAGE}, "tool_calls")[-1]
    assert [item["arguments"] for item in done["response"]["output"]] == ['{"a": 1}', "{}"]
