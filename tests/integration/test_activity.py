"""GET /api/v1/activity equals the sum of the generations; the dashboard draws the same figures as SVG."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from openrouter import OpenRouter

from tests.conftest import make_database_url
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.integration.test_dashboard_http import csrf, signed_up
from tests.support import GatewayServer, nanos, start_gateway, write_config

HELLO = [{"role": "user", "content": "Say hello"}]
pytestmark = pytest.mark.filterwarnings("ignore:.*DEPRECATED.*")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def servers(
    request: pytest.FixtureRequest, upstream: FakeOpenAIUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayServer, GatewayServer]]:
    directory = tmp_path_factory.mktemp("activity")
    config = write_config(directory / "config.yaml", upstream.base_url)
    databases = make_database_url(request.param, directory)
    database_url = next(databases)
    now = start_gateway(database_url, config, directory)
    month_later = start_gateway(database_url, config, directory, env={"TOLLWAY_CLOCK_OFFSET_SECONDS": str(31 * 86_400)})
    yield now, month_later
    month_later.stop()
    now.stop()
    databases.close()


def spend(server: GatewayServer, key: str, model: str, *, stream: bool = False) -> dict[str, Any]:
    body = {"model": model, "messages": HELLO, "stream": stream}
    if stream:
        with httpx.stream(
            "POST", server.api + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as response:
            assert response.status_code == 200
            generation_id = response.headers["X-Generation-Id"]
            response.read()
    else:
        response = server.post("/chat/completions", key, body)
        assert response.status_code == 200, response.text
        generation_id = response.json()["id"]
    return server.generation(key, generation_id)


def test_activity_is_the_sum_of_the_generations(servers: tuple[GatewayServer, GatewayServer]) -> None:
    now, month_later = servers
    account = now.new_account("5")
    second_key, second_hash = now.new_key(account.id)
    manage, _ = now.new_key(account.id, management=True)
    bystander = now.new_account("5")
    spend(now, bystander.key, "fake/chat")

    made = [
        spend(now, account.key, "fake/chat"),
        spend(now, account.key, "fake/chat", stream=True),
        spend(now, account.key, "tollway/offline-small"),
        spend(now, second_key, "fake/chat"),
        spend(now, second_key, "fake/failover"),
    ]
    expected: dict[tuple[str, str | None], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for index, record in enumerate(made):
        key_hash = account.key_hash if index < 3 else second_hash
        figures = expected[(record["model"], key_hash)]
        figures[0] += 1
        figures[1] += record["tokens_prompt"]
        figures[2] += record["tokens_completion"]
        figures[3] += record["native_tokens_reasoning"]
        figures[4] += nanos(record["total_cost"])

    response = now.get("/activity", manage)
    assert response.status_code == 200, response.text
    items = response.json()["data"]
    today = datetime.now(UTC).date().isoformat()
    assert {item["date"] for item in items} == {today}
    found: dict[tuple[str, str | None], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for item in items:
        figures = found[(item["model"], item["key_hash"])]
        for index, name in enumerate(("requests", "prompt_tokens", "completion_tokens", "reasoning_tokens")):
            figures[index] += item[name]
        figures[4] += nanos(item["usage"])
    assert found == expected
    total = sum(nanos(item["usage"]) for item in items)
    assert total == nanos(now.get("/credits", manage).json()["data"]["total_usage"])
    failover = next(item for item in items if item["model"] == "fake/failover")
    assert failover["provider_name"] == "FakeUp" and failover["endpoint_id"] == "fakeup/fake-chat-1"

    sdk_items = OpenRouter(api_key=manage, server_url=now.api).analytics.get_user_activity().data
    assert sum(nanos(item.usage) for item in sdk_items) == total
    only_second = now.get("/activity", manage, api_key_hash=second_hash).json()["data"]
    assert {item["key_hash"] for item in only_second} == {second_hash}
    assert sum(item["requests"] for item in only_second) == 2
    assert now.get("/activity", manage, date=today).json()["data"] == items

    # A month on, today's figures have left the 30-day window.
    assert month_later.get("/activity", manage).json()["data"] == []


def test_activity_refuses_bad_filters_and_inference_keys(servers: tuple[GatewayServer, GatewayServer]) -> None:
    now, _later = servers
    account = now.new_account("1")
    manage, _ = now.new_key(account.id, management=True)
    other = now.new_account("1")
    old = (datetime.now(UTC) - timedelta(days=40)).date().isoformat()
    for params, field in (
        ({"date": "yesterday"}, "date"),
        ({"date": old}, "date"),
        ({"date": "2026-02-30"}, "date"),
        ({"api_key_hash": other.key_hash}, "api_key_hash"),
        ({"api_key_hash": "0" * 64}, "api_key_hash"),
    ):
        response = now.get("/activity", manage, **params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["metadata"]["field"] == field
    assert now.get("/activity", account.key).status_code == 403
    assert httpx.get(now.api + "/activity", timeout=10).status_code == 401


def usd_text(amount_nanos: int) -> str:
    """USD as the dashboard writes it: exact, at least two decimals."""
    whole, fraction = divmod(amount_nanos, 1_000_000_000)
    return f"{whole}.{f'{fraction:09d}'.rstrip('0').ljust(2, '0')}"


def test_the_dashboard_draws_spend_by_model_and_key_and_the_balance(
    servers: tuple[GatewayServer, GatewayServer],
) -> None:
    now, _later = servers
    email = f"charts-{time.monotonic_ns()}@example.com"
    client = signed_up(now, email)
    account_id = now.admin("GET", f"/accounts?email={email}").json()["data"][0]["id"]
    assert now.admin("POST", f"/accounts/{account_id}/credits", {"amount": "3"}).status_code == 201
    created = client.post("/keys", data={"csrf_token": csrf(client.get("/keys")), "name": "charts <key>"})
    key = re.search(r'id="new-key" readonly value="([^"]+)"', created.text)
    assert key, created.text[:500]
    records = [spend(now, key.group(1), "fake/chat"), spend(now, key.group(1), "tollway/offline-small")]

    by_model = client.get("/activity?by=model").text
    assert "<script" not in by_model
    svg = by_model[by_model.index("<svg") : by_model.index("</svg>")]
    titles = re.findall(r'<rect class="bar"[^>]*><title>([^<]+)</title>', svg)
    today = datetime.now(UTC).date().isoformat()
    for record in records:
        expected = f"{today} · {record['model']}: {usd_text(nanos(record['total_cost']))} USD (1 requests)"
        assert expected in titles, (expected, titles)
    assert 'class="legend-item"' in svg and "fake/chat" in svg and "tollway/offline-small" in svg
    assert re.search(r'class="y-label">\$0</text>', svg) and 'class="x-label"' in svg

    by_key = client.get("/activity?by=key").text
    key_svg = by_key[by_key.index("<svg") : by_key.index("</svg>")]
    assert "charts &lt;key&gt;" in key_svg and "<key>" not in key_svg  # names are escaped
    assert re.findall(r"<title>" + today + r" · charts &lt;key&gt;: [0-9.]+ USD \(2 requests\)</title>", key_svg)

    twins = [now.new_key(account_id, name="twin") for _ in range(2)]
    for twin_key, _twin_hash in twins:
        spend(now, twin_key, "fake/chat")
    twin_svg = client.get("/activity?by=key").text
    for _twin_key, twin_hash in twins:  # two keys of one name stay two series
        assert f"twin ({twin_hash[:8]})" in twin_svg

    credits = client.get("/credits").text
    chart = credits[credits.index('id="balance-history"') :]
    points = re.findall(r'<circle class="point"[^>]*><title>([^<]+)</title>', chart)
    assert len(points) == 30
    balance = now.balance(account_id)["balance"]
    assert points[-1] == f"{today}: balance {usd_text(nanos(balance))} USD"
    assert points[0].endswith("balance 0.00 USD")  # before the grant
