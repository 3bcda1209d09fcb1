"""A chat completion from admission to settlement, independent of the web framework.

admit: resolve models, estimate, place the hold (or refuse). complete / open_stream: try the
candidates in order until one answers (failover before any byte reaches the client), then settle
the exact cost. Every hold is resolved exactly once: settled, or released when nothing was served.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tollway import tracing
from tollway.auth.records import KeyRecord
from tollway.clock import Clock
from tollway.errors import InvalidRequest, NotFound, PermissionDenied, ProviderError
from tollway.gateway.estimate import measure_prompt
from tollway.gateway.reasoning import parse_reasoning
from tollway.gateway.responses import completion_body, usage_body
from tollway.gateway.validation import ChatBody
from tollway.ids import generation_id
from tollway.ledger.admission import CostPlan
from tollway.ledger.pricing import Price
from tollway.ledger.records import AttemptRecord, GenerationRecord
from tollway.ledger.service import Ledger, Reservation
from tollway.limits.service import RateLimiter, Ticket
from tollway.metrics import Metrics
from tollway.providers.base import (
    Completion,
    ReasoningPlan,
    StreamChunk,
    UpstreamRequest,
    normalise_finish_reason,
)
from tollway.routing.catalog import VARIANT_SUFFIXES, Catalog, CatalogModel, Endpoint
from tollway.routing.health import HealthBoard
from tollway.routing.preferences import PARAMETERS, order_endpoints, parse_preferences
from tollway.routing.sessions import StickySessions
from tollway.usage import Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Candidate:
    model: CatalogModel
    endpoint: Endpoint


@dataclass(slots=True)
class ChatContext:
    key: KeyRecord
    body: ChatBody
    candidates: list[Candidate]
    reservation: Reservation
    generation_id: str
    started_us: int
    started_monotonic: float
    user_agent: str | None
    referer: str | None
    ticket: Ticket | None = None
    prompt_estimate: int = 0
    images: int = 0
    reasoning: ReasoningPlan | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    session_id: str | None = None
    preset_id: str | None = None

    @property
    def max_tokens(self) -> int:
        return self.reservation.max_tokens


def is_zero_completion(usage: Usage, finish_reason: str | None) -> bool:
    """Zero completion insurance: nothing produced and a blank or error finish is not billed."""
    return usage.completion_tokens == 0 and finish_reason in (None, "", "error")


def worst_price(candidates: list[Candidate]) -> Price:
    """The most expensive of every candidate's prices, so that no failover can overspend its hold."""
    return Price.most_expensive([c.endpoint.price for c in candidates])


@dataclass(frozen=True, slots=True)
class PromptAllowances:
    """Tokens a hold counts for what the estimate cannot read: each input image, each page of a file."""

    image_tokens: int = 1600
    file_page_tokens: int = 1600


