"""Relay of a streamed completion: chunks out as SSE, the exact cost in the last chunk, settled once.

The stream ends one of three ways, each settling the hold exactly once:
- the upstream finishes: settle, send the usage chunk with `cost`, then `data: [DONE]`;
- the upstream breaks mid-stream: bill the prompt and the tokens already sent, end with an error chunk;
- the client goes away (`abort`): cancel the upstream, bill the tokens produced until then.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import orjson

from tollway.errors import ProviderError
from tollway.gateway.chat import Candidate, ChatContext, ChatGateway, broken_adapter
from tollway.gateway.responses import chunk_body, usage_body
from tollway.ledger.records import GenerationRecord
from tollway.providers.base import StreamChunk, normalise_finish_reason
from tollway.providers.passthrough import PassThroughRun
from tollway.usage import Usage

KEEPALIVE = b": TOLLWAY PROCESSING\n\n"
DONE = b"data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class StreamRelay:
    def __init__(
        self,
        gateway: ChatGateway,
        context: ChatContext,
        candidate: Candidate,
        upstream: AsyncIterator[StreamChunk],
        first: StreamChunk,
    ) -> None:
        self._gateway = gateway
        self._context = context
        self._candidate = candidate
        self._upstream = upstream
        self._first = first
        self._pieces: list[str] = []
        self._finish: str | None = None
        self._native_finish: str | None = None
        self._usage: Usage | None = None
        self._upstream_id: str | None = None
        self._settled = False
        self._first_token_s: float | None = None
        self._runs: list[PassThroughRun] = []  # passed through, read only for a bill counted locally
        self._prefix: bytes | None = None
        self._loop = asyncio.get_running_loop()
        self._created = context.started_us // 1_000_000

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return chunk_body(
            generation_id=self._context.generation_id,
            provider_name=self._candidate.endpoint.provider_name,
            model=self._candidate.model.id,
            created=self._created,
            choices=choices,
            **extra,
        )

    def _take(self, chunk: StreamChunk) -> dict[str, Any] | None:
        if chunk.usage is not None:
            self._usage = chunk.usage
        if chunk.upstream_id and self._upstream_id is None:
            self._upstream_id = chunk.upstream_id
        if not chunk.choices:
            return None
        choices = []
        for choice in chunk.choices:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                delta = {}
            self._note(delta)
            native = choice.get("finish_reason")
            finish = normalise_finish_reason(native)
            if finish is not None:
                self._finish, self._native_finish = finish, native
            choices.append(
                {
                    "index": choice.get("index", 0),
                    "delta": delta,
                    "finish_reason": finish,
                    "native_finish_reason": native,
                    "logprobs": choice.get("logprobs"),
                }
            )
        return self._chunk(choices)

    def _note(self, delta: dict[str, Any]) -> None:
        """Keep what a delta produced (text, reasoning, tool calls), for a bill the upstream did not count."""
        content = delta.get("content")
        if isinstance(content, str) and content:
            if self._first_token_s is None:
                self._first_token_s = self._loop.time() - self._context.started_monotonic
            self._pieces.append(content)
        reasoning = delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            self._pieces.append(reasoning)
        for call in delta.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                self._pieces.extend(v for v in (function.get("name"), function.get("arguments")) if isinstance(v, str))

    def _passed(self, chunk: StreamChunk, run: PassThroughRun) -> None:
        """A run of plain chunks went out as bytes: note what it produced only when that is needed (below)."""
        if self._first_token_s is None:
            self._first_token_s = self._loop.time() - self._context.started_monotonic
        if self._upstream_id is None:
            self._upstream_id = chunk.upstream_id
        self._runs.append(run)

    def _run_chunks(self, run: PassThroughRun) -> list[StreamChunk]:
        """A pass-through run as chunks, for the paths that translate every chunk (Responses, Anthropic)."""
        return [
            StreamChunk(
                choices=[c for c in event.get("choices") or () if isinstance(c, dict)],
                upstream_id=event.get("id") if isinstance(event.get("id"), str) else None,
            )
            for event in run.events()
        ]

    def _counted_usage(self) -> Usage:
        """What was produced, when the upstream did not (or could not yet) report usage: the prompt as the
        hold estimated it, the output (text, reasoning, tool calls) counted the same way."""
        for run in self._runs:  # runs that went out as bytes, read now that their text is needed
            for event in run.events():
                for choice in event.get("choices") or ():
                    if isinstance(choice, dict) and isinstance(choice.get("delta"), dict):
                        self._note(choice["delta"])
        self._runs.clear()
        provider = self._candidate.endpoint.provider
        return Usage(
            prompt_tokens=self._context.prompt_estimate,
            completion_tokens=provider.count_tokens("".join(self._pieces)),
            counted_locally=True,
        )

    async def _settle(self, usage: Usage, finish: str | None, *, cancelled: bool, status: int) -> GenerationRecord:
        self._settled = True
        generation = self._gateway.generation(
            self._context,
            self._candidate,
            usage,
            finish,
            native_finish_reason=self._native_finish,
            upstream_id=self._upstream_id,
            streamed=True,
            cancelled=cancelled,
            first_token_s=self._first_token_s,
            status=status,
        )
        await self._gateway.settle(self._context, generation)
        return generation

    async def _items(self, passing: bool) -> AsyncIterator[dict[str, Any] | bytes]:
        """The stream as chunk objects (or, when `passing`, runs of plain chunks as ready SSE bytes): deltas,
        then the usage chunk with the settled cost (or an error chunk)."""
        chunk: StreamChunk | None = self._first
        try:
            while chunk is not None:
                if chunk.run is None:
                    data = self._take(chunk)
                    if data is not None:
                        yield data
                elif passing and (relayed := chunk.run.relayed(self._own_prefix())) is not None:
                    self._passed(chunk, chunk.run)
                    yield relayed
                else:
                    for event_chunk in self._run_chunks(chunk.run):
                        data = self._take(event_chunk)
                        if data is not None:
                            yield data
                try:
                    chunk = await anext(self._upstream)
                except StopAsyncIteration:
                    chunk = None
        except Exception as exc:
            # Whatever broke (the upstream, or an answer no adapter could read), the client gets an
            # error chunk and the hold is settled for what was produced: one exit for every admission.
            failure = exc if isinstance(exc, ProviderError) else broken_adapter(self._candidate, exc)
            usage = self._usage or self._counted_usage()
            await self._settle(usage, "error", cancelled=False, status=failure.status)
            error = {
                "code": failure.status,
                "message": failure.message,
                "metadata": failure.body()["error"]["metadata"],
            }
            yield self._chunk([{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}], error=error)
            return
        usage = self._usage or self._counted_usage()
        generation = await self._settle(usage, self._finish, cancelled=False, status=200)
        final_choice = {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "finish_reason": None,
            "native_finish_reason": None,
            "logprobs": None,
        }
        yield self._chunk([final_choice], usage=usage_body(generation))

    def _own_prefix(self) -> bytes:
        """`data: ` and this gateway's leading fields up to `"choices":[`, put in place of the upstream's."""
        if self._prefix is None:
            self._prefix = b"data: " + orjson.dumps(self._chunk([]))[: -len(b"]}")]
        return self._prefix

    def payloads(self) -> AsyncIterator[dict[str, Any]]:
        """The stream as chunk objects, for the endpoints that translate each chunk."""
        return cast("AsyncIterator[dict[str, Any]]", self._items(passing=False))

    @property
    def finish_reason(self) -> str | None:
        return self._finish

    async def events(self) -> AsyncIterator[bytes]:
        """OpenAI-style SSE: a keep-alive comment, one event per chunk (plain chunks passed through as the
        upstream wrote them but for their leading fields), then [DONE] (not after an error)."""
        yield KEEPALIVE
        failed = False
        async for item in self._items(passing=True):
            if isinstance(item, bytes):
                yield item
            else:
                failed = "error" in item
                yield sse(item)
        if not failed:
            yield DONE

    async def abort(self) -> None:
        """The client went away: stop the upstream and bill what was produced (idempotent)."""
        if self._settled:
            return
        # The upstream may already be broken; billing must go on regardless.
        with contextlib.suppress(Exception):
            await self._upstream.aclose()  # type: ignore[attr-defined]
        usage = self._usage or self._counted_usage()
        await self._settle(usage, self._finish, cancelled=True, status=499)
