"""Per-endpoint health from live traffic: a circuit breaker, and latency and throughput averages."""

from __future__ import annotations

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
        if first_token_ms is not None:
            state.latency_ms = (
                first_token_ms if state.latency_ms is None else 0.8 * state.latency_ms + 0.2 * first_token_ms
            )
        if tokens_per_second is not None:
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

    def stats(self, endpoint_id: str) -> EndpointHealth:
        return self._get(endpoint_id)
