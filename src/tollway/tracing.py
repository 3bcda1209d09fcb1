"""OpenTelemetry traces: one span per request, with children for admission, each upstream attempt and settlement.

Named and attributed by the GenAI semantic conventions (`chat {model}` client spans, `gen_ai.request.model`,
`gen_ai.usage.input_tokens`, ...) plus `tollway.*` attributes (account, generation id, cost). Keys are never
recorded, prompts and answers only with `otel_capture_content`.

Off unless `otel_endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set. `ENABLED` is the one module-level switch,
set once at start-up by `start` (or `enable`, in tests): the request path reads it before any tracing call, so a
gateway without an endpoint never loads the trace SDK or exporter nor calls a tracer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from tollway.gateway.chat import Candidate, ChatContext
    from tollway.gateway.validation import ChatBody
    from tollway.ledger.records import GenerationRecord
    from tollway.settings import Settings

ENABLED = False
_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_capture_content = False
_CONTENT_LIMIT = 64 * 1024  # characters of a captured prompt or answer


def traces_endpoint(settings: Settings) -> str | None:
    """Where spans go: `otel_endpoint`, else the standard OTLP variables; a base URL gains /v1/traces."""
    traces_only = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not settings.otel_endpoint and traces_only:
        return traces_only
    base = settings.otel_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not base:
        return None
    base = base.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def start(settings: Settings) -> bool:
    """Export spans over OTLP/HTTP when an endpoint is configured; returns whether tracing is on."""
    endpoint = traces_endpoint(settings)
    if endpoint is None:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or settings.otel_service_name
    provider = TracerProvider(resource=Resource.create({"service.name": name, "service.namespace": "tollway"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    enable(provider, capture_content=settings.otel_capture_content)
    return True


def enable(provider: TracerProvider, *, capture_content: bool = False) -> None:
    """Trace with this provider from now on (its processors decide where spans go)."""
    global ENABLED, _tracer, _provider, _capture_content
    _provider = provider
    _tracer = provider.get_tracer("tollway")
    _capture_content = capture_content
    ENABLED = True


def stop() -> None:
    """Send what is buffered and switch tracing off."""
    global ENABLED, _tracer, _provider
    ENABLED = False
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def _tracer_or_fail() -> Tracer:
    assert _tracer is not None, "tracing.ENABLED is set by enable(), which sets the tracer"
    return _tracer


@contextmanager
def request_span(method: str, route: str, path: str) -> Iterator[Span]:
    """The server span of one HTTP request, current while the handler runs (children attach to it)."""
    from opentelemetry.trace import SpanKind, use_span

    span = _tracer_or_fail().start_span(
        f"{method} {route}",
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method, "http.route": route, "url.path": path},
    )
    with use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
        yield span


def set_response_status(span: Span, status: int) -> None:
    from opentelemetry.trace import StatusCode

    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(StatusCode.ERROR)
        span.set_attribute("error.type", str(status))


def _current() -> Span:
    from opentelemetry.trace import get_current_span

    return get_current_span()


def _content(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()[:_CONTENT_LIMIT]


@contextmanager
def admission_span(account_id: str, body: ChatBody) -> Iterator[Span]:
    """Admission: resolve the models, estimate, hold the money, pass the limits; a refusal marks it failed."""
    from opentelemetry.trace import StatusCode

    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": body.model or "",
        "tollway.account.id": account_id,
        "tollway.stream": body.stream,
    }
    if body.max_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = body.max_tokens
    _current().set_attributes(attributes)
    if _capture_content:
        _current().set_attribute("gen_ai.input.messages", _content(body.messages))
    span = _tracer_or_fail().start_span("tollway.admission", attributes=attributes)
    try:
        yield span
    except BaseException as exc:
        error_type = str(getattr(exc, "error_type", type(exc).__name__))
        span.set_status(StatusCode.ERROR, str(getattr(exc, "message", "")) or None)
        span.set_attribute("error.type", error_type)
        metadata = getattr(exc, "metadata", None)
        code = (metadata.get("explanation") or {}).get("code") if isinstance(metadata, dict) else None
        for target in (span, _current()):
            target.set_attribute("error.type", error_type)
            if code:
                target.set_attribute("tollway.refusal.code", str(code))
        raise
    finally:
        span.end()


def admitted(span: Span, context: ChatContext) -> None:
    attributes: dict[str, Any] = {
        "tollway.generation.id": context.generation_id,
        "tollway.hold.nanos": context.reservation.hold.amount_nanos,
        "tollway.candidates": len(context.candidates),
        "gen_ai.request.max_tokens": context.max_tokens,
    }
    span.set_attributes(attributes)
    _current().set_attributes(attributes)


def record_attempt(context: ChatContext, candidate: Candidate, status: int, elapsed_s: float) -> None:
    """One upstream attempt as a `chat {model}` client span, timed after the fact (it has just ended)."""
    from opentelemetry.trace import SpanKind, StatusCode

    end_ns = time.time_ns()
    endpoint = candidate.endpoint
    span = _tracer_or_fail().start_span(
        f"chat {endpoint.upstream_model}",
        kind=SpanKind.CLIENT,
        start_time=end_ns - int(elapsed_s * 1e9),
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": endpoint.provider_name,
            "gen_ai.request.model": endpoint.upstream_model,
            "tollway.model": candidate.model.id,
            "tollway.endpoint.id": endpoint.endpoint_id,
            "tollway.attempt": len(context.attempts),
            "tollway.generation.id": context.generation_id,
            "http.response.status_code": status,
        },
    )
    if status != 200:
        span.set_status(StatusCode.ERROR)
        span.set_attribute("error.type", str(status) if status else "connection_error")
    span.end(end_time=end_ns)


def record_output(message: Any) -> None:
    """A non-streamed answer on the request span, with otel_capture_content only (streams are not kept)."""
    if _capture_content:
        _current().set_attribute("gen_ai.output.messages", _content([message]))


@contextmanager
def settlement_span(context: ChatContext, generation: GenerationRecord) -> Iterator[None]:
    """Settlement: the exact cost written to the ledger (and the hold resolved)."""
    attributes: dict[str, Any] = {
        "gen_ai.provider.name": generation.provider_name or "",
        "gen_ai.response.model": generation.model,
        "gen_ai.response.id": generation.id,
        "gen_ai.usage.input_tokens": generation.tokens_prompt,
        "gen_ai.usage.output_tokens": generation.tokens_completion,
        "tollway.generation.id": generation.id,
        "tollway.account.id": generation.account_id,
        "tollway.cost.nanos": generation.cost_nanos,
        "tollway.cost.usd": generation.cost_nanos / 1_000_000_000,
        "tollway.usage.reasoning_tokens": generation.tokens_reasoning,
        "tollway.usage.cached_tokens": generation.tokens_cached,
        "tollway.cancelled": generation.cancelled,
    }
    if generation.finish_reason:
        attributes["gen_ai.response.finish_reasons"] = [generation.finish_reason]
    _current().set_attributes(attributes)
    span = _tracer_or_fail().start_span("tollway.settlement", attributes=attributes)
    try:
        yield
    finally:
        span.end()


@contextmanager
def release_span(context: ChatContext) -> Iterator[None]:
    """Nothing was served: the hold goes back."""
    span = _tracer_or_fail().start_span(
        "tollway.release",
        attributes={"tollway.generation.id": context.generation_id, "tollway.account.id": context.key.account_id},
    )
    try:
        yield
    finally:
        span.end()
