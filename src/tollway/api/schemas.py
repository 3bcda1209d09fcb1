"""Request and response shapes of the inference endpoints as pydantic models, for the OpenAPI document.

The handlers check bodies field by field (gateway/validation.py and its siblings, for error messages
that name the field); these models describe the same shapes, the document is generated from them
(api/openapi.py), and tests hold every body a handler sends against the document. Every model allows
extra properties, as OpenRouter's API does: a client may send fields a provider understands.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JsonObject = dict[str, Any]


class Shape(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(Shape):
    code: int = Field(description="The HTTP status")
    message: str = Field(description="What was wrong and how to fix it")
    metadata: JsonObject | None = Field(
        default=None, description="error_type, the field at fault, and for refusals an explanation {code, message}"
    )


class ErrorBody(Shape):
    """Every error, in OpenRouter's shape."""

    error: ErrorDetail


# --- chat completions -------------------------------------------------------------------------


class ImageUrl(Shape):
    url: str
    detail: str | None = None


class ContentPart(Shape):
    type: str = Field(description="text, image_url, file, input_audio ...", examples=["text"])
    text: str | None = None
    image_url: ImageUrl | None = None


class ToolCallFunction(Shape):
    name: str | None = None
    arguments: str | None = Field(default=None, description="The arguments as a JSON string")


class ToolCall(Shape):
    id: str | None = None
    type: Literal["function"] | None = "function"
    function: ToolCallFunction


class ChatMessage(Shape):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=256)
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = Field(default=None, max_length=256)


class FunctionDefinition(Shape):
    name: str
    description: str | None = None
    parameters: JsonObject | None = None
    strict: bool | None = None


class ChatTool(Shape):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class Reasoning(Shape):
    effort: Literal["minimal", "low", "medium", "high", "none"] | None = None
    max_tokens: int | None = Field(default=None, ge=0)
    exclude: bool | None = None
    enabled: bool | None = None


class SamplingFields(Shape):
    """Fields chat, completions and responses share."""

    model: str | None = Field(
        default=None, max_length=256, description="A model id from GET /models", examples=["tollway/offline-small"]
    )
    models: list[str] | None = Field(default=None, description="Fallback model ids, tried in order")
    provider: JsonObject | None = Field(default=None, description="Provider preferences (order, only, sort, ...)")
    stream: bool | None = False
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = None
    user: str | None = Field(default=None, max_length=256)


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=2**31 - 1)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=2**31 - 1)
    stop: str | list[str] | None = None
    tools: list[ChatTool] | None = None
    tool_choice: str | JsonObject | None = Field(default=None, description='"auto", "none", "required" or a function')
    response_format: JsonObject | None = Field(default=None, description="text, json_object or json_schema")
    reasoning: Reasoning | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    session_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="Sticky routing: the session's requests go to the endpoint that served it (also X-Session-Id)",
    )
    preset: str | None = Field(
        default=None, description='One of the account\'s presets by name (or send "model": "@preset/NAME")'
    )


class PromptTokensDetails(Shape):
    cached_tokens: int
    cache_write_tokens: int | None = None


class CompletionTokensDetails(Shape):
    reasoning_tokens: int


class ChatUsage(Shape):
    """Tokens of each kind and the exact cost in USD (integer nano-USD on the ledger)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float = Field(description="USD charged for this request, exact to the nano-dollar")
    is_byok: bool | None = None
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    cost_details: JsonObject | None = None


class AssistantMessage(Shape):
    role: Literal["assistant"]
    content: str | None
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(Shape):
    index: int
    message: AssistantMessage
    finish_reason: str | None
    native_finish_reason: str | None = None
    logprobs: JsonObject | None = None


class ChatCompletion(Shape):
    id: str = Field(description="The generation id: GET /generation?id=...")
    object: Literal["chat.completion"]
    created: int
    model: str
    provider: str | None = None
    system_fingerprint: str | None = None
    choices: list[ChatChoice]
    usage: ChatUsage


class ChatCompletionChunk(Shape):
    """One `data:` event of a stream; the last carries `usage` with the cost, then `data: [DONE]`."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    provider: str | None = None
    choices: list[JsonObject]
    usage: ChatUsage | None = None
    error: JsonObject | None = None


# --- legacy completions -----------------------------------------------------------------------


