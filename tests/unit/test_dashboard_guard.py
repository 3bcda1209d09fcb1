"""Pure parts of the dashboard's defences: the failed-sign-in buckets and the `next` check."""

from __future__ import annotations

import pytest

from tollway.dashboard.guard import LoginThrottle
from tollway.dashboard.web import DEFAULT_PAGE, has_control_characters, safe_next


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_a_bucket_empties_after_the_burst_and_refills_at_the_rate() -> None:
    clock = Clock()
    throttle = LoginThrottle(per_minute=6, burst=3, now_s=clock)
    for _ in range(3):
        assert throttle.retry_after_s("address:a", "email:x") == 0
        throttle.failed("address:a", "email:x")
    assert throttle.retry_after_s("address:a") == 10  # one token every 10 s
    assert throttle.retry_after_s("email:x", "address:b") == 10  # either subject being empty refuses
    assert throttle.retry_after_s("address:b", "email:y") == 0
    clock.now_s += 4
    assert throttle.retry_after_s("address:a") == 6
    clock.now_s += 6
    assert throttle.retry_after_s("address:a") == 0
    throttle.failed("address:a")
    assert throttle.retry_after_s("address:a") == 10


def test_the_table_is_bounded_and_forgets_full_buckets() -> None:
    clock = Clock()
    throttle = LoginThrottle(per_minute=60, burst=2, max_subjects=100, now_s=clock)
    for n in range(1000):
        throttle.failed(f"email:{n}")
    assert len(throttle._buckets) == 100
    clock.now_s += 10  # everyone refilled
    for n in range(900, 1000):
        assert throttle.retry_after_s(f"email:{n}") == 0
    assert len(throttle._buckets) == 0


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "/\\evil.example",
        "/%09/evil.example",
        "/%2F/evil.example",
        "/%252F%252Fevil.example",
        "/%5Cevil",
        "https://evil.example",
        "javascript:alert(1)",
        "/\x00",
        "/caf\u00e9",
        "keys",
        "",
        None,
    ],
)
def test_next_refuses_anything_but_a_plain_local_path(target: str | None) -> None:
    assert safe_next(target) == DEFAULT_PAGE


@pytest.mark.parametrize("target", ["/keys", "/activity?by=key&model=a%20b", "/admin/audit?account=acct_1", "/"])
def test_next_keeps_local_paths(target: str) -> None:
    assert safe_next(target) == target


def test_control_characters() -> None:
    assert has_control_characters("a\x00b") and has_control_characters("\x85") and has_control_characters("\t")
    assert not has_control_characters("user@example.com") and not has_control_characters("caf\u00e9")
