"""Pure translations between OpenAI and Anthropic / Gemini shapes, against a recorded fixture."""

from __future__ import annotations

import json
from pathlib import Path

from tollway.providers.anthropic_translate import (
    anthropic_message_to_openai,
    anthropic_request_to_openai,
    openai_message_to_anthropic,
    openai_to_anthropic,
)
from tollway.providers.gemini import openai_to_gemini

FIXTURE = json.loads((Path(__file__).parents[1] / "fakes" / "fixtures" / "anthropic_translation.json").read_text())


def test_openai_request_becomes_the_recorded_anthropic_request() -> None:
    assert openai_to_anthropic(FIXTURE["openai_request"], "claude-sonnet", 300) == FIXTURE["anthropic_request"]


def test_anthropic_content_becomes_an_openai_message_and_back() -> None:
    message = anthropic_message_to_openai(FIXTURE["anthropic_response_content"])
    assert message == FIXTURE["openai_message"]
    blocks = openai_message_to_anthropic(message)
    assert blocks == [
        {"type": "text", "text": "It is a cat."},
        {"type": "tool_use", "id": "toolu_2", "name": "lookup", "input": {"q": "breed"}},
    ]


def test_anthropic_request_becomes_an_openai_chat_request() -> None:
    chat = anthropic_request_to_openai({**FIXTURE["anthropic_request"], "model": "claude/sonnet"})
    roles = [m["role"] for m in chat["messages"]]
    assert roles == ["system", "user", "assistant", "tool"]
    assert chat["messages"][2]["tool_calls"][0]["function"]["name"] == "lookup"
    assert chat["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "a cat"}
    assert chat["max_tokens"] == 300 and chat["stop"] == ["END"] and chat["tools"][0]["function"]["name"] == "lookup"


def test_openai_request_becomes_a_gemini_request() -> None:
    request = openai_to_gemini(FIXTURE["openai_request"], 300)
    assert request["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [c["role"] for c in request["contents"]] == ["user", "model", "user"]
    assert request["contents"][1]["parts"] == [{"functionCall": {"name": "lookup", "args": {"q": "cat"}}}]
    assert request["contents"][2]["parts"][0]["functionResponse"]["name"] == "lookup"
    assert request["generationConfig"] == {"maxOutputTokens": 300, "temperature": 0.2, "stopSequences": ["END"]}
    assert request["tools"][0]["functionDeclarations"][0]["name"] == "lookup"
