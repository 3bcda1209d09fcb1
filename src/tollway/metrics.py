"""Prometheus metrics, in a registry built per process (served at /metrics)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tollway_requests",
            "Chat requests by model, provider and HTTP status",
            ["model", "provider", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tollway_request_seconds",
            "Total request latency",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            "tollway_time_to_first_token_seconds",
            "Streaming time to first token",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "tollway_upstream_seconds",
            "Upstream attempt latency",
            ["provider", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter("tollway_tokens", "Tokens billed", ["model", "kind"], registry=self.registry)
        self.cost = Counter("tollway_cost_usd", "USD billed", ["model"], registry=self.registry)
        self.hold_overruns = Counter(
            "tollway_hold_overruns",
            "Settlements that cost more than their hold (each one is listed by `tollway reconcile`)",
            ["model"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "tollway_refusals", "Requests refused by status and reason", ["status", "reason"], registry=self.registry
        )
        self.payment_events = Counter(
            "tollway_payment_events",
            "Payment webhooks by provider, type and outcome",
            ["provider", "type", "outcome"],
            registry=self.registry,
        )
        self.auto_recharges = Counter(
            "tollway_auto_recharges", "Auto-recharge charges by outcome", ["outcome"], registry=self.registry
        )
        # Named as the assistant's documentation names it (exported as assistant_rejected_answers_total).
        self.assistant_rejected_answers = Counter(
            "assistant_rejected_answers",
            "Model-written assistant answers replaced by the grounded answer (a USD figure not in the facts)",
            registry=self.registry,
        )

        # Labelled children by label values: `labels()` validates and locks on every call, and the
        # settlement of every request would pay that six times over.
        self._settled: dict[tuple[str, str, int], tuple[Any, Any, Any, Any, Any]] = {}
        self._attempts: dict[tuple[str, int], Any] = {}

    def request_settled(
        self,
        model: str,
        provider: str,
        status: int,
        latency_s: float,
        prompt_tokens: int,
        completion_tokens: int,
        cost_usd: float,
    ) -> None:
        children = self._settled.get((model, provider, status))
        if children is None:
            children = (
                self.requests.labels(model, provider, str(status)),
                self.latency.labels(model),
                self.tokens.labels(model, "prompt"),
                self.tokens.labels(model, "completion"),
                self.cost.labels(model),
            )
            self._settled[(model, provider, status)] = children
        requests, latency, prompt, completion, cost = children
        requests.inc()
        latency.observe(latency_s)
        prompt.inc(prompt_tokens)
        completion.inc(completion_tokens)
        cost.inc(cost_usd)

    def upstream_attempt(self, provider: str, status: int, seconds: float) -> None:
        child = self._attempts.get((provider, status))
        if child is None:
            child = self._attempts[(provider, status)] = self.upstream_latency.labels(provider, str(status))
        child.observe(seconds)

    def track_holds(self, count: Callable[[], int]) -> None:
        gauge = Gauge("tollway_holds_in_flight", "Holds placed and not yet settled", registry=self.registry)
        gauge.set_function(lambda: float(count()))
