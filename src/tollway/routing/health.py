"""Per-endpoint health from live traffic: a circuit breaker, latency and throughput averages and percentiles."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from tollway.clock import Clock


@dataclass
class EndpointHealth:
    failures: deque[int] = field(default_factory=deque)
    open_until_us: int = 0
    half_open: bool = False
    latency_ms: float | None = None  # time to first token, moving average
    throughput_tps: float | None = None  # tokens per second, moving average
    # (at_us, value) of recent streamed answers, for the percentiles of the last 30 minutes.
    latency_samples: deque[tuple[int, float]] = field(default_factory=deque)
    throughput_samples: deque[tuple[int, float]] = field(default_factory=deque)
    # Attempts per UTC minute: minute -> [answered, tried], the last day's, for uptime.
    attempts_by_minute: dict[int, list[int]] = field(default_factory=dict)


_PERCENTILE_WINDOW_US = 30 * 60 * 1_000_000
_MINUTE_US = 60 * 1_000_000
_UPTIME_KEEP_MINUTES = 24 * 60
_MAX_SAMPLES = 2048


def _remember(samples: deque[tuple[int, float]], now_us: int, value: float) -> None:
    samples.append((now_us, value))
    while len(samples) > _MAX_SAMPLES:
        samples.popleft()


def percentiles(samples: deque[tuple[int, float]], since_us: int) -> dict[str, float] | None:
    """{p50, p75, p90, p99} of the samples taken since `since_us` (nearest rank), or None without any."""
    values = sorted(value for at_us, value in samples if at_us >= since_us)
    if not values:
        return None

    def rank(fraction: float) -> float:
        return round(values[max(0, math.ceil(len(values) * fraction) - 1)], 3)

    return {"p50": rank(0.5), "p75": rank(0.75), "p90": rank(0.9), "p99": rank(0.99)}


class HealthBoard:
    """Opens an endpoint's circuit after `threshold` failures within `window_s`; retries it after `cooldown_s`."""

    def __init__(self, clock: Clock, threshold: int = 3, window_s: float = 30.0, cooldown_s: float = 30.0) -> None:
        self._clock = clock
        self._threshold = threshold
        self._window_us = int(window_s * 1_000_000)
        self._cooldown_us = int(cooldown_s * 1_000_000)
        self._endpoints: dict[str, EndpointHealth] = {}

    def _get(self, endpoint_id: str) -> EndpointHealth:
        return self._endpoints.setdefault(endpoint_id, EndpointHealth())

    def available(self, endpoint_id: str) -> bool:
        """Closed, or half-open (cool-down over: one trial request may go)."""
        state = self._endpoints.get(endpoint_id)
        if state is None or state.open_until_us == 0:
            return True
        if self._clock.now_us() >= state.open_until_us:
            state.half_open = True
            return True
        return False

    def state(self, endpoint_id: str) -> str:
        state = self._endpoints.get(endpoint_id)
        if state is None or state.open_until_us == 0:
            return "closed"
        return "half_open" if self._clock.now_us() >= state.open_until_us else "open"

    def success(
        self, endpoint_id: str, first_token_ms: float | None = None, tokens_per_second: float | None = None
    ) -> None:
        state = self._get(endpoint_id)
        state.failures.clear()
        state.open_until_us = 0
        state.half_open = False
        now_us = self._clock.now_us()
        if first_token_ms is not None:
            _remember(state.latency_samples, now_us, first_token_ms)
            state.latency_ms = (
                first_token_ms if state.latency_ms is None else 0.8 * state.latency_ms + 0.2 * first_token_ms
            )
        if tokens_per_second is not None:
            _remember(state.throughput_samples, now_us, tokens_per_second)
            state.throughput_tps = (
                tokens_per_second
                if state.throughput_tps is None
                else 0.8 * state.throughput_tps + 0.2 * tokens_per_second
            )

    def failure(self, endpoint_id: str) -> None:
        now = self._clock.now_us()
        state = self._get(endpoint_id)
        if state.half_open:
            state.open_until_us = now + self._cooldown_us
            state.half_open = False
            return
        state.failures.append(now)
        while state.failures and state.failures[0] < now - self._window_us:
            state.failures.popleft()
        if len(state.failures) >= self._threshold:
            state.open_until_us = now + self._cooldown_us
            state.failures.clear()

    def attempted(self, endpoint_id: str, answered: bool) -> None:
        """One attempt's outcome for uptime: answered, or failed as the endpoint's fault (timeout, 429, 5xx)."""
        state = self._get(endpoint_id)
        minute = self._clock.now_us() // _MINUTE_US
        counts = state.attempts_by_minute.get(minute)
        if counts is None:
            counts = state.attempts_by_minute[minute] = [0, 0]
            for old in [m for m in state.attempts_by_minute if m <= minute - _UPTIME_KEEP_MINUTES]:
                del state.attempts_by_minute[old]
        counts[0] += answered
        counts[1] += 1

    def uptime(self, endpoint_id: str, minutes: int) -> float | None:
        """Percent of the attempts of the last `minutes` that were answered; None without any."""
        state = self._endpoints.get(endpoint_id)
        if state is None:
            return None
        since = self._clock.now_us() // _MINUTE_US - minutes
        answered = tried = 0
        for minute, (ok, total) in state.attempts_by_minute.items():
            if minute > since:
                answered += ok
                tried += total
        return None if tried == 0 else round(100 * answered / tried, 2)

    def stats(self, endpoint_id: str) -> EndpointHealth:
        return self._get(endpoint_id)

    def latency_percentiles(self, endpoint_id: str) -> dict[str, float] | None:
        """Time to first token (ms) over the last 30 minutes."""
        state = self._endpoints.get(endpoint_id)
        return (
            None if state is None else percentiles(state.latency_samples, self._clock.now_us() - _PERCENTILE_WINDOW_US)
        )

    def throughput_percentiles(self, endpoint_id: str) -> dict[str, float] | None:
        """Tokens per second over the last 30 minutes."""
        state = self._endpoints.get(endpoint_id)
        window_start = self._clock.now_us() - _PERCENTILE_WINDOW_US
        return None if state is None else percentiles(state.throughput_samples, window_start)
