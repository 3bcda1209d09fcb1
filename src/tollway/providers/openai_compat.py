"""OpenAI-compatible upstreams (OpenAI, Groq, Together, vLLM, Ollama, llama.cpp server, ...).

The request passes through with every parameter the client sent; only `model`, `max_tokens` and the
stream usage option are set. Failures are mapped once here to ProviderError.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from tollway.providers.base import Completion, Embeddings, StreamChunk, UpstreamRequest, Usage
from tollway.providers.http_client import UpstreamResponse
from tollway.providers.transport import RAW_LIMIT, HttpProvider, estimate_tokens


def parse_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt = raw.get("prompt_tokens")
    completion = raw.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    completion_details = raw.get("completion_tokens_details") or {}
    prompt_details = raw.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
        cached_tokens=int(prompt_details.get("cached_tokens") or 0),
    )


class OpenAICompatibleProvider(HttpProvider):
    def _payload(self, request: UpstreamRequest, stream: bool) -> bytes:
        body = dict(request.body)
        body["model"] = request.upstream_model
        body["stream"] = stream
        if "max_completion_tokens" in body:
            body["max_completion_tokens"] = request.max_tokens
        else:
            body["max_tokens"] = request.max_tokens
        for tollway_only in ("models", "provider", "route", "transforms", "usage", "plugins"):
            body.pop(tollway_only, None)
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
        except (KeyError, IndexError, TypeError) as exc:
            raise self._error(502, "Provider returned an invalid response", raw=str(parsed)[:RAW_LIMIT]) from exc
        usage = parse_usage(parsed.get("usage"))
        if usage is None:
            text = message.get("content") if isinstance(message.get("content"), str) else ""
            usage = Usage(prompt_tokens=0, completion_tokens=estimate_tokens(text or ""), counted_locally=True)
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

    async def stream(self, request: UpstreamRequest) -> AsyncIterator[StreamChunk]:
        async for chunk in self._relay(f"{self._root}/chat/completions", self._payload(request, True)):
            yield chunk

    async def _events(self, response: UpstreamResponse) -> AsyncIterator[StreamChunk]:
        saw_done = False
        async for line in response.lines():
            if not line.startswith(b"data:"):
                continue  # comments (": keep-alive"), event names, blank separators
            data = line[5:].strip()
            if data == b"[DONE]":
                saw_done = True
                break
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise self._error(502, "Provider sent a broken stream", raw=data) from exc
            if not isinstance(event, dict):
                continue
            if isinstance(event.get("error"), dict):
                raise self._error(502, "Provider returned error", raw=orjson.dumps(event["error"]).decode())
            choices = event.get("choices")
            yield StreamChunk(
                choices=choices if isinstance(choices, list) else [],
                usage=parse_usage(event.get("usage")),
                upstream_id=event.get("id"),
            )
        if not saw_done:
            raise self._error(502, "Provider closed the stream early")
