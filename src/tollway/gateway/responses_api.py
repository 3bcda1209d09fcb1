"""The OpenAI Responses API over the chat gateway: pure translation, both ways, fixture-tested.

A Responses request is checked field by field (each failure a 400 naming the field, in the Responses
API's words), translated into a chat request, and from there routed, held and billed like any chat
completion. The chat result then becomes a Response object. Like OpenRouter's, the API is stateless:
nothing is stored, so `store: true`, `previous_response_id` and item references are refused.
"""

from __future__ import annotations

from typing import Any

from tollway.errors import InvalidRequest
from tollway.gateway.validation import bad, check_list, check_object, check_string

_MESSAGE_ROLES = ("user", "assistant", "system", "developer")
_TOOL_CHOICES = ("auto", "none", "required")
STATELESS = (
    "This gateway's Responses API is stateless (as OpenRouter's): nothing is stored, so send the whole "
    "conversation in input each time"
)
# Fields passed to the chat request unchanged (their checks are the chat API's).
_PASSED_THROUGH = (
    "model",
    "models",
    "provider",
    "temperature",
    "top_p",
    "top_k",
    "parallel_tool_calls",
    "stream",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "transforms",
    "session_id",
)


def _content_part(part: Any, where: str) -> dict[str, Any]:
    """One input content part as a chat content part."""
    check_object(part, where, 'a content part such as {"type": "input_text", "text": "..."}')
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text", "refusal"):
        text = check_string(part.get("refusal") if kind == "refusal" else part.get("text"), f"{where}.text")
        return {"type": "text", "text": text}
    if kind == "input_image":
        if part.get("file_id") is not None:
            raise bad(f"{where}.file_id: uploaded files are not stored here; send image_url instead", where)
        url = check_string(part.get("image_url"), f"{where}.image_url")
        detail = part.get("detail")
        image: dict[str, Any] = {"url": url}
        if detail is not None:
            if detail not in ("auto", "low", "high", "original"):
                raise bad(f"{where}.detail must be auto, low, high or original", f"{where}.detail")
            image["detail"] = detail
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if part.get("file_id") is not None:
            raise bad(f"{where}.file_id: uploaded files are not stored here; send file_data instead", where)
        data = check_string(part.get("file_data") or part.get("file_url"), f"{where}.file_data")
        filename = check_string(part.get("filename"), f"{where}.filename", required=False)
        return {"type": "file", "file": {"filename": filename or "file", "file_data": data}}
    raise bad(
        f"{where}.type must be input_text, input_image, input_file or output_text, got {str(kind)[:40]!r}",
        f"{where}.type",
    )


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in _MESSAGE_ROLES:
        raise bad(f"{where}.role must be one of {', '.join(_MESSAGE_ROLES)}", f"{where}.role")
    content = item.get("content")
    if isinstance(content, str):
        check_string(content, f"{where}.content")
        return {"role": role, "content": content}
    parts = check_list(content, f"{where}.content", "content parts or a string")
    return {"role": role, "content": [_content_part(part, f"{where}.content[{i}]") for i, part in enumerate(parts)]}


def _function_call(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = check_string(item.get("call_id"), f"{where}.call_id")
    name = check_string(item.get("name"), f"{where}.name")
    arguments = check_string(item.get("arguments"), f"{where}.arguments")
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _function_output(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = check_string(item.get("call_id"), f"{where}.call_id")
    output = item.get("output")
    if isinstance(output, str):
        check_string(output, f"{where}.output")
        return {"role": "tool", "tool_call_id": call_id, "content": output}
    parts = check_list(output, f"{where}.output", "content parts or a string")
    content = [_content_part(part, f"{where}.output[{i}]") for i, part in enumerate(parts)]
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def _input_messages(value: Any) -> list[dict[str, Any]]:
    """The `input` as chat messages: function calls join the assistant turn they belong to."""
    if isinstance(value, str):
        return [{"role": "user", "content": check_string(value, "input")}]
    items = check_list(value, "input", "input items or a string")
    if not items:
        raise bad("input must be a non-empty string or array of input items", "input")
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        where = f"input[{index}]"
        check_object(item, where, 'an input item such as {"role": "user", "content": "..."}')
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, where))
        elif kind == "function_call":
            call = _function_call(item, where)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(_function_output(item, where))
        elif kind == "reasoning":
            continue  # earlier reasoning is the model's own; providers do not take it back as input
        elif kind == "item_reference":
            raise bad(f"{where}: item references need stored items. {STATELESS}.", f"{where}.type")
        else:
            raise bad(
                f"{where}.type must be message, function_call, function_call_output or reasoning, "
                f"got {str(kind)[:40]!r}",
                f"{where}.type",
            )
    if not messages:
        raise bad("input must contain at least one message", "input")
    return messages


