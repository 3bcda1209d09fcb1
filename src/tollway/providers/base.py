"""The provider contract: two calls (complete, stream) over a translated request, plus token counting.

Adapters translate and transport; they never touch money. Upstream failures are mapped here, once,
to ProviderError with the upstream status (0 for a connection error) so routing can decide.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from tollway.providers.passthrough import PassThroughRun
from tollway.usage import Usage

# Set by the client-side SSE writer for the duration of a stream: it buffers events while the
# provider has more at hand and sends them in one write when the provider is about to wait.
BEFORE_UPSTREAM_WAIT: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar(
    "before_upstream_wait", default=None
)


async def before_upstream_wait() -> None:
    """Providers call this just before a stream waits on the network (or a clock): whatever the client
    writer holds goes out now, so a burst of events costs one write and a trickle is not delayed."""
    hook = BEFORE_UPSTREAM_WAIT.get()
    if hook is not None:
        await hook()


FINISH_REASONS = {"stop", "length", "tool_calls", "content_filter", "error"}


@dataclass(frozen=True, slots=True)
class ReasoningPlan:
    """The request's `reasoning`, decided once: adapters send an effort or a budget, whichever theirs takes."""

    effort: str  # minimal | low | medium | high (OpenAI's reasoning_effort)
    budget_tokens: int  # thinking tokens allowed on top of max_tokens (Anthropic, Gemini); held by the gateway
    exclude: bool  # think, but do not return the reasoning text


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """The client's chat body with `model` set to the upstream's name and max tokens decided."""

    body: dict[str, Any]
    upstream_model: str
    max_tokens: int  # for the answer; reasoning.budget_tokens comes on top
    reasoning: ReasoningPlan | None = None

    @property
    def output_tokens(self) -> int:
        """The most output the upstream may produce: the answer and the thinking together."""
        return self.max_tokens + (self.reasoning.budget_tokens if self.reasoning else 0)


@dataclass(slots=True)
class Completion:
    message: dict[str, Any]
    finish_reason: str | None
    native_finish_reason: str | None
    usage: Usage
    upstream_id: str | None = None
    logprobs: Any = None
    system_fingerprint: str | None = None


@dataclass(slots=True)
class StreamChunk:
    """One upstream chunk's choices (deltas), and usage when the upstream reports it; or a run of plain
    chunks an OpenAI-compatible upstream sent, to be passed on as bytes (see providers/passthrough.py)."""

    choices: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage | None = None
    upstream_id: str | None = None
    run: PassThroughRun | None = None


@dataclass(slots=True)
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int
    upstream_model: str | None = None


class Embedder(Protocol):
    """Providers that also serve embeddings."""

    async def embed(self, inputs: list[str], upstream_model: str, extra: dict[str, Any]) -> Embeddings: ...


# Request parameters an endpoint may or may not honour (`supported_parameters`, provider.require_parameters).
ALL_PARAMETERS = frozenset(
    {
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "repetition_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "min_p",
        "top_a",
        "reasoning",
        "include_reasoning",
        "max_tokens",
        "max_completion_tokens",
    }
)
# What every kind of upstream honours.
COMMON_PARAMETERS = frozenset({"max_tokens", "max_completion_tokens", "stop"})


class Provider(Protocol):
    name: str
    display_name: str
    supported_parameters: frozenset[str]

    async def complete(self, request: UpstreamRequest) -> Completion: ...

    def stream(self, request: UpstreamRequest) -> AsyncIterator[StreamChunk]: ...

    def count_tokens(self, text: str) -> int:
        """Tokens in a text, by this provider's tokenizer or an honest estimate of it."""
        ...

    def count_prompt(self, body: dict[str, Any], messages: list[dict[str, Any]]) -> int | None:
        """Prompt tokens (text, tools and schemas) by this provider's own tokenizer; None when it has none."""
        ...


def normalise_finish_reason(native: str | None) -> str | None:
    if native is None or native == "":
        return None
    mapped = {
        "end_turn": "stop",
        "stop_sequence": "stop",
        "max_tokens": "length",
        "tool_use": "tool_calls",
        "function_call": "tool_calls",
        "STOP": "stop",
        "MAX_TOKENS": "length",
        "SAFETY": "content_filter",
    }.get(native, native)
    return mapped if mapped in FINISH_REASONS else "stop"


PER_MESSAGE_TOKENS = 4


def prompt_tokens(provider: Provider, messages: list[dict[str, Any]]) -> int:
    """Prompt tokens by a provider's count: the text of every message plus a fixed overhead per message."""
    return sum(provider.count_tokens(message_text(m)) + PER_MESSAGE_TOKENS for m in messages)


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message, whether content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "") for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""
