"""Prometheus metrics, in a registry built per process (served at /metrics)."""

from __future__ import annotations

from collections.abc import Callable

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

    def track_holds(self, count: Callable[[], int]) -> None:
        gauge = Gauge("tollway_holds_in_flight", "Holds placed and not yet settled", registry=self.registry)
        gauge.set_function(lambda: float(count()))
