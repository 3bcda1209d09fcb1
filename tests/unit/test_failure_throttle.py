"""The failed-authentication bucket: never more failures than the burst plus the refill, and Retry-After is honest."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tollway.auth.throttle import FailureThrottle


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


events = st.lists(st.tuples(st.floats(min_value=0, max_value=5), st.sampled_from(["a", "b", "c"])), max_size=300)


@given(events=events, burst=st.integers(1, 20), per_minute=st.floats(min_value=1, max_value=600))
def test_accepted_failures_never_exceed_burst_plus_refill(
    events: list[tuple[float, str]], burst: int, per_minute: float
) -> None:
    clock = FakeTime()
    throttle = FailureThrottle(per_minute, burst, now_s=clock)
    start = clock.now
    accepted: dict[str, int] = {}
    for step_s, address in events:
        clock.now += step_s
        if throttle.retry_after_s(address) == 0:
            throttle.failed(address)
            accepted[address] = accepted.get(address, 0) + 1
    for count in accepted.values():
        assert count <= burst + (clock.now - start) * per_minute / 60 + 1e-6


@given(burst=st.integers(1, 20), per_minute=st.floats(min_value=1, max_value=600))
def test_retry_after_is_enough_and_other_addresses_are_unaffected(burst: int, per_minute: float) -> None:
    clock = FakeTime()
    throttle = FailureThrottle(per_minute, burst, now_s=clock)
    for _ in range(burst):
        assert throttle.retry_after_s("a") == 0
        throttle.failed("a")
    wait_s = throttle.retry_after_s("a")
    assert wait_s >= 1
    assert throttle.retry_after_s("b") == 0
    clock.now += wait_s
    assert throttle.retry_after_s("a") == 0


def test_the_map_of_addresses_is_bounded() -> None:
    throttle = FailureThrottle(60, 1, max_addresses=100)
    for n in range(1000):
        throttle.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle._buckets) == 100
    assert throttle.retry_after_s("10.0.3.231") > 0  # the most recent are kept
