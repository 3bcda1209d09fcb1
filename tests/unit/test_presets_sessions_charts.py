"""Pure pieces of presets, aliases, sticky sessions, endpoint percentiles and the dashboard's SVG charts."""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import date, timedelta
from typing import Any

import pytest

from tollway.clock import FixedClock
from tollway.dashboard.charts import Segment, balance_line, nice_ceiling, stacked_bars, usd_label
from tollway.errors import InvalidRequest
from tollway.ledger.pricing import Price
from tollway.presets import Preset, PresetRules, apply_preset, named_preset, parse_config
from tollway.providers.offline import OfflineProvider
from tollway.routing.catalog import Catalog, CatalogModel, Endpoint
from tollway.routing.health import HealthBoard, percentiles
from tollway.routing.sessions import StickySessions


def model(model_id: str, created: int = 1, providers: tuple[str, ...] = ("a",)) -> CatalogModel:
    endpoints = tuple(
        Endpoint(
            OfflineProvider(name=name, display_name=name.upper()), f"{model_id}-{name}", Price(1, 1, 0), 8192, 1024
        )
        for name in providers
    )
    return CatalogModel(model_id, model_id, "", 8192, 1024, created, endpoints)


def test_aliases_latest_and_variants_resolve() -> None:
    catalog = Catalog(
        [model("acme/chat", 1), model("acme/chat-2", 5), model("acme/chat-3", 5), model("acme/chat:free", 9)],
        {"fast": "acme/chat"},
    )
    assert catalog.resolve("fast").id == "acme/chat"  # type: ignore[union-attr]
    assert catalog.resolve("fast:nitro").id == "acme/chat"  # type: ignore[union-attr]
    assert catalog.resolve("~acme/chat-latest").id == "acme/chat-3"  # type: ignore[union-attr]  # listed last
    assert catalog.resolve("~acme/nothing-latest") is None
    assert catalog.resolve("acme/chatty") is None


def rules() -> PresetRules:
    def check_body(body: dict[str, Any]) -> None:
        if not 0 <= body.get("temperature", 0) <= 2:
            raise InvalidRequest("temperature must be between 0 and 2", metadata={"field": "temperature"})

    return PresetRules(lambda m: m.startswith("acme/"), check_body, lambda _raw: None, fallback_limit=3)


def test_a_preset_fills_a_request_whose_own_fields_win() -> None:
    config = parse_config(
        {"model": "acme/a", "models": ["acme/b"], "parameters": {"temperature": 0.2, "top_p": 1}}, rules()
    )
    preset = Preset("p1", "acct", "team", None, config["model"], tuple(config["models"]), None, config["parameters"])
    merged = apply_preset(preset, {"model": "@preset/team", "temperature": 0.9, "messages": []})
    assert merged == {"model": "acme/a", "models": ["acme/b"], "temperature": 0.9, "top_p": 1, "messages": []}
    assert apply_preset(preset, {"preset": "team", "model": "acme/z"})["model"] == "acme/z"
    assert named_preset({"model": "@preset/team"}) == named_preset({"preset": "team"}) == "team"
    assert named_preset({"model": "acme/a"}) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "other/x"}, "model"),
        ({"models": ["acme/a", "x/y"]}, "models"),
        ({"model": "acme/a", "parameters": {"temperature": 3}}, "parameters.temperature"),
        ({"model": "acme/a", "parameters": {"stream": True}}, "parameters"),
        ({}, "model"),
    ],
)
def test_a_bad_preset_names_its_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_config(body, rules())
    assert caught.value.metadata["field"] == field


def test_a_session_sticks_while_its_endpoint_is_healthy() -> None:
    clock = FixedClock(10**15)
    sessions = StickySessions(clock, ttl_s=60, limit=2)
    twin = model("acme/twin", providers=("a", "b"))
    candidates = [(twin, e) for e in twin.endpoints]

    class Candidate:
        def __init__(self, pair: tuple[CatalogModel, Endpoint]) -> None:
            self.model, self.endpoint = pair

    ordered = [Candidate(c) for c in candidates]
    sessions.remember_here("acct", "s1", "b/acme/twin-b")

    def names(available: bool) -> list[str]:
        found = asyncio.run(sessions.ordered("acct", "s1", ordered, lambda _e: available))
        return [c.endpoint.provider.name for c in found]

    assert names(True) == ["b", "a"]
    assert names(False) == ["a", "b"]  # an unhealthy home is not preferred
    assert sessions.endpoint_for("other", "s1") is None  # per account
    clock.advance(61)
    assert sessions.endpoint_for("acct", "s1") is None  # idle sessions are forgotten
    for name in ("x", "y", "z"):
        asyncio.run(sessions.remember("acct", name, "a/acme/twin-a"))
    assert sessions.endpoint_for("acct", "x") is None  # bounded: least recently used forgotten first


def test_percentiles_cover_the_last_30_minutes_only() -> None:
    clock = FixedClock(10**15)
    board = HealthBoard(clock)
    assert board.latency_percentiles("e") is None
    for value in range(1, 101):
        board.success("e", first_token_ms=float(value), tokens_per_second=10.0)
    assert board.latency_percentiles("e") == {"p50": 50.0, "p75": 75.0, "p90": 90.0, "p99": 99.0}
    assert board.throughput_percentiles("e") == {"p50": 10.0, "p75": 10.0, "p90": 10.0, "p99": 10.0}
    clock.advance(31 * 60)
    assert board.latency_percentiles("e") is None
    assert percentiles(deque([(0, 5.0)]), 0) == {"p50": 5.0, "p75": 5.0, "p90": 5.0, "p99": 5.0}


def test_charts_have_axes_titles_and_a_legend_and_escape_names() -> None:
    assert [nice_ceiling(v) for v in (1, 3, 7, 11, 250_000)] == [1, 5, 10, 20, 500_000]
    assert usd_label(0) == "$0" and usd_label(50_000_000) == "$0.05" and usd_label(-100_000_000) == "-$0.10"
    days = [date(2026, 11, 1) + timedelta(days=n) for n in range(30)]
    svg = stacked_bars(days, {days[3]: [Segment("<b>", 1_500_000_000, "2 requests")]}, "Spend")
    assert "<title>2026-11-04 · &lt;b&gt;: 1.50 USD (2 requests)</title>" in svg
    assert "<b>" not in svg and 'class="legend-item"' in svg and "$2.00" in svg and "<script" not in svg
    line = balance_line([(day, -100_000_000 if n == 0 else 5_000_000_000) for n, day in enumerate(days)], "Balance")
    assert line.count('class="point"') == 30 and "-$" in line and "2026-11-30: balance 5.00 USD" in line


def test_uptime_counts_the_attempts_of_each_window() -> None:
    clock = FixedClock(10**15)
    board = HealthBoard(clock)
    assert board.uptime("e", 5) is None
    for answered in (True, True, True, False):
        board.attempted("e", answered=answered)
    assert board.uptime("e", 5) == 75.0
    clock.advance(10 * 60)
    board.attempted("e", answered=True)
    assert (board.uptime("e", 5), board.uptime("e", 30)) == (100.0, 80.0)
    clock.advance(25 * 3600)
    assert board.uptime("e", 24 * 60) is None


def test_sessions_fall_back_to_memory_when_redis_does_not_answer() -> None:
    sessions = StickySessions(FixedClock(10**15), redis_url="redis://127.0.0.1:1/0")  # nothing listens there

    async def scenario() -> str | None:
        await sessions.remember("acct", "s", "b/x")
        found = await sessions.lookup("acct", "s")
        await sessions.close()
        return found

    assert asyncio.run(scenario()) == "b/x"
