"""/key, /auth/key, /credits, /models and the management key API, with every field of the spec."""

from __future__ import annotations

import httpx
import pytest

from tests.support import GatewayServer, nanos

KEY_FIELDS = {
    "label",
    "limit",
    "usage",
    "usage_daily",
    "usage_weekly",
    "usage_monthly",
    "byok_usage",
    "byok_usage_daily",
    "byok_usage_weekly",
    "byok_usage_monthly",
    "is_free_tier",
    "is_management_key",
    "is_provisioning_key",
    "limit_remaining",
    "limit_reset",
    "include_byok_in_limit",
    "creator_user_id",
    "rate_limit",
    "expires_at",
}
KEY_OBJECT_FIELDS = {
    "hash",
    "name",
    "label",
    "disabled",
    "limit",
    "limit_remaining",
    "limit_reset",
    "include_byok_in_limit",
    "usage",
    "usage_daily",
    "usage_weekly",
    "usage_monthly",
    "byok_usage",
    "byok_usage_daily",
    "byok_usage_weekly",
    "byok_usage_monthly",
    "created_at",
    "updated_at",
    "expires_at",
    "creator_user_id",
    "workspace_id",
}


@pytest.mark.parametrize("path", ["/key", "/auth/key"])
def test_current_key_has_the_full_field_set(gateway: GatewayServer, path: str) -> None:
    account = gateway.new_account("3", limit="2", limit_reset="daily")
    data = gateway.get(path, account.key).json()["data"]
    assert set(data) >= KEY_FIELDS
    assert data["limit"] == 2
    assert data["limit_remaining"] == 2
    assert data["limit_reset"] == "daily"
    assert data["is_free_tier"] is True  # grants are not purchases
    assert data["is_management_key"] is False
    assert data["label"].startswith("sk-tw-v1-") and "..." in data["label"]


def test_credits_answer_real_figures_to_an_inference_key(gateway: GatewayServer) -> None:
    account = gateway.new_account("7.5")
    response = gateway.get("/credits", account.key)
    assert response.status_code == 200
    assert response.json() == {"data": {"total_credits": 7.5, "total_usage": 0}}


def test_models_list_is_public_and_priced_as_strings(gateway: GatewayServer) -> None:
    response = httpx.get(gateway.api + "/models", timeout=10)
    assert response.status_code == 200
    body = response.json()
    ids = {model["id"] for model in body["data"]}
    assert {"tollway/offline-small", "tollway/offline-small:free", "fake/chat"} <= ids
    assert body["total_count"] == len(body["data"])
    offline = next(m for m in body["data"] if m["id"] == "tollway/offline-small")
    assert offline["pricing"]["prompt"] == "0.000001"
    assert offline["pricing"]["completion"] == "0.000002"
    free = next(m for m in body["data"] if m["id"] == "tollway/offline-small:free")
    assert free["pricing"]["prompt"] == "0" and free["pricing"]["completion"] == "0"
    for field in (
        "canonical_slug",
        "created",
        "context_length",
        "architecture",
        "top_provider",
        "per_request_limits",
        "supported_parameters",
        "default_parameters",
        "links",
    ):
        assert field in offline
    endpoints = httpx.get(gateway.api + "/models/fake/chat/endpoints", timeout=10).json()["data"]
    assert endpoints["endpoints"][0]["provider_name"] == "FakeUp"


def test_management_api_creates_lists_updates_and_deletes_keys(gateway: GatewayServer) -> None:
    owner = gateway.new_account("5", management=True)
    headers = {"Authorization": f"Bearer {owner.key}"}
    created = httpx.post(
        gateway.api + "/keys",
        json={"name": "customer-1", "limit": 1.25, "limit_reset": "weekly"},
        headers=headers,
    )
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith("sk-tw-v1-") and len(body["key"]) == len("sk-tw-v1-") + 64
    assert set(body["data"]) >= KEY_OBJECT_FIELDS
    key_hash = body["data"]["hash"]
    assert body["data"]["limit"] == 1.25 and body["data"]["limit_reset"] == "weekly"

    used = gateway.post(
        "/chat/completions",
        body["key"],
        {"model": "tollway/offline-small", "messages": [{"role": "user", "content": "hi"}]},
    )
    spent = nanos(used.json()["usage"]["cost"])
    fetched = httpx.get(gateway.api + f"/keys/{key_hash}", headers=headers).json()["data"]
    assert nanos(fetched["usage"]) == spent == nanos(fetched["usage_weekly"])
    assert nanos(fetched["limit_remaining"]) == 1_250_000_000 - spent

    listed = httpx.get(gateway.api + "/keys", headers=headers).json()["data"]
    assert key_hash in {k["hash"] for k in listed}

    patched = httpx.patch(
        gateway.api + f"/keys/{key_hash}", json={"name": "renamed", "limit": None}, headers=headers
    ).json()["data"]
    assert patched["name"] == "renamed" and patched["limit"] is None and patched["limit_remaining"] is None

    assert httpx.delete(gateway.api + f"/keys/{key_hash}", headers=headers).json() == {"deleted": True}
    assert httpx.get(gateway.api + f"/keys/{key_hash}", headers=headers).status_code == 404


def test_management_api_refuses_inference_keys_and_bad_fields(gateway: GatewayServer) -> None:
    owner = gateway.new_account("5", management=True)
    inference = gateway.new_account("5")
    refused = httpx.get(gateway.api + "/keys", headers={"Authorization": f"Bearer {inference.key}"})
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "Only management keys can perform this operation"
    headers = {"Authorization": f"Bearer {owner.key}"}
    for body in (
        {},
        {"name": ""},
        {"name": "x", "limit": -1},
        {"name": "x", "limit_reset": "hourly"},
        {"name": "x", "expires_at": "2030-01-01T00:00:00+02:00"},
    ):
        response = httpx.post(gateway.api + "/keys", json=body, headers=headers)
        assert response.status_code == 400, body
    # Another account's key is invisible: 404 exactly as a missing one.
    assert httpx.get(gateway.api + f"/keys/{inference.key_hash}", headers=headers).status_code == 404


def test_health_ready_and_metrics(gateway: GatewayServer) -> None:
    assert httpx.get(gateway.base_url + "/health").json() == {"status": "ok"}
    ready = httpx.get(gateway.base_url + "/ready")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
    account = gateway.new_account("1")
    gateway.post(
        "/chat/completions",
        account.key,
        {"model": "tollway/offline-small", "messages": [{"role": "user", "content": "hi"}]},
    )
    text = httpx.get(gateway.base_url + "/metrics").text
    assert 'tollway_requests_total{model="tollway/offline-small",provider="Tollway Offline",status="200"}' in text
    assert "tollway_holds_in_flight 0.0" in text
    assert "tollway_cost_usd_total" in text
