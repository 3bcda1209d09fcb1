"""Setting and showing per-account and per-key limits, shared by the CLI, the admin API and /keys."""

from __future__ import annotations

from typing import Any

from tollway.errors import InvalidRequest
from tollway.limits.config import LimitSpec, parse_period


def _positive(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"{name} must be a positive whole number or null", metadata={"field": name})
    return value


def parse_limit_spec(body: Any) -> LimitSpec:
    """{requests, per (second|minute|hour|day, or interval 1s|1m|1h|1d), tokens_per_minute, concurrency}."""
    if not isinstance(body, dict):
        raise InvalidRequest('rate_limit must be an object such as {"requests": 60, "per": "minute"}')
    unknown = set(body) - {"requests", "per", "interval", "tokens_per_minute", "concurrency"}
    if unknown:
        raise InvalidRequest(f"unknown rate_limit fields: {', '.join(sorted(unknown))}")
    requests = _positive(body.get("requests"), "requests")
    period_value = body.get("per", body.get("interval"))
    if requests is not None and period_value is None:
        raise InvalidRequest("requests needs per: second, minute, hour or day", metadata={"field": "per"})
    try:
        period = parse_period(period_value) if period_value is not None else None
    except ValueError as exc:
        raise InvalidRequest(str(exc), metadata={"field": "per"}) from exc
    return LimitSpec(
        requests=requests,
        period=period if requests is not None else None,
        tokens_per_minute=_positive(body.get("tokens_per_minute"), "tokens_per_minute"),
        concurrency=_positive(body.get("concurrency"), "concurrency"),
    )


def spec_object(spec: LimitSpec) -> dict[str, Any]:
    return {
        "requests": spec.requests,
        "per": spec.period.value if spec.period else None,
        "interval": spec.period.short if spec.period else None,
        "tokens_per_minute": spec.tokens_per_minute,
        "concurrency": spec.concurrency,
    }
