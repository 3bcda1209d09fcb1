"""OpenRouter's own Python SDK (generated, strict response models) against a real Tollway server, unchanged.

Every method with a Tollway counterpart: chat, streams, generations, embeddings, models, endpoints,
credits, the calling key and the key management API; its figures agree with /credits to the nano-dollar.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import openai
import pytest
from openrouter import OpenRouter

from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support import Account, GatewayServer, nanos, start_sqlite_gateway

HELLO = [{"role": "user", "content": "Say hello"}]
# The SDK warns when it reads fields OpenRouter marks deprecated (rate_limit, is_provisioning_key): sent on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:.*DEPRECATED.*")


@pytest.fixture(scope="module")
def server(upstream: FakeOpenAIUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("openrouter-sdk")
    gateway = start_sqlite_gateway(directory, upstream.base_url)
    yield gateway
    gateway.stop()


def sdk(gateway: GatewayServer, key: str) -> OpenRouter:
    return OpenRouter(api_key=key, server_url=gateway.api)


def management(gateway: GatewayServer, account: Account) -> OpenRouter:
    key, _hash = gateway.new_key(account.id, management=True)
    return sdk(gateway, key)


def generation_cost(gateway: GatewayServer, key: str, generation_id: str) -> int:
    """The generation's total_cost once the ledger has written it (settlement is asynchronous)."""
    client = sdk(gateway, key)
    deadline = time.monotonic() + 10
    while True:
        try:
            return nanos(client.generations.get_generation(id=generation_id).data.total_cost)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_chat_stream_generation_and_embeddings_agree_with_credits(server: GatewayServer) -> None:
    account = server.new_account("10")
    client = sdk(server, account.key)

    answer = client.chat.send(model="fake/chat", messages=HELLO)
    assert answer.choices[0].message.content == "Hello from the fake upstream."
    assert answer.model == "fake/chat"
    chunks = list(client.chat.send(model="fake/chat", messages=HELLO, stream=True))
    streamed_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed_text == "Hello from the fake upstream."
    stream_id = chunks[0].id
    embedded = client.embeddings.generate(model="fake/embed", input="hello")
    assert embedded.data[0].embedding == [0.1, 0.2, 0.3]

    costs = [generation_cost(server, account.key, gid) for gid in (answer.id, stream_id, embedded.id)]
    assert all(cost > 0 for cost in costs)
    credits = client.credits.get_credits().data
    assert nanos(credits.total_usage) == sum(costs)
    assert nanos(credits.total_credits) == nanos("10")
    assert nanos(server.balance(account.id)["balance"]) == nanos("10") - sum(costs)


def test_models_list_get_count_and_openai_retrieve(server: GatewayServer) -> None:
    account = server.new_account("1")
    client = sdk(server, account.key)
    listed = client.models.list().result.data
    ids = {model.id for model in listed}
    assert {"fake/chat", "tollway/offline-small"} <= ids
    assert client.models.count().data.count == len(ids)
    one = client.models.get(author="fake", slug="chat").data
    assert one.id == "fake/chat" and one.pricing.prompt == "0.000001"

    retrieved = openai.OpenAI(base_url=server.api, api_key=account.key, max_retries=0).models.retrieve("fake/chat")
    assert retrieved.id == "fake/chat" and retrieved.object == "model" and retrieved.owned_by == "fake"
    missing = httpx.get(server.api + "/models/fake/nothing-here", timeout=10)
    assert missing.status_code == 404 and "fake/nothing-here" in missing.json()["error"]["message"]


def test_endpoints_carry_every_field_and_percentile_objects(server: GatewayServer) -> None:
    account = server.new_account("1")
    client = sdk(server, account.key)
    list(client.chat.send(model="fake/chat", messages=HELLO, stream=True))
    fresh = client.endpoints.list(author="fake", slug="failover").data.endpoints[0]
    assert fresh.uptime_last_5m is None  # never tried: no figure rather than 100
    client.chat.send(model="fake/failover", messages=HELLO, provider={"order": ["deadup"]})

    endpoints = client.endpoints.list(author="fake", slug="failover").data.endpoints
    assert [e.provider_name for e in endpoints] == ["deadup", "FakeUp"]
    first = endpoints[0]  # never served a token: no figures, null rather than zeros
    assert first.latency_last_30m is None and first.throughput_last_30m is None
    assert (first.uptime_last_5m, first.uptime_last_30m, first.uptime_last_1d) == (0, 0, 0)
    assert endpoints[1].uptime_last_5m == 100
    assert first.model_id == "fake/failover" and first.quantization is None and first.service_tier is None
    assert first.supports_tool_choice.auto is True and first.supports_implicit_caching is False
    after = client.endpoints.list(author="fake", slug="chat").data.endpoints[0]
    latency = after.latency_last_30m
    assert latency is not None and 0 <= latency.p50 <= latency.p75 <= latency.p90 <= latency.p99
    raw = httpx.get(server.api + "/models/fake/chat/endpoints", timeout=10).json()["data"]["endpoints"][0]
    assert set(raw["latency_last_30m"]) == {"p50", "p75", "p90", "p99"}


