"""Every kind of bad input gets a precise OpenRouter-shaped error and leaves the ledger untouched."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import Account, GatewayServer, nanos

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def account(gateway: GatewayServer) -> Account:
    return gateway.new_account("10")


def assert_error(response: httpx.Response, status: int, error_type: str, *, contains: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == status
    assert error["metadata"]["error_type"] == error_type
    assert contains in error["message"]
    return dict(error)


def raw_post(gateway: GatewayServer, key: str | None, content: bytes, **headers: str) -> httpx.Response:
    all_headers = {"Content-Type": "application/json", **headers}
    if key is not None:
        all_headers["Authorization"] = f"Bearer {key}"
    return httpx.post(gateway.api + "/chat/completions", content=content, headers=all_headers, timeout=30)


@pytest.mark.parametrize(
    ("body", "contains"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
        (b'{"model": "tollway/offline-small"}', "messages is required"),
        (b'{"model": "tollway/offline-small", "messages": []}', "non-empty array"),
        (b'{"model": "tollway/offline-small", "messages": "hi"}', "non-empty array"),
        (b'{"model": "tollway/offline-small", "messages": [{"role": "robot", "content": "x"}]}', "role"),
        (b'{"model": "tollway/offline-small", "messages": [{"role": "user", "content": 5}]}', "content"),
        (b'{"model": 12, "messages": [{"role": "user", "content": "x"}]}', "model must be"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model is required"),
        (
            b'{"model": "tollway/offline-small", "max_tokens": -3, "messages": [{"role": "user", "content": "x"}]}',
            "max_tokens",
        ),
        (
            b'{"model": "tollway/offline-small", "max_tokens": "many", "messages": [{"role": "user", "content": "x"}]}',
            "max_tokens",
        ),
        (
            b'{"model": "tollway/offline-small", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}',
            "stream",
        ),
        (
            b'{"model": "tollway/offline-small", "temperature": 9, "messages": [{"role": "user", "content": "x"}]}',
            "temperature",
        ),
        (
            b'{"model": "tollway/offline-small", "models": ["a/b", "c/d", "e/f", "g/h"], "messages": '
            b'[{"role": "user", "content": "x"}]}',
            "models array must have 3 items or fewer",
        ),
    ],
)
def test_malformed_requests_get_400(gateway: GatewayServer, account: Account, body: bytes, contains: str) -> None:
    assert_error(raw_post(gateway, account.key, body), 400, "invalid_request", contains=contains)
    assert nanos(gateway.balance(account.id)["total_usage"]) == 0


def test_unknown_model_gets_400_naming_it(gateway: GatewayServer, account: Account) -> None:
    response = gateway.post("/chat/completions", account.key, {"model": "nope/missing", "messages": MESSAGES})
    assert_error(response, 400, "invalid_request", contains="nope/missing is not a valid model ID")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Token sk-tw-v1-x"])
def test_missing_or_malformed_authorization_gets_401(gateway: GatewayServer, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = httpx.post(
        gateway.api + "/chat/completions",
        json={"model": "tollway/offline-small", "messages": MESSAGES},
        headers=headers,
        timeout=30,
    )
    assert_error(response, 401, "authentication", contains="Authentication header")


def test_unknown_key_gets_401_user_not_found(gateway: GatewayServer) -> None:
    response = gateway.post(
        "/chat/completions", "sk-tw-v1-" + "0" * 64, {"model": "tollway/offline-small", "messages": MESSAGES}
    )
    assert_error(response, 401, "authentication", contains="User not found")


def test_disabled_and_deleted_keys_are_refused(gateway: GatewayServer) -> None:
    owner = gateway.new_account("5", management=True)
    created = gateway.post("/keys", owner.key, {"name": "short-lived"})
    assert created.status_code == 201
    key, key_hash = created.json()["key"], created.json()["data"]["hash"]
    ok = gateway.post("/chat/completions", key, {"model": "tollway/offline-small", "messages": MESSAGES})
    assert ok.status_code == 200

    patched = httpx.patch(
        gateway.api + f"/keys/{key_hash}",
        json={"disabled": True},
        headers={"Authorization": f"Bearer {owner.key}"},
    )
    assert patched.status_code == 200 and patched.json()["data"]["disabled"] is True
    refused = gateway.post("/chat/completions", key, {"model": "tollway/offline-small", "messages": MESSAGES})
    error = assert_error(refused, 401, "authentication", contains="disabled")
    assert error["metadata"]["explanation"]["code"] == "key_disabled"

    deleted = httpx.delete(gateway.api + f"/keys/{key_hash}", headers={"Authorization": f"Bearer {owner.key}"})
    assert deleted.json() == {"deleted": True}
    gone = gateway.post("/chat/completions", key, {"model": "tollway/offline-small", "messages": MESSAGES})
    assert_error(gone, 401, "authentication", contains="User not found")


def test_management_key_cannot_complete(gateway: GatewayServer) -> None:
    owner = gateway.new_account("5", management=True)
    response = gateway.post("/chat/completions", owner.key, {"model": "tollway/offline-small", "messages": MESSAGES})
    assert_error(response, 403, "permission_denied", contains="Management keys")
    assert nanos(gateway.balance(owner.id)["total_usage"]) == 0


def test_oversized_body_gets_413(gateway: GatewayServer, account: Account) -> None:
    huge = (
        b'{"model": "tollway/offline-small", "messages": [{"role": "user", "content": "'
        + b"x" * (11 * 1024 * 1024)
        + b'"}]}'
    )
    assert_error(raw_post(gateway, account.key, huge), 413, "payload_too_large", contains="limit")
    assert nanos(gateway.balance(account.id)["total_usage"]) == 0


def test_unknown_route_is_a_json_404(gateway: GatewayServer) -> None:
    response = httpx.get(gateway.api + "/nothing-here", timeout=10)
    assert_error(response, 404, "not_found", contains="No such endpoint")


def test_admin_api_refuses_bad_amounts(gateway: GatewayServer, account: Account) -> None:
    for amount in [-5, "-1", "abc", None, True, "1e400", 0, "0.0000000001"]:
        response = gateway.admin("POST", f"/accounts/{account.id}/credits", {"amount": amount})
        assert_error(response, 400, "invalid_request")
    wrong_token = httpx.get(gateway.api + "/admin/accounts", headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert_error(wrong_token, 401, "authentication")
    assert nanos(gateway.balance(account.id)["total_credits"]) == 10 * 10**9


def test_generation_lookup_errors(gateway: GatewayServer, account: Account) -> None:
    assert_error(gateway.get("/generation", account.key), 400, "invalid_request", contains="id is required")
    assert_error(gateway.get("/generation", account.key, id="gen-0-missing"), 404, "not_found")


def test_other_accounts_generation_is_not_found(gateway: GatewayServer, account: Account) -> None:
    other = gateway.new_account("1")
    done = gateway.post("/chat/completions", other.key, {"model": "tollway/offline-small", "messages": MESSAGES})
    generation_id = done.json()["id"]
    assert gateway.get("/generation", other.key, id=generation_id).status_code == 200
    assert_error(gateway.get("/generation", account.key, id=generation_id), 404, "not_found")
