"""Chat completion chunks as the Responses API's stream events: a pure translator, fixture-tested.

The order is the one the official openai SDK accumulates: response.created and response.in_progress;
for each output item, output_item.added, then its parts and deltas, then its .done events and
output_item.done; last response.completed carrying the whole Response with `usage` and `cost` (or,
when the upstream broke, an `error` event and response.failed). Every event has a sequence_number.
"""

from __future__ import annotations

import copy
from typing import Any

from tollway.gateway.responses_api import (
    finish_status,
    item_suffix,
    message_item,
    response_shell,
    responses_usage,
)


class ResponsesEvents:
    """Turns the chat chunks of one streamed generation into Responses events, one call per chunk."""

    def __init__(self, *, generation_id: str, created_at: int, model: str, body: dict[str, Any]) -> None:
        self._response = response_shell(
            response_id=generation_id, created_at=created_at, model=model, body=body, provider=None
        )
        self._suffix = item_suffix(generation_id)
        self._sequence = 0
        self._output: list[dict[str, Any]] = []  # finished items, in output order
        self._open: dict[str, Any] | None = None  # the item being streamed
        self._open_kind = ""
        self._calls: dict[int, dict[str, Any]] = {}  # chat tool call index -> function_call item

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def _snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self._response)

    def start(self) -> list[dict[str, Any]]:
        return [
            self._event("response.created", response=self._snapshot()),
            self._event("response.in_progress", response=self._snapshot()),
        ]

    def _index(self) -> int:
        return len(self._output)

    def _close(self) -> list[dict[str, Any]]:
        """The .done events of the item being streamed, if any."""
        item, kind = self._open, self._open_kind
        if item is None:
            return []
        self._open = None
        index = self._index()
        events: list[dict[str, Any]] = []
        if kind == "message":
            part = item["content"][0]
            events.append(
                self._event(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=part["text"],
                    logprobs=[],
                )
            )
            events.append(
                self._event(
                    "response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part
                )
            )
        elif kind == "reasoning":
            part = item["content"][0]
            events.append(
                self._event(
                    "response.reasoning_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=part["text"],
                )
            )
            events.append(
                self._event(
                    "response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part
                )
            )
        else:
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
        item["status"] = "completed"
        self._output.append(item)
        events.append(self._event("response.output_item.done", output_index=index, item=copy.deepcopy(item)))
        return events

    def _open_item(self, kind: str, item: dict[str, Any]) -> list[dict[str, Any]]:
        events = self._close()
        self._open, self._open_kind = item, kind
        index = self._index()
        added = copy.deepcopy(item)
        if kind in ("message", "reasoning"):
            added["content"] = []
        events.append(self._event("response.output_item.added", output_index=index, item=added))
        if kind in ("message", "reasoning"):
            part = copy.deepcopy(item["content"][0])
            events.append(
                self._event(
                    "response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=part
                )
            )
        return events

    def _text(self, text: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self._open is None or self._open_kind != "message":
            item = message_item(f"msg_{self._suffix}_{self._index()}", "", "in_progress")
            item["content"] = [{"type": "output_text", "text": "", "annotations": [], "logprobs": []}]
            events = self._open_item("message", item)
        assert self._open is not None
        self._open["content"][0]["text"] += text
        events.append(
            self._event(
                "response.output_text.delta",
                item_id=self._open["id"],
                output_index=self._index(),
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return events

    def _reasoning(self, text: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self._open is None or self._open_kind != "reasoning":
            item = {
                "id": f"rs_{self._suffix}_{self._index()}",
                "type": "reasoning",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": ""}],
                "status": "in_progress",
            }
            events = self._open_item("reasoning", item)
        assert self._open is not None
        self._open["content"][0]["text"] += text
        events.append(
            self._event(
                "response.reasoning_text.delta",
                item_id=self._open["id"],
                output_index=self._index(),
                content_index=0,
                delta=text,
            )
        )
        return events

    def _tool_call(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        position = call.get("index", 0)
        position = position if isinstance(position, int) else 0
        raw_function = call.get("function")
        function: dict[str, Any] = raw_function if isinstance(raw_function, dict) else {}
        events: list[dict[str, Any]] = []
        item = self._calls.get(position)
        if item is None:
            index = self._index() + (0 if self._open is None else 1)
            name = function.get("name")
            item = {
                "id": f"fc_{self._suffix}_{index}",
                "type": "function_call",
                "call_id": call.get("id") if isinstance(call.get("id"), str) else f"call_{self._suffix}_{index}",
                "name": name if isinstance(name, str) else "",
                "arguments": "",
                "status": "in_progress",
            }
            self._calls[position] = item
            events = self._open_item("function_call", item)
        arguments = function.get("arguments")
        if item is not self._open:
            # A late piece of a call already closed (a provider interleaving calls): its .done event has
            # gone out, but the final response still carries the whole arguments.
            if isinstance(arguments, str):
                item["arguments"] += arguments
            return []
        if isinstance(arguments, str) and arguments:
            item["arguments"] += arguments
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=self._index(),
                    delta=arguments,
                )
            )
        return events

    def chunk(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        """The events of one chat chunk (without usage or error)."""
        events: list[dict[str, Any]] = []
        for choice in payload.get("choices") or []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                continue
            reasoning = delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                events += self._reasoning(reasoning)
            text = delta.get("content")
            if isinstance(text, str) and text:
                events += self._text(text)
            for call in delta.get("tool_calls") or []:
                if isinstance(call, dict):
                    events += self._tool_call(call)
        return events

    def complete(self, payload: dict[str, Any], finish_reason: str | None) -> list[dict[str, Any]]:
        """The closing events once the usage chunk (with the settled cost) arrived."""
        events = self._close()
        status, incomplete = finish_status(finish_reason)
        response = self._snapshot()
        response.update(
            status=status,
            incomplete_details=incomplete,
            completed_at=payload.get("created"),
            output=copy.deepcopy(self._output),
            usage=responses_usage(payload["usage"]),
            provider=payload.get("provider"),
        )
        # Also a response cut short (status incomplete) ends in response.completed: that is the event the
        # SDK's get_final_response() waits for, and the one that carries the usage with its cost.
        events.append(self._event("response.completed", response=response))
        return events

    def fail(self, error: dict[str, Any]) -> list[dict[str, Any]]:
        """The upstream broke mid-stream: what was produced is billed; the client is told why."""
        message = str(error.get("message") or "The provider failed mid-stream")
        events = [self._event("error", code="server_error", message=message, param=None)]
        response = self._snapshot()
        if self._open is not None:
            self._output.append({**self._open, "status": "incomplete"})
            self._open = None
        response.update(
            status="failed", output=copy.deepcopy(self._output), error={"code": "server_error", "message": message}
        )
        events.append(self._event("response.failed", response=response))
        return events