def _tools(value: Any) -> list[dict[str, Any]]:
    tools = []
    for index, tool in enumerate(check_list(value, "tools", "function tools")):
        where = f"tools[{index}]"
        check_object(tool, where, 'a tool such as {"type": "function", "name": ..., "parameters": {...}}')
        if tool.get("type") != "function":
            raise bad(f"{where}.type must be function (the only tool type this gateway runs)", f"{where}.type")
        function: dict[str, Any] = {"name": check_string(tool.get("name"), f"{where}.name")}
        description = check_string(tool.get("description"), f"{where}.description", required=False)
        if description is not None:
            function["description"] = description
        if tool.get("parameters") is not None:
            function["parameters"] = check_object(tool["parameters"], f"{where}.parameters", "a JSON schema object")
        if tool.get("strict") is not None:
            if not isinstance(tool["strict"], bool):
                raise bad(f"{where}.strict must be true or false", f"{where}.strict")
            function["strict"] = tool["strict"]
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(value: Any) -> Any:
    if isinstance(value, str):
        if value not in _TOOL_CHOICES:
            raise bad("tool_choice must be auto, none, required or {type: function, name}", "tool_choice")
        return value
    choice = check_object(value, "tool_choice", 'auto, none, required or {"type": "function", "name": ...}')
    if choice.get("type") != "function":
        raise bad("tool_choice.type must be function", "tool_choice.type")
    return {"type": "function", "function": {"name": check_string(choice.get("name"), "tool_choice.name")}}


def _response_format(text: Any) -> dict[str, Any] | None:
    config = check_object(text, "text", 'an object such as {"format": {"type": "json_schema", ...}}')
    if config.get("format") is None:
        return None
    form = check_object(config["format"], "text.format", "an object with a type")
    kind = form.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise bad("text.format.type must be text, json_object or json_schema", "text.format.type")
    schema: dict[str, Any] = {
        "name": check_string(form.get("name"), "text.format.name"),
        "schema": check_object(form.get("schema"), "text.format.schema", "a JSON schema object"),
    }
    if form.get("strict") is not None:
        if not isinstance(form["strict"], bool):
            raise bad("text.format.strict must be true or false", "text.format.strict")
        schema["strict"] = form["strict"]
    description = check_string(form.get("description"), "text.format.description", required=False)
    if description is not None:
        schema["description"] = description
    return {"type": "json_schema", "json_schema": schema}


def _refuse_state(body: dict[str, Any]) -> None:
    if body.get("store") is True:
        raise bad(f"store: true is not supported. {STATELESS}; send store: false or leave it out.", "store")
    for name in ("previous_response_id", "conversation", "prompt"):
        if body.get(name) is not None:
            raise bad(f"{name} is not supported. {STATELESS}.", name)
    if body.get("background") is True:
        raise bad(f"background: true is not supported. {STATELESS}; stream instead.", "background")


def _reasoning(value: Any) -> dict[str, Any]:
    reasoning = check_object(value, "reasoning", 'an object such as {"effort": "high"}')
    chat: dict[str, Any] = {}
    for name in ("effort", "max_tokens", "enabled", "exclude"):
        if reasoning.get(name) is not None:
            chat[name] = reasoning[name]
    return chat