class CompletionRequest(SamplingFields):
    prompt: str | list[str] = Field(description="A string (or an array of exactly one string)")
    max_tokens: int | None = Field(default=None, ge=1, le=2**31 - 1)
    stop: str | list[str] | None = None
    logprobs: int | None = None


class TextChoice(Shape):
    text: str
    index: int
    logprobs: JsonObject | None = None
    finish_reason: str | None


class TextCompletion(Shape):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    provider: str | None = None
    choices: list[TextChoice]
    usage: ChatUsage | None = None


# --- Responses API ----------------------------------------------------------------------------


class ResponseInputPart(Shape):
    type: Literal["input_text", "output_text", "input_image", "input_file"]
    text: str | None = None
    image_url: str | None = None
    detail: Literal["auto", "low", "high", "original"] | None = None
    file_data: str | None = None
    filename: str | None = None


class ResponseInputItem(Shape):
    """A message ({role, content}), a function_call, a function_call_output or an earlier reasoning item."""

    type: Literal["message", "function_call", "function_call_output", "reasoning"] | None = None
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: str | list[ResponseInputPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[ResponseInputPart] | None = None


class ResponseTool(Shape):
    type: Literal["function"]
    name: str
    description: str | None = None
    parameters: JsonObject | None = None
    strict: bool | None = None


class ResponseTextFormat(Shape):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: JsonObject | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseTextConfig(Shape):
    format: ResponseTextFormat | None = None


class ResponsesRequest(SamplingFields):
    """OpenAI's Responses API, stateless: the whole conversation comes in `input` each time."""

    input: str | list[ResponseInputItem]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    tools: list[ResponseTool] | None = None
    tool_choice: Literal["auto", "none", "required"] | JsonObject | None = None
    parallel_tool_calls: bool | None = None
    reasoning: Reasoning | None = None
    text: ResponseTextConfig | None = None
    metadata: dict[str, str] | None = None
    store: Literal[False] | None = Field(default=None, description="Only false: nothing is stored (400 if true)")
    previous_response_id: None = Field(default=None, description="Refused with a 400: the API is stateless")


class ResponseInputTokensDetails(Shape):
    cached_tokens: int
    cache_write_tokens: int | None = None


class ResponseOutputTokensDetails(Shape):
    reasoning_tokens: int


class ResponseUsage(Shape):
    input_tokens: int
    input_tokens_details: ResponseInputTokensDetails
    output_tokens: int
    output_tokens_details: ResponseOutputTokensDetails
    total_tokens: int
    cost: float = Field(description="USD charged for this request, exact to the nano-dollar")


class ResponseOutputItem(Shape):
    """A `message` (content: output_text parts), a `function_call` or a `reasoning` item."""

    type: Literal["message", "function_call", "reasoning"]
    id: str
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    role: Literal["assistant"] | None = None
    content: list[JsonObject] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    summary: list[JsonObject] | None = None


class ResponseObject(Shape):
    id: str = Field(description="The generation id: GET /generation?id=...")
    object: Literal["response"]
    created_at: int
    status: Literal["completed", "incomplete", "in_progress", "failed"]
    model: str
    output: list[ResponseOutputItem]
    usage: ResponseUsage | None
    error: JsonObject | None = None
    incomplete_details: JsonObject | None = None
    provider: str | None = None


class ResponseStreamEvent(Shape):
    """One SSE event (`event: <type>`): response.created, response.output_text.delta, ..., response.completed."""

    type: str
    sequence_number: int
    response: ResponseObject | None = None


# --- Anthropic messages and embeddings --------------------------------------------------------


class AnthropicMessagesRequest(Shape):
    model: str
    max_tokens: int = Field(ge=1)
    messages: list[JsonObject] = Field(min_length=1)
    system: str | list[JsonObject] | None = None
    tools: list[JsonObject] | None = None
    stream: bool | None = None


class AnthropicMessage(Shape):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[JsonObject]
    stop_reason: str | None
    usage: JsonObject


class AnthropicStreamEvent(Shape):
    """One SSE event (`event: <type>`): message_start, content_block_delta, message_delta (usage), message_stop."""

    type: str


class EmbeddingsRequest(Shape):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)


class Embedding(Shape):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingsResponse(Shape):
    object: Literal["list"]
    id: str
    model: str
    data: list[Embedding]
    usage: JsonObject
