from __future__ import annotations

import random
from collections import Counter

import pytest

from tollway.clock import FixedClock
from tollway.errors import InvalidRequest
from tollway.ledger.pricing import Price
from tollway.providers.offline import OfflineProvider
from tollway.routing.catalog import Endpoint
from tollway.routing.health import HealthBoard
from tollway.routing.preferences import order_endpoints, parse_preferences


def endpoint(slug: str, price: str) -> Endpoint:
    provider = OfflineProvider(name=slug, display_name=slug)
    return Endpoint(provider, f"{slug}-model", Price.parse(price, price), 8192, 1024)


def test_circuit_opens_after_three_failures_half_opens_after_cooldown_and_closes_on_success() -> None:
    clock = FixedClock(10**15)
    board = HealthBoard(clock, threshold=3, window_s=30, cooldown_s=30)
    for _ in range(2):
        board.failure("a")
    assert board.state("a") == "closed" and board.available("a")
    board.failure("a")
    assert board.state("a") == "open" and not board.available("a")
    clock.advance(29)
    assert not board.available("a")
    clock.advance(2)
    assert board.state("a") == "half_open" and board.available("a")
    board.failure("a")  # the trial failed: open again for a full cool-down
    assert board.state("a") == "open"
    clock.advance(31)
    assert board.available("a")
    board.success("a")
    assert board.state("a") == "closed"


def test_failures_outside_the_window_do_not_open_the_circuit() -> None:
    clock = FixedClock(10**15)
    board = HealthBoard(clock)
    for _ in range(5):
        board.failure("a")
        clock.advance(16)
    assert board.state("a") == "closed"


def test_default_spread_is_weighted_by_inverse_square_price() -> None:
    cheap, dear = endpoint("cheap", "0.000001"), endpoint("dear", "0.000002")
    prefs = parse_preferences(None, None, ["cheap", "dear"])
    rng = random.Random(7)
    firsts = Counter(
        order_endpoints([cheap, dear], prefs, lambda _e: True, lambda _e: None, lambda _e: None, rng)[0].provider.name
        for _ in range(10_000)
    )
    assert 0.78 < firsts["cheap"] / 10_000 < 0.82  # 1/1² : 1/2² = 80 : 20


def test_sort_order_and_filters() -> None:
    cheap, dear = endpoint("cheap", "0.000001"), endpoint("dear", "0.000002")
    rng = random.Random(1)
    by_price = parse_preferences({"sort": "price"}, None, ["cheap", "dear"])
    assert [
        e.provider.name
        for e in order_endpoints([dear, cheap], by_price, lambda _e: True, lambda _e: None, lambda _e: None, rng)
    ] == ["cheap", "dear"]
    by_latency = parse_preferences({"sort": {"by": "latency"}}, None, ["cheap", "dear"])
    latency = {"cheap/cheap-model": 90.0, "dear/dear-model": 10.0}
    assert (
        order_endpoints([cheap, dear], by_latency, lambda _e: True, latency.get, lambda _e: None, rng)[0].provider.name
        == "dear"
    )
    nitro = parse_preferences(None, ":nitro", ["cheap", "dear"])
    throughput = {"cheap/cheap-model": 10.0, "dear/dear-model": 90.0}
    assert (
        order_endpoints([cheap, dear], nitro, lambda _e: True, lambda _e: None, throughput.get, rng)[0].provider.name
        == "dear"
    )
    capped = parse_preferences({"max_price": {"prompt": 1.5}}, None, ["cheap", "dear"])
    assert [
        e.provider.name
        for e in order_endpoints([cheap, dear], capped, lambda _e: True, lambda _e: None, lambda _e: None, rng)
    ] == ["cheap"]
    no_fallbacks = parse_preferences({"order": ["dear"], "allow_fallbacks": False}, None, ["cheap", "dear"])
    assert [
        e.provider.name
        for e in order_endpoints([cheap, dear], no_fallbacks, lambda _e: True, lambda _e: None, lambda _e: None, rng)
    ] == ["dear"]
    unhealthy_first = parse_preferences({"sort": "price"}, None, ["cheap", "dear"])
    assert [
        e.provider.name
        for e in order_endpoints(
            [cheap, dear],
            unhealthy_first,
            lambda endpoint_id: endpoint_id.startswith("dear"),
            lambda _e: None,
            lambda _e: None,
            rng,
        )
    ] == ["dear", "cheap"]


@pytest.mark.parametrize(
    "raw",
    [
        {"only": ["ghost"]},
        {"order": "cheap"},
        {"sort": "fastest"},
        {"max_price": {"prompt": -1}},
        {"allow_fallbacks": "no"},
    ],
)
def test_bad_preferences_are_precise_400s(raw: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        parse_preferences(raw, None, ["cheap", "dear"])