def responses_request_to_chat(body: Any) -> dict[str, Any]:
    """A Responses request as a chat completion request, or a 400 naming the first field that is wrong."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object")
    _refuse_state(body)
    if "input" not in body:
        raise bad("input is required: a string or an array of input items", "input")
    messages = _input_messages(body["input"])
    instructions = check_string(body.get("instructions"), "instructions", required=False)
    if instructions:
        messages.insert(0, {"role": "system", "content": instructions})
    chat: dict[str, Any] = {name: body[name] for name in _PASSED_THROUGH if body.get(name) is not None}
    chat["messages"] = messages
    if body.get("max_output_tokens") is not None:
        value = body["max_output_tokens"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad("max_output_tokens must be a positive integer", "max_output_tokens")
        chat["max_tokens"] = value
    if body.get("tools") is not None:
        chat["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    if body.get("reasoning") is not None:
        chat["reasoning"] = _reasoning(body["reasoning"])
    if body.get("text") is not None:
        response_format = _response_format(body["text"])
        if response_format is not None:
            chat["response_format"] = response_format
    user = body.get("user") if body.get("user") is not None else body.get("safety_identifier")
    if user is not None:
        chat["user"] = check_string(user, "user")
    if body.get("metadata") is not None:
        check_object(body["metadata"], "metadata", "an object of string values")
    if body.get("top_logprobs") is not None:
        chat["top_logprobs"] = body["top_logprobs"]
        chat["logprobs"] = True
    return chat


def _usage(chat_usage: dict[str, Any]) -> dict[str, Any]:
    """The chat usage object in the Responses API's shape, keeping OpenRouter's cost fields."""
    prompt_details = chat_usage.get("prompt_tokens_details") or {}
    completion_details = chat_usage.get("completion_tokens_details") or {}
    return {
        "input_tokens": chat_usage["prompt_tokens"],
        "input_tokens_details": {
            "cached_tokens": prompt_details.get("cached_tokens", 0),
            "cache_write_tokens": prompt_details.get("cache_write_tokens", 0),
        },
        "output_tokens": chat_usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": completion_details.get("reasoning_tokens", 0)},
        "total_tokens": chat_usage["total_tokens"],
        "cost": chat_usage["cost"],
        "is_byok": chat_usage.get("is_byok", False),
        "cost_details": chat_usage.get("cost_details"),
    }


responses_usage = _usage


def echo_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The request settings a Response object repeats back (validated by then)."""
    text_config = body.get("text") if isinstance(body.get("text"), dict) else {}
    tools = [
        {
            "type": "function",
            "name": tool["name"],
            "description": tool.get("description"),
            "parameters": tool.get("parameters"),
            "strict": tool.get("strict"),
        }
        for tool in body.get("tools") or []
    ]
    return {
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": tools,
        "reasoning": body.get("reasoning"),
        "text": {"format": (text_config or {}).get("format") or {"type": "text"}},
        "user": body.get("user"),
        "store": False,
        "background": False,
        "previous_response_id": None,
        "truncation": "disabled",
        "service_tier": "auto",
    }


def response_shell(
    *, response_id: str, created_at: int, model: str, body: dict[str, Any], provider: str | None
) -> dict[str, Any]:
    """A Response object before any output: what response.created carries."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [],
        "usage": None,
        **({"provider": provider} if provider is not None else {}),
        **echo_fields(body),
    }


def output_items(message: dict[str, Any], item_suffix: str) -> list[dict[str, Any]]:
    """A chat assistant message as Responses output items: reasoning, the text message, function calls."""
    items: list[dict[str, Any]] = []
    reasoning = message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        items.append(
            {
                "id": f"rs_{item_suffix}",
                "type": "reasoning",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": reasoning}],
                "status": "completed",
            }
        )
    content = message.get("content")
    if isinstance(content, str) and content:
        items.append(message_item(f"msg_{item_suffix}", content, "completed"))
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        items.append(
            {
                "id": f"fc_{item_suffix}_{index}",
                "type": "function_call",
                "call_id": call.get("id") or f"call_{item_suffix}_{index}",
                "name": function.get("name") or "",
                "arguments": function.get("arguments") or "",
                "status": "completed",
            }
        )
    return items


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if text else [],
    }


def finish_status(finish_reason: str | None) -> tuple[str, dict[str, Any] | None]:
    """The Response status and incomplete_details for a chat finish reason."""
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def chat_result_to_response(result: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """A chat completion body (with its usage and cost) as a Response object."""
    choice = result["choices"][0]
    generation_id: str = result["id"]
    response = response_shell(
        response_id=generation_id,
        created_at=result["created"],
        model=result["model"],
        body=body,
        provider=result.get("provider"),
    )
    status, incomplete = finish_status(choice.get("finish_reason"))
    response["status"] = status
    response["incomplete_details"] = incomplete
    response["completed_at"] = result["created"]
    response["output"] = output_items(choice["message"], item_suffix(generation_id))
    response["usage"] = _usage(result["usage"])
    return response


def item_suffix(generation_id: str) -> str:
    """Output item ids share the generation's random part: msg_<it>, fc_<it>_0, rs_<it>."""
    return generation_id.removeprefix("gen-")
