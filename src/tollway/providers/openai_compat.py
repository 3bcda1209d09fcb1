"""OpenAI-compatible upstreams (OpenAI, Groq, Together, vLLM, Ollama, llama.cpp server, ...).

The request passes through with every parameter the client sent; only `model`, `max_tokens` (or
`max_completion_tokens`, per the provider's `max_tokens_field`) and the stream usage option are set.
Failures are mapped once here to ProviderError.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from tollway.providers.base import ALL_PARAMETERS, Completion, Embeddings, StreamChunk, UpstreamRequest
from tollway.providers.http_client import UpstreamResponse
from tollway.providers.passthrough import MarkerScan, event_end, learn_prefix, plain_run
from tollway.providers.transport import RAW_LIMIT, HttpProvider, estimate_tokens
from tollway.usage import Usage, count, estimate_bytes_tokens, field_count


def parse_usage(raw: Any) -> Usage | None:
    """OpenAI's usage: `prompt_tokens` includes cached reads and cache writes, `completion_tokens` reasoning."""
    if not isinstance(raw, dict):
        return None
    prompt = raw.get("prompt_tokens")
    completion = raw.get("completion_tokens")
    if isinstance(prompt, bool) or isinstance(completion, bool):
        return None
    if not isinstance(prompt, (int, float)) or not isinstance(completion, (int, float)):
        return None
    return Usage(
        prompt_tokens=count(prompt),
        completion_tokens=count(completion),
        reasoning_tokens=field_count(raw, "completion_tokens_details", "reasoning_tokens"),
        cached_tokens=field_count(raw, "prompt_tokens_details", "cached_tokens"),
        cache_write_tokens=field_count(raw, "prompt_tokens_details", "cache_write_tokens"),
        web_searches=field_count(raw, "server_tool_use", "web_search_requests"),
    )


def reasoning_text(message: dict[str, Any]) -> Any:
    """The reasoning an OpenAI-compatible upstream returned (`reasoning`, or `reasoning_content` as
    DeepSeek, vLLM and others name it)."""
    value = message.get("reasoning")
    return value if value is not None else message.get("reasoning_content")


def relay_reasoning(message: dict[str, Any], exclude: bool) -> dict[str, Any]:
    """A message or delta with its reasoning under OpenRouter's name, or without it when excluded."""
    if "reasoning" not in message and "reasoning_content" not in message:
        return message
    text = reasoning_text(message)
    out = {k: v for k, v in message.items() if k not in ("reasoning", "reasoning_content", "reasoning_details")}
    if not exclude and text is not None:
        out["reasoning"] = text
    return out


