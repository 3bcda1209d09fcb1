"""OpenTelemetry traces: spans and GenAI attributes of a served, a failed-over and a refused request.

In process with the SDK's in-memory exporter (the gateway runs on loopback in a thread of this process), and
across processes with a loopback OTLP/HTTP receiver decoding what a `tollway serve` exports.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support import GatewayServer, free_port, start_gateway, write_config
from tollway import tracing
from tollway.app import build_app
from tollway.services import build_services
from tollway.settings import load_settings


class InProcessGateway:
    """The gateway's app served on loopback by an event loop in a thread of the test process."""

    def __init__(self, database_url: str, config: Path) -> None:
        self.port = free_port()
        self.token = secrets.token_hex(8)
        self.settings = load_settings(database_url=database_url, config=config, admin_token=self.token, port=self.port)
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(30), "the in-process gateway did not start"
        self.server = GatewayServer(
            f"http://127.0.0.1:{self.port}",
            self.token,
            database_url,
            None,
            config,  # type: ignore[arg-type]
        )

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        services = await build_services(self.settings)
        runner = web.AppRunner(build_app(services))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def close(self) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self._loop.close()


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider, capture_content=False)
    yield exporter
    tracing.stop()


@pytest.fixture(scope="module")
def traced(
    spans: InMemorySpanExporter, upstream: FakeOpenAIUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("traced")
    gateway = InProcessGateway(
        f"sqlite:///{directory / 'db.sqlite'}", write_config(directory / "c.yaml", upstream.base_url)
    )
    yield gateway.server
    gateway.close()


def _trace_of(exporter: InMemorySpanExporter, generation_id: str | None = None) -> list[ReadableSpan]:
    """The spans of the last traced request (or of the request that made this generation).

    A request's span ends when its handler returns, which may be just after the client read the last byte."""
    deadline = time.monotonic() + 10
    while True:
        finished = list(exporter.get_finished_spans())
        roots = [s for s in finished if s.parent is None and s.name.startswith("POST ")]
        if generation_id is not None:
            roots = [s for s in roots if (s.attributes or {}).get("tollway.generation.id") == generation_id]
        if roots or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert roots, [s.name for s in finished]
    root = roots[-1]
    assert root.context is not None
    return [root, *[s for s in finished if s.parent is not None and s.parent.span_id == root.context.span_id]]


def _named(trace: list[ReadableSpan], prefix: str) -> list[ReadableSpan]:
    return [s for s in trace if s.name.startswith(prefix)]


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_a_served_request_has_admission_attempt_and_settlement(
    traced: GatewayServer, spans: InMemorySpanExporter
) -> None:
    account = traced.new_account("10")
    reply = traced.post(
        "/chat/completions", account.key, {"model": "fake/chat", "messages": [{"role": "user", "content": "secret"}]}
    )
    assert reply.status_code == 200, reply.text
    generation_id = reply.json()["id"]
    trace = _trace_of(spans, generation_id)
    root = _attributes(trace[0])
    assert trace[0].name == "POST /api/v1/chat/completions"
    assert root["http.response.status_code"] == 200
    assert root["gen_ai.request.model"] == "fake/chat"
    assert root["tollway.account.id"] == account.id
    usage = reply.json()["usage"]
    assert root["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert root["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert root["tollway.cost.nanos"] == round(usage["cost"] * 1_000_000_000)
    [admission] = _named(trace, "tollway.admission")
    assert _attributes(admission)["tollway.hold.nanos"] > 0
    [attempt] = _named(trace, "chat ")
    assert attempt.name == "chat fake-chat-1"
    attempt_attributes = _attributes(attempt)
    assert attempt_attributes["gen_ai.provider.name"] == "FakeUp"  # as responses name it
    assert attempt_attributes["gen_ai.request.model"] == "fake-chat-1"
    assert attempt_attributes["http.response.status_code"] == 200
    [settlement] = _named(trace, "tollway.settlement")
    settled = _attributes(settlement)
    assert settled["gen_ai.response.id"] == generation_id
    assert settled["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    # Never a key, never the prompt (otel_capture_content is off).
    everything = repr([_attributes(s) for s in trace])
    assert account.key not in everything and "secret" not in everything
    assert "gen_ai.input.messages" not in everything


def test_a_failed_over_request_has_one_span_per_attempt(traced: GatewayServer, spans: InMemorySpanExporter) -> None:
    account = traced.new_account("10")
    body = {
        "model": "fake/failover",
        "messages": [{"role": "user", "content": "hi"}],
        "provider": {"sort": "price"},  # the dead endpoint is the cheaper one: tried first
        "stream": True,
    }
    with httpx.stream(
        "POST", traced.api + "/chat/completions", json=body, headers={"Authorization": f"Bearer {account.key}"}
    ) as response:
        assert response.status_code == 200
        generation_id = response.headers["X-Generation-Id"]
        response.read()
    trace = _trace_of(spans, generation_id)
    attempts = sorted(_named(trace, "chat "), key=lambda s: s.start_time or 0)
    assert [_attributes(a)["gen_ai.provider.name"] for a in attempts] == ["deadup", "FakeUp"]
    assert attempts[0].status.status_code == StatusCode.ERROR
    assert _attributes(attempts[0])["error.type"] in ("connection_error", "502", "503")
    assert attempts[1].status.status_code != StatusCode.ERROR
    assert [_attributes(a)["tollway.attempt"] for a in attempts] == [1, 2]
    [settlement] = _named(trace, "tollway.settlement")
    assert _attributes(settlement)["gen_ai.provider.name"] == "FakeUp"
    assert _attributes(trace[0])["tollway.stream"] is True


def test_a_refused_request_marks_admission_failed(traced: GatewayServer, spans: InMemorySpanExporter) -> None:
    account = traced.new_account(None)  # no credits
    reply = traced.post(
        "/chat/completions", account.key, {"model": "fake/chat", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert reply.status_code == 402
    trace = _trace_of(spans)
    root = _attributes(trace[0])
    assert root["http.response.status_code"] == 402
    assert root["tollway.refusal.code"] == "balance_empty"
    [admission] = _named(trace, "tollway.admission")
    assert admission.status.status_code == StatusCode.ERROR
    assert _attributes(admission)["error.type"] == root["error.type"] == "payment_required"
    assert not _named(trace, "chat ") and not _named(trace, "tollway.settlement")


def test_prompts_are_recorded_only_with_capture_content(
    traced: GatewayServer, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing, "_capture_content", True)
    account = traced.new_account("10")
    reply = traced.post(
        "/chat/completions", account.key, {"model": "fake/chat", "messages": [{"role": "user", "content": "captured"}]}
    )
    assert reply.status_code == 200
    root = _attributes(_trace_of(spans, reply.json()["id"])[0])
    assert "captured" in root["gen_ai.input.messages"]
    assert reply.json()["choices"][0]["message"]["content"] in root["gen_ai.output.messages"]
    assert account.key not in repr(root)


class OtlpReceiver:
    """A loopback OTLP/HTTP collector: decodes each protobuf export of spans."""

    def __init__(self) -> None:
        self.port = free_port()
        self.spans: list[Any] = []
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _receive(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        for resource_spans in export.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}.get("service.name")
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend((service, span) for span in scope_spans.spans)
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


def test_a_served_gateway_exports_spans_over_otlp_http(upstream: FakeOpenAIUpstream, tmp_path: Path) -> None:
    receiver = OtlpReceiver()
    server = start_gateway(
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        write_config(tmp_path / "c.yaml", upstream.base_url),
        tmp_path,
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}", "OTEL_BSP_SCHEDULE_DELAY": "100"},
    )
    try:
        account = server.new_account("10")
        reply = server.post(
            "/chat/completions", account.key, {"model": "fake/chat", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert reply.status_code == 200
        deadline = time.monotonic() + 20
        while not any(span.name == "tollway.settlement" for _, span in receiver.spans):
            assert time.monotonic() < deadline, f"no settlement span exported: {[s.name for _, s in receiver.spans]}"
            time.sleep(0.1)
    finally:
        server.stop()
        receiver.stop()
    names = {span.name for _, span in receiver.spans}
    assert {"POST /api/v1/chat/completions", "tollway.admission", "chat fake-chat-1", "tollway.settlement"} <= names
    assert {service for service, _ in receiver.spans} == {"tollway"}
    settlement = next(span for _, span in receiver.spans if span.name == "tollway.settlement")
    attributes = {a.key: a.value for a in settlement.attributes}
    assert attributes["gen_ai.response.id"].string_value == reply.json()["id"]
    assert attributes["tollway.account.id"].string_value == account.id
    # The admin API's requests are traced too, but health probes are not.
    assert not any(name.endswith("/health") for name in names)


def test_without_an_endpoint_no_tracer_is_loaded(tmp_path: Path) -> None:
    """Off by default and free: no endpoint, no trace SDK or exporter loaded, no middleware, one flag read.

    (redis imports OpenTelemetry's metrics SDK for its own observability when it is installed: not ours.)"""
    probe = (
        "import sys, asyncio\n"
        "from tollway import tracing\n"
        "from tollway.settings import load_settings\n"
        "from tollway.app import build_app\n"
        "from tollway.services import build_services\n"
        f"settings = load_settings(database_url='sqlite:///{tmp_path / 'db.sqlite'}')\n"
        "assert tracing.start(settings) is False and tracing.ENABLED is False\n"
        "async def main():\n"
        "    app = build_app(await build_services(settings))\n"
        "    assert all(m.__name__ != 'tracing_middleware' for m in app.middlewares)\n"
        "asyncio.run(main())\n"
        "ours = ('opentelemetry.sdk.trace', 'opentelemetry.exporter')\n"
        "loaded = sorted(name for name in sys.modules if name.startswith(ours))\n"
        "assert not loaded, loaded\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TOLLWAY_"))}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
