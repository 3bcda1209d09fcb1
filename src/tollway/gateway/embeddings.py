"""Embeddings: billed per input token through the same limits, hold and settlement as completions."""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from typing import Any

from tollway.auth.records import KeyRecord
from tollway.clock import Clock
from tollway.errors import InvalidRequest, NotFound, ProviderError
from tollway.gateway.chat import ChatGateway
from tollway.ids import generation_id
from tollway.ledger.admission import CostPlan
from tollway.ledger.book import Hold
from tollway.ledger.records import AttemptRecord, GenerationRecord
from tollway.ledger.service import Ledger
from tollway.limits.service import RateLimiter, Ticket
from tollway.money import nanos_to_usd
from tollway.providers.base import Embedder
from tollway.routing.catalog import Catalog, CatalogModel, Endpoint


def encode_base64(vector: list[float]) -> str:
    """OpenAI's base64 form: little-endian float32s."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


_MAX_INPUTS = 2048  # OpenAI's own bound on one request's inputs


def parse_inputs(raw: Any) -> list[str]:
    if isinstance(raw, str) and raw:
        return [raw]
    if isinstance(raw, list) and len(raw) > _MAX_INPUTS:
        raise InvalidRequest(f"input has more than {_MAX_INPUTS} items", metadata={"field": "input"})
    if isinstance(raw, list) and raw and all(isinstance(item, str) for item in raw):
        return raw
    if isinstance(raw, list) and raw and all(isinstance(item, int) for item in raw):
        raise InvalidRequest("token-id input is not supported: send the text", metadata={"field": "input"})
    raise InvalidRequest("input must be a non-empty string or array of strings", metadata={"field": "input"})


class EmbeddingsGateway:
    def __init__(self, catalog: Catalog, ledger: Ledger, limiter: RateLimiter, chat: ChatGateway, clock: Clock) -> None:
        self._catalog = catalog
        self._ledger = ledger
        self._limiter = limiter
        self._chat = chat
        self._clock = clock

    async def embed(self, key: KeyRecord, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidRequest("The request body must be a JSON object")
        model_id = body.get("model")
        if not isinstance(model_id, str) or not model_id:
            raise InvalidRequest("model is required", metadata={"field": "model"})
        inputs = parse_inputs(body.get("input"))
        _check_options(body)
        model = self._catalog.resolve(model_id)
        if model is None:
            raise InvalidRequest(f"{model_id} is not a valid model ID.", metadata={"model": model_id})
        endpoints = [e for e in model.endpoints if hasattr(e.provider, "embed")]
        if not endpoints:
            raise NotFound(f"No endpoints found for {model.id}.", metadata={"model": model.id})
        estimate = max(sum(e.provider.count_tokens(text) for text in inputs) for e in endpoints)
        price = max((e.price for e in endpoints), key=lambda p: (p.prompt_femtos, p.request_femtos))
        account = await self._ledger.account_figures(key.account_id)
        ticket = await self._limiter.admit(
            self._limiter.checks_for(
                key,
                free_model=price.is_free,
                purchased_nanos=account.purchased_nanos,
                prompt_tokens=estimate,
                endpoint=None,
            )
        )
        try:
            reservation = await self._ledger.reserve(key, CostPlan(price, estimate, 0, True))
        except BaseException:
            await self._limiter.give_back(ticket)
            raise
        # Every exit that does not settle gives the hold and the rate-limit slot back (errors, cancellation).
        settled = False
        try:
            answer = await self._attempt(key, model, endpoints, inputs, body, reservation.hold, ticket)
            settled = True
            return answer
        finally:
            if not settled:
                await asyncio.shield(self._give_back(reservation.hold, ticket))

    async def _give_back(self, hold: Hold, ticket: Ticket | None) -> None:
        try:
            await self._ledger.release(hold)
        finally:
            await self._limiter.finish(ticket, 0)

    async def _attempt(
        self,
        key: KeyRecord,
        model: CatalogModel,
        endpoints: list[Endpoint],
        inputs: list[str],
        body: dict[str, Any],
        hold: Hold,
        ticket: Ticket | None,
    ) -> dict[str, Any]:
        """Try the endpoints in order; the answer once settled, or the last provider error raised."""
        started_us = self._clock.now_us()
        started = time.monotonic()
        # Upstreams are always asked for floats; base64 (the openai SDK's default) is encoded here.
        extra = {k: v for k, v in body.items() if k in ("dimensions", "user")}
        as_base64 = body.get("encoding_format") == "base64"
        attempts: list[AttemptRecord] = []
        last_error: ProviderError | None = None
        for endpoint in endpoints:
            attempt_start = time.monotonic()
            embedder: Embedder = endpoint.provider  # type: ignore[assignment]
            try:
                result = await embedder.embed(inputs, endpoint.upstream_model, extra)
            except ProviderError as exc:
                attempts.append(
                    AttemptRecord(
                        endpoint.provider_name,
                        exc.upstream_status,
                        int((time.monotonic() - attempt_start) * 1000),
                        model.id,
                        endpoint.endpoint_id,
                    )
                )
                last_error = exc
                if not exc.retryable:
                    break
                continue
            attempts.append(
                AttemptRecord(
                    endpoint.provider_name,
                    200,
                    int((time.monotonic() - attempt_start) * 1000),
                    model.id,
                    endpoint.endpoint_id,
                )
            )
            cost = endpoint.price.cost_nanos(result.prompt_tokens, 0)
            generation = GenerationRecord(
                id=generation_id(started_us // 1_000_000),
                account_id=key.account_id,
                key_id=key.id,
                model=model.id,
                provider_name=endpoint.provider_name,
                created_at_us=self._clock.now_us(),
                tokens_prompt=result.prompt_tokens,
                cost_nanos=cost,
                api_type="embeddings",
                latency_ms=int((time.monotonic() - started) * 1000),
                provider_responses=attempts,
            )
            await self._ledger.settle(hold, generation)
            await self._limiter.finish(ticket, result.prompt_tokens)
            return {
                "object": "list",
                "id": generation.id,
                "model": model.id,
                "provider": endpoint.provider_name,
                "data": [
                    {"object": "embedding", "index": i, "embedding": encode_base64(v) if as_base64 else v}
                    for i, v in enumerate(result.vectors)
                ],
                "usage": {
                    "prompt_tokens": result.prompt_tokens,
                    "total_tokens": result.prompt_tokens,
                    "cost": nanos_to_usd(cost),
                },
            }
        assert last_error is not None
        raise last_error


def _check_options(body: dict[str, Any]) -> None:
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= 65536
    ):
        raise InvalidRequest("dimensions must be an integer between 1 and 65536", metadata={"field": "dimensions"})
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise InvalidRequest("encoding_format must be float or base64", metadata={"field": "encoding_format"})
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > 256):
        raise InvalidRequest("user must be a string of at most 256 characters", metadata={"field": "user"})