class OpenAICompatibleProvider(HttpProvider):
    supported_parameters = ALL_PARAMETERS

    def __init__(self, *, max_tokens_field: str = "max_tokens", **options: Any) -> None:
        super().__init__(**options)
        self._max_tokens_field = max_tokens_field

    def _payload(self, request: UpstreamRequest, stream: bool) -> bytes:
        body = dict(request.body)
        body["model"] = request.upstream_model
        body["stream"] = stream
        # Reasoning models count their thinking inside the completion limit: it covers both. The client's
        # own choice of field is kept, else the provider's (reasoning models refuse max_tokens).
        field = "max_completion_tokens" if "max_completion_tokens" in body else self._max_tokens_field
        body.pop("max_tokens", None)
        body[field] = request.output_tokens
        # Gateway fields an OpenAI-compatible upstream would refuse as unknown (session_id routes, preset fills).
        gateway_only = (
            "models",
            "provider",
            "route",
            "transforms",
            "usage",
            "plugins",
            "reasoning",
            "session_id",
            "preset",
        )
        for tollway_only in gateway_only:
            body.pop(tollway_only, None)
        body.pop("reasoning_effort", None)
        if request.reasoning is not None:
            body["reasoning_effort"] = request.reasoning.effort
        if stream:
            body["stream_options"] = {"include_usage": True}
        else:
            body.pop("stream_options", None)
        return orjson.dumps(body)

    async def embed(self, inputs: list[str], upstream_model: str, extra: dict[str, Any]) -> Embeddings:
        payload = orjson.dumps({**extra, "model": upstream_model, "input": inputs})
        parsed = await self._transport.post_json(f"{self._root}/embeddings", payload, self._headers)
        try:
            items = sorted(parsed["data"], key=lambda item: item.get("index", 0))
            vectors = [item["embedding"] for item in items]
        except (KeyError, TypeError, AttributeError) as exc:
            raise self._error(502, "Provider returned an invalid response", raw=str(parsed)) from exc
        tokens = (parsed.get("usage") or {}).get("prompt_tokens")
        if not isinstance(tokens, int):
            tokens = sum(estimate_tokens(text) for text in inputs)
        return Embeddings(vectors=vectors, prompt_tokens=tokens, upstream_model=parsed.get("model"))

    async def complete(self, request: UpstreamRequest) -> Completion:
        url = f"{self._root}/chat/completions"
        parsed = await self._transport.post_json(url, self._payload(request, False), self._headers)
        try:
            choice = parsed["choices"][0]
            message = choice["message"]
            if not isinstance(choice, dict) or not isinstance(message, dict):
                raise TypeError("choice and message must be objects")
        except (KeyError, IndexError, TypeError) as exc:
            raise self._error(502, "Provider returned an invalid response", raw=str(parsed)[:RAW_LIMIT]) from exc
        usage = parse_usage(parsed.get("usage"))
        if usage is None:
            # Counted here from what came back; the gateway adds its prompt estimate.
            usage = Usage(prompt_tokens=0, completion_tokens=output_estimate(message), counted_locally=True)
        message = relay_reasoning(message, request.reasoning is not None and request.reasoning.exclude)
        native = choice.get("finish_reason")
        return Completion(
            message=message,
            finish_reason=native,
            native_finish_reason=native,
            usage=usage,
            upstream_id=parsed.get("id"),
            logprobs=choice.get("logprobs"),
            system_fingerprint=parsed.get("system_fingerprint"),
        )

    def stream(self, request: UpstreamRequest) -> AsyncIterator[StreamChunk]:
        # The relay itself, not a generator re-yielding it: one layer less for every chunk.
        return self._relay(f"{self._root}/chat/completions", self._payload(request, True), request)

    async def _events(self, response: UpstreamResponse, request: UpstreamRequest) -> AsyncIterator[StreamChunk]:
        exclude = request.reasoning is not None and request.reasoning.exclude
        prefix: bytes | None = None  # the leading bytes every plain chunk repeats, learned from the first
        upstream_id: str | None = None
        async for run in response.event_runs():
            markers = MarkerScan(run)
            at = 0
            while at < len(run):
                if prefix is None:
                    until = event_end(run, at)  # one event: learn from it, then pass it on if it is plain
                    learned = learn_prefix(run[at:until])
                    if learned is not None:
                        prefix, upstream_id = learned
                        continue
                else:
                    until = markers.event_start(at)
                    if until > at:
                        passable = plain_run(run, at, until, prefix)
                        if passable is not None:
                            yield StreamChunk(run=passable, upstream_id=upstream_id)
                            at = until
                            continue
                    else:
                        until = event_end(run, at)
                for line in run[at:until].split(b"\n"):
                    if not line.startswith(b"data:"):
                        continue  # comments (": keep-alive"), event names, blank separators
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        return
                    chunk = self._chunk(data, exclude)
                    if chunk is not None:
                        yield chunk
                at = until
        raise self._error(502, "Provider closed the stream early")

    def _chunk(self, data: bytes, exclude: bool) -> StreamChunk | None:
        """One chunk read the parsed way."""
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise self._error(502, "Provider sent a broken stream", raw=data) from exc
        if not isinstance(event, dict):
            return None
        if isinstance(event.get("error"), dict):
            raise self._error(502, "Provider returned error", raw=orjson.dumps(event["error"]).decode())
        choices = event.get("choices")
        return StreamChunk(
            choices=[relay_choice(c, exclude) for c in choices if isinstance(c, dict)]
            if isinstance(choices, list)
            else [],
            usage=parse_usage(event.get("usage")),
            upstream_id=event.get("id"),
        )


def relay_choice(choice: dict[str, Any], exclude: bool) -> dict[str, Any]:
    delta = choice.get("delta")
    if isinstance(delta, dict) and ("reasoning" in delta or "reasoning_content" in delta):
        return {**choice, "delta": relay_reasoning(delta, exclude)}
    return choice


def output_estimate(message: dict[str, Any]) -> int:
    """Output tokens of a message the upstream did not count: its text, tool calls and reasoning."""
    parts: list[Any] = [message.get("content"), message.get("tool_calls"), reasoning_text(message)]
    return estimate_bytes_tokens(orjson.dumps([p for p in parts if p]))