class ChatGateway:
    def __init__(
        self,
        catalog: Catalog,
        ledger: Ledger,
        limiter: RateLimiter,
        clock: Clock,
        metrics: Metrics,
        health: HealthBoard,
        provider_slugs: Iterable[str],
        rng: random.Random | None = None,
        allowances: PromptAllowances | None = None,
        sessions: StickySessions | None = None,
    ) -> None:
        self.sessions = sessions or StickySessions(clock)
        self._allowances = allowances or PromptAllowances()
        self.health = health
        self._provider_slugs = frozenset(provider_slugs)
        self._rng = rng or random.Random()
        self._catalog = catalog
        self._ledger = ledger
        self._limiter = limiter
        self._clock = clock
        self._metrics = metrics
        # Told the account id after each billed settlement (auto-recharge watches balances this way).
        self.settlement_listeners: list[Callable[[str], Awaitable[None]]] = []

    def candidates(self, body: ChatBody) -> list[Candidate]:
        """Every endpoint to try, in order: each requested model's endpoints as its preferences rank them."""
        wanted = ([body.model] if body.model else []) + list(body.fallback_models)
        found: list[Candidate] = []
        resolved: list[str] = []
        for model_id in wanted:
            model = self._catalog.resolve(model_id)
            if model is None:
                continue  # an unknown id in the fallback list counts as a failure and moves on
            resolved.append(model.id)
            variant = (
                None if model_id == model.id else next((v for v in VARIANT_SUFFIXES if model_id.endswith(v)), None)
            )
            raw_preferences = body.raw.get("provider")
            if raw_preferences is None and variant is None and len(model.endpoints) == 1:
                found.append(Candidate(model, model.endpoints[0]))  # default preferences: nothing to rank
                continue
            prefs = parse_preferences(raw_preferences, variant, self._provider_slugs, body.raw)
            ordered = order_endpoints(
                model.endpoints,
                prefs,
                self.health.available,
                lambda endpoint_id: self.health.stats(endpoint_id).latency_ms,
                lambda endpoint_id: self.health.stats(endpoint_id).throughput_tps,
                self._rng,
            )
            found.extend(Candidate(model, endpoint) for endpoint in ordered)
        if not found and resolved:
            provider = body.raw.get("provider")
            required = (
                sorted(n for n in body.raw if n in PARAMETERS)
                if isinstance(provider, dict) and provider.get("require_parameters") is True
                else []
            )
            detail = f" that support {', '.join(required)} (provider.require_parameters is true)" if required else ""
            raise NotFound(
                f"No endpoints found for {resolved[0]}{detail}.",
                metadata={"model": resolved[0], "required_parameters": required},
            )
        if not found:
            first = wanted[0]
            raise InvalidRequest(
                f"{first} is not a valid model ID. See GET /api/v1/models for the models this gateway serves.",
                metadata={"model": first},
            )
        return found

    def _prompt_estimate(self, body: ChatBody, candidates: list[Candidate]) -> tuple[int, int]:
        """Prompt tokens to hold for (the most any candidate may count), and the number of input images."""
        size = measure_prompt(body.raw, body.messages)
        media = size.tokens(self._allowances.image_tokens, self._allowances.file_page_tokens) - size.text_tokens
        providers = {id(c.endpoint.provider): c.endpoint.provider for c in candidates}
        estimate = 0
        for provider in providers.values():
            exact = provider.count_prompt(body.raw, body.messages)
            estimate = max(estimate, (size.text_tokens if exact is None else exact) + media)
        return estimate, size.images

    async def admit(
        self,
        key: KeyRecord,
        body: ChatBody,
        user_agent: str | None = None,
        referer: str | None = None,
        *,
        session_id: str | None = None,
        preset_id: str | None = None,
    ) -> ChatContext:
        if tracing.ENABLED:
            with tracing.admission_span(key.account_id, body) as span:
                context = await self._admit(key, body, user_agent, referer, session_id, preset_id)
                tracing.admitted(span, context)
                return context
        return await self._admit(key, body, user_agent, referer, session_id, preset_id)

    async def _admit(
        self,
        key: KeyRecord,
        body: ChatBody,
        user_agent: str | None,
        referer: str | None,
        session_id: str | None,
        preset_id: str | None,
    ) -> ChatContext:
        if key.is_management:
            raise PermissionDenied(
                "Management keys cannot be used for completions; use an inference key (sk-tw-v1-...).",
                metadata={"explanation": {"code": "management_key", "message": "This is a management key."}},
            )
        candidates = self.candidates(body)
        if session_id is not None:  # the endpoint that served the session before, first while it is healthy
            candidates = await self.sessions.ordered(key.account_id, session_id, candidates, self.health.available)
        requested = body.max_tokens
        default_max = max(c.endpoint.max_completion_tokens for c in candidates)
        max_tokens = requested if requested is not None else default_max
        reasoning = parse_reasoning(body.raw, max_tokens)
        prompt_estimate, images = self._prompt_estimate(body, candidates)
        plan = CostPlan(
            price=worst_price(candidates),
            prompt_tokens_estimate=prompt_estimate,
            max_tokens=max_tokens,
            max_tokens_requested=requested is not None,
            images=images,
            reasoning_tokens=reasoning.budget_tokens if reasoning else 0,
        )
        purchased_nanos = 0
        if plan.price.is_free:
            # Free models: the daily allowance depends on purchases, and a negative balance refuses them
            # before any free-model limit is counted. (Paid requests learn both from the reservation.)
            account = await self._ledger.account_figures(key.account_id)
            if account.balance_nanos < 0:
                await self._ledger.reserve(key, plan)
            purchased_nanos = account.purchased_nanos
        primary = candidates[0].endpoint
        checks = self._limiter.checks_for(
            key,
            free_model=plan.price.is_free,
            purchased_nanos=purchased_nanos,
            prompt_tokens=plan.prompt_tokens_estimate,
            endpoint=(primary.endpoint_id, primary.max_requests_per_second)
            if primary.max_requests_per_second
            else None,
        )
        ticket, reservation = await self._limiter.admit_with_hold(checks, self._ledger, key, plan)
        now_us = self._clock.now_us()
        return ChatContext(
            key=key,
            body=body,
            candidates=candidates,
            reservation=reservation,
            generation_id=generation_id(now_us // 1_000_000),
            started_us=now_us,
            started_monotonic=time.monotonic(),
            user_agent=user_agent,
            referer=referer,
            ticket=ticket,
            prompt_estimate=plan.prompt_tokens_estimate,
            images=images,
            reasoning=reasoning,
            session_id=session_id,
            preset_id=preset_id,
        )

    def _listeners_for(self, account_id: str) -> Callable[[], Awaitable[None]]:
        async def tell() -> None:
            for listener in self.settlement_listeners:
                await listener(account_id)

        return tell

    async def settle(self, context: ChatContext, generation: GenerationRecord) -> None:
        """Bill a served request and tell the limiters what it really used."""
        if generation.hold_overrun_nanos:
            self._metrics.hold_overruns.labels(generation.model).inc()
        tokens_used = generation.tokens_prompt + generation.tokens_completion
        # Where the book and the limiter share Redis, the limiter's finish rides in the settlement's script.
        rider = self._limiter.finish_rider(context.ticket, tokens_used, self._ledger)
        # Listeners read the balance: they run once the book has the cost (after the answer, with Redis).
        then = (
            self._listeners_for(generation.account_id) if generation.cost_nanos and self.settlement_listeners else None
        )
        if tracing.ENABLED:
            with tracing.settlement_span(context, generation):
                await self._ledger.settle(context.reservation.hold, generation, rider, then)
        else:
            await self._ledger.settle(context.reservation.hold, generation, rider, then)
        await self._limiter.finish(context.ticket, tokens_used)  # nothing left to do when it rode along
        if context.session_id is not None and context.attempts:  # the session's next requests go there first
            await self.sessions.remember(context.key.account_id, context.session_id, context.attempts[-1].endpoint_id)
        metrics = self._metrics
        metrics.request_settled(
            generation.model,
            generation.provider_name or "",
            generation.status,
            (generation.latency_ms or 0) / 1000,
            generation.tokens_prompt,
            generation.tokens_completion,
            generation.cost_nanos / 1_000_000_000,
        )
        if generation.streamed and generation.latency_ms is not None and generation.generation_time_ms is not None:
            first_token_ms = generation.latency_ms - generation.generation_time_ms
            metrics.time_to_first_token.labels(generation.model).observe(first_token_ms / 1000)
            measurable = generation.generation_time_ms > 0 and generation.tokens_completion
            self.health.success(  # time to first token always; throughput when there was time to measure
                context.attempts[-1].endpoint_id,
                first_token_ms=float(first_token_ms),
                tokens_per_second=generation.tokens_completion / (generation.generation_time_ms / 1000)
                if measurable
                else None,
            )

    async def release(self, context: ChatContext) -> None:
        """Nothing was served: drop the hold; the request still counted as a request."""
        rider = self._limiter.finish_rider(context.ticket, 0, self._ledger)
        if tracing.ENABLED:
            with tracing.release_span(context):
                await self._ledger.release(context.reservation.hold, rider)
        else:
            await self._ledger.release(context.reservation.hold, rider)
        await self._limiter.finish(context.ticket, 0)  # nothing left to do when it rode along

    def _attempt(self, context: ChatContext, candidate: Candidate, status: int, started: float) -> None:
        elapsed = time.monotonic() - started
        if status == 200 or status in (0, 408, 429) or status >= 500:
            self.health.attempted(candidate.endpoint.endpoint_id, answered=status == 200)
        if status == 200:
            self.health.success(candidate.endpoint.endpoint_id)
        elif status in (0, 408, 429) or status >= 500:
            self.health.failure(candidate.endpoint.endpoint_id)
        self._metrics.upstream_attempt(candidate.endpoint.provider_name, status, elapsed)
        context.attempts.append(
            AttemptRecord(
                provider_name=candidate.endpoint.provider_name,
                status=status,
                latency_ms=int((time.monotonic() - started) * 1000),
                model=candidate.model.id,
                endpoint_id=candidate.endpoint.endpoint_id,
            )
        )
        if tracing.ENABLED:
            tracing.record_attempt(context, candidate, status, elapsed)

    def _upstream_request(self, context: ChatContext, candidate: Candidate) -> UpstreamRequest:
        return UpstreamRequest(
            body=context.body.raw,
            upstream_model=candidate.endpoint.upstream_model,
            max_tokens=context.max_tokens,
            reasoning=context.reasoning,
        )

    def generation(
        self,
        context: ChatContext,
        candidate: Candidate,
        usage: Usage,
        finish_reason: str | None,
        *,
        native_finish_reason: str | None,
        upstream_id: str | None,
        streamed: bool,
        cancelled: bool,
        first_token_s: float | None = None,
        status: int = 200,
    ) -> GenerationRecord:
        usage = self.billed_usage(context, usage)
        cost = 0
        details: dict[str, int] = {}
        if not is_zero_completion(usage, finish_reason):
            breakdown = candidate.endpoint.price.breakdown(usage)
            cost = breakdown.total_nanos
            details = breakdown.as_femtos()
        hold_nanos = context.reservation.hold.amount_nanos
        elapsed_ms = int((time.monotonic() - context.started_monotonic) * 1000)
        return GenerationRecord(
            id=context.generation_id,
            account_id=context.key.account_id,
            key_id=context.key.id,
            model=candidate.model.id,
            provider_name=candidate.endpoint.provider_name,
            created_at_us=self._clock.now_us(),
            upstream_id=upstream_id,
            tokens_prompt=usage.prompt_tokens,
            tokens_completion=usage.completion_tokens,
            tokens_reasoning=usage.reasoning_tokens,
            tokens_cached=usage.cached_tokens,
            cost_nanos=cost,
            latency_ms=elapsed_ms,
            generation_time_ms=elapsed_ms - int(first_token_s * 1000) if first_token_s is not None else elapsed_ms,
            streamed=streamed,
            cancelled=cancelled,
            finish_reason=finish_reason,
            native_finish_reason=native_finish_reason,
            status=status,
            external_user=context.body.user,
            user_agent=context.user_agent,
            http_referer=context.referer,
            max_tokens_capped=context.max_tokens if context.reservation.max_tokens_capped else None,
            provider_responses=list(context.attempts),
            tokens_cache_write=usage.cache_write_tokens,
            tokens_cache_write_1h=usage.cache_write_1h_tokens,
            images=usage.images,
            web_searches=usage.web_searches,
            usage_estimated=usage.counted_locally,
            hold_nanos=hold_nanos,
            hold_overrun_nanos=max(cost - hold_nanos, 0),
            cost_details=details,
            session_id=context.session_id,
            preset_id=context.preset_id,
        )

    @staticmethod
    def billed_usage(context: ChatContext, usage: Usage) -> Usage:
        """The usage a bill counts: parts within their totals, the request's images, and where the upstream
        counted nothing, the prompt as the hold estimated it (never 0 tokens for a prompt that was sent)."""
        usage = usage.normalised()
        usage.images = max(usage.images, context.images)
        if usage.counted_locally:
            usage.prompt_tokens = max(usage.prompt_tokens, context.prompt_estimate)
        return usage

    async def complete(self, context: ChatContext) -> dict[str, Any]:
        """Serve a non-streamed request; the hold is settled or released before this returns or raises."""
        settled = False
        try:
            last_error: ProviderError | None = None
            for candidate in context.candidates:
                started = time.monotonic()
                try:
                    result = await guarded_complete(candidate, self._upstream_request(context, candidate))
                except ProviderError as exc:
                    self._attempt(context, candidate, exc.upstream_status, started)
                    last_error = exc
                    if not exc.retryable:
                        break
                    continue
                self._attempt(context, candidate, 200, started)
                body, generation = self._finish_completion(context, candidate, result)
                if tracing.ENABLED:
                    tracing.record_output(result.message)
                settled = True
                await self.settle(context, generation)
                return body
            assert last_error is not None
            raise last_error
        finally:
            if not settled:
                await self.release(context)

    def _finish_completion(
        self, context: ChatContext, candidate: Candidate, result: Completion
    ) -> tuple[dict[str, Any], GenerationRecord]:
        finish = normalise_finish_reason(result.finish_reason)
        generation = self.generation(
            context,
            candidate,
            result.usage,
            finish,
            native_finish_reason=result.native_finish_reason,
            upstream_id=result.upstream_id,
            streamed=False,
            cancelled=False,
        )
        body = completion_body(
            generation_id=context.generation_id,
            provider_name=candidate.endpoint.provider_name,
            model=candidate.model.id,
            created=context.started_us // 1_000_000,
            message=result.message,
            finish_reason=finish,
            native_finish_reason=result.native_finish_reason,
            logprobs=result.logprobs,
            system_fingerprint=result.system_fingerprint,
            usage=usage_body(generation),
        )
        return body, generation

    async def open_stream(self, context: ChatContext) -> tuple[Candidate, AsyncIterator[StreamChunk], StreamChunk]:
        """Start the first candidate that yields a chunk; before that, failures move on to the next."""
        last_error: ProviderError | None = None
        for candidate in context.candidates:
            started = time.monotonic()
            upstream = guarded_stream(candidate, self._upstream_request(context, candidate))
            try:
                first = await anext(upstream)
            except StopAsyncIteration:
                last_error = ProviderError(
                    "Provider returned an empty stream",
                    upstream_status=502,
                    provider_name=candidate.endpoint.provider_name,
                )
                self._attempt(context, candidate, 502, started)
                continue
            except ProviderError as exc:
                self._attempt(context, candidate, exc.upstream_status, started)
                last_error = exc
                if not exc.retryable:
                    break
                continue
            except BaseException:
                await self.release(context)
                raise
            self._attempt(context, candidate, 200, started)
            return candidate, upstream, first
        await self.release(context)
        if last_error is None:
            raise NotFound("No endpoints found for this model.")
        raise last_error


def broken_adapter(candidate: Candidate, exc: Exception) -> ProviderError:
    """An adapter that raised something other than ProviderError met an answer it could not read."""
    log.warning("provider %s raised %r", candidate.endpoint.provider_name, exc, exc_info=exc)
    return ProviderError(
        "Provider returned an invalid response", upstream_status=502, provider_name=candidate.endpoint.provider_name
    )


async def guarded_complete(candidate: Candidate, request: UpstreamRequest) -> Completion:
    """The provider's answer; whatever else it raises becomes a 502 like any broken upstream."""
    try:
        return await candidate.endpoint.provider.complete(request)
    except ProviderError:
        raise
    except Exception as exc:
        raise broken_adapter(candidate, exc) from exc


async def guarded_stream(candidate: Candidate, request: UpstreamRequest) -> AsyncIterator[StreamChunk]:
    """The provider's stream; whatever else it raises mid-way becomes a 502 like any broken upstream."""
    try:  # an adapter may build its request when called rather than when first iterated
        stream = candidate.endpoint.provider.stream(request)
    except ProviderError:
        raise
    except Exception as exc:
        raise broken_adapter(candidate, exc) from exc
    try:
        async for chunk in stream:
            yield chunk
    except ProviderError:
        raise
    except Exception as exc:
        raise broken_adapter(candidate, exc) from exc
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