def test_current_key_has_every_field_and_rate_limit_is_always_an_object(server: GatewayServer) -> None:
    account = server.new_account("2", limit="1.5", limit_reset="daily")
    data = sdk(server, account.key).api_keys.get_current_key_metadata().data
    assert data.limit == 1.5 and data.limit_reset == "daily" and data.usage == 0
    assert data.rate_limit.requests == -1 and data.rate_limit.interval == "10s"
    assert data.budgets == [] and data.allowed_data_regions == [] and data.organization_id is None
    assert data.workspace_id == account.id
    assert data.free_model_daily_requests.limit > 0

    limited = server.admin("PUT", f"/keys/{account.key_hash}/limits", {"requests": 30, "per": "minute"})
    assert limited.status_code == 200, limited.text
    data = sdk(server, account.key).api_keys.get_current_key_metadata().data
    assert (data.rate_limit.requests, data.rate_limit.interval) == (30, "1m")


def test_keys_crud_with_the_sdk(server: GatewayServer) -> None:
    account = server.new_account("5")
    manager = management(server, account)
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)

    created = manager.api_keys.create(name="ci key", limit=2.5, limit_reset="weekly", expires_at=expires)
    assert created.key.startswith("sk-tw-v1-")
    assert created.data.name == "ci key" and created.data.limit == 2.5 and created.data.expires_at == expires
    assert created.data.last_used_at is None and created.data.workspace_id == account.id
    key_hash = created.data.hash

    sdk(server, created.key).chat.send(model="fake/chat", messages=HELLO)
    listed = {key.hash: key for key in manager.api_keys.list().data}
    assert set(listed) >= {key_hash, account.key_hash}
    assert listed[key_hash].last_used_at is not None
    assert listed[account.key_hash].last_used_at is None

    updated = manager.api_keys.update(hash=key_hash, name="renamed", disabled=True, limit=4)
    assert (updated.data.name, updated.data.disabled, updated.data.limit) == ("renamed", True, 4)
    assert manager.api_keys.get(hash=key_hash).data.name == "renamed"
    assert manager.api_keys.delete(hash=key_hash).DELETED is True
    gone = httpx.get(server.api + f"/keys/{key_hash}", headers={"Authorization": f"Bearer {created.key}"}, timeout=10)
    assert gone.status_code == 401


def test_key_management_refuses_bad_input_precisely(server: GatewayServer) -> None:
    account = server.new_account("1")
    key, _hash = server.new_key(account.id, management=True)
    cases = [
        {"name": "x", "expires_at": "2020-01-01T00:00:00Z"},
        {"name": "x", "expires_at": "2030-01-01T00:00:00+02:00"},
        {"name": "x", "expires_at": "soon"},
        {"name": "x", "expires_at": 12},
    ]
    for body in cases:
        response = server.post("/keys", key, body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["metadata"]["field"] == "expires_at"
    patched = httpx.patch(
        server.api + f"/keys/{account.key_hash}",
        json={"expires_at": "yesterday"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert patched.status_code == 400 and patched.json()["error"]["metadata"]["field"] == "expires_at"
    names = {k["name"] for k in server.get("/keys", key).json()["data"]}
    assert names == {"test key"}  # nothing was created


def test_presets_read_with_the_sdk(server: GatewayServer) -> None:
    account = server.new_account("1")
    key, _hash = server.new_key(account.id, management=True)
    for name in ("alpha", "beta", "gamma"):
        body = {"name": name, "model": "fake/chat", "parameters": {"temperature": 0.1}}
        assert server.post("/presets", key, body).status_code == 201
    client = sdk(server, key)
    page = client.presets.list(limit=2)
    assert [p.slug for p in page.result.data] == ["alpha", "beta"] and page.result.total_count == 3
    following = page.next()
    assert following is not None and [p.slug for p in following.result.data] == ["gamma"]
    one = client.presets.get(slug="beta").data
    assert one.name == "beta" and one.status == "active" and one.workspace_id == account.id
    assert one.designated_version is not None and one.designated_version.config["parameters"] == {"temperature": 0.1}
