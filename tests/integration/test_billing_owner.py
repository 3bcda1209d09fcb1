"""Billing is the owner's: an inference key never buys credits, saves a card or changes auto-recharge."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.payment_servers import FakePayments
from tests.support import GatewayServer

BILLING = [
    ("POST", "/credits/checkout", {"amount": 25000}),
    ("GET", "/credits/auto-recharge", None),
    ("PUT", "/credits/auto-recharge", {"enabled": False, "threshold": 1000000, "amount": 1000000}),
    ("POST", "/credits/auto-recharge/setup", {}),
]


def call(gateway: GatewayServer, method: str, path: str, key: str, body: object) -> httpx.Response:
    return httpx.request(method, gateway.api + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)


@pytest.mark.parametrize(("method", "path", "body"), BILLING)
def test_an_inference_key_is_refused_on_every_billing_endpoint(
    paying_gateway: GatewayServer, fake_payments: FakePayments, method: str, path: str, body: object
) -> None:
    account = paying_gateway.new_account("1")
    sessions_before = len(fake_payments.sessions)
    response = call(paying_gateway, method, path, account.key, body)
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == 403
    assert error["metadata"]["explanation"]["code"] == "billing_needs_owner"
    assert "management key" in error["metadata"]["explanation"]["message"]
    assert len(fake_payments.sessions) == sessions_before  # nothing reached the payment provider
    # The owner's auto-recharge settings are untouched.
    owner_key, _ = paying_gateway.new_key(account.id, management=True)
    state = call(paying_gateway, "GET", "/credits/auto-recharge", owner_key, None).json()["data"]
    assert state["enabled"] is False and state["threshold"] == 0


def test_a_management_key_of_the_account_may_do_each(paying_gateway: GatewayServer) -> None:
    account = paying_gateway.new_account("1")
    owner_key, _ = paying_gateway.new_key(account.id, management=True)
    checkout = call(paying_gateway, "POST", "/credits/checkout", owner_key, {"amount": 10})
    assert checkout.status_code == 200, checkout.text
    assert call(paying_gateway, "GET", "/credits/auto-recharge", owner_key, None).status_code == 200
    saved = call(paying_gateway, "PUT", "/credits/auto-recharge", owner_key, {"threshold": 5, "amount": 10})
    assert saved.status_code == 200, saved.text
    assert call(paying_gateway, "POST", "/credits/auto-recharge/setup", owner_key, {}).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"threshold": 10, "amount": 10}, "threshold"),
        ({"threshold": 20, "amount": 10}, "threshold"),
        ({"threshold": 1, "amount": 25000.01}, "amount"),
        ({"threshold": 1000000, "amount": 1000000}, "amount"),
        ({"threshold": 1, "amount": "1e999999"}, "amount"),
        ({"threshold": "1e999999", "amount": 5}, "threshold"),
        ({"threshold": "NaN", "amount": 5}, "threshold"),
        ({"threshold": 1, "amount": "Infinity"}, "amount"),
        ({"threshold": 1, "amount": -5}, "amount"),
        ({"threshold": 1, "amount": [5]}, "amount"),
    ],
)
def test_auto_recharge_bounds(paying_gateway: GatewayServer, body: dict[str, object], field: str) -> None:
    account = paying_gateway.new_account("1")
    owner_key, _ = paying_gateway.new_key(account.id, management=True)
    response = call(paying_gateway, "PUT", "/credits/auto-recharge", owner_key, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["metadata"]["field"] == field, response.text


@pytest.mark.parametrize("amount", ["1e999999", "NaN", "Infinity", "-Infinity", 1e308, "9" * 400, 25000.01, 0, -1])
def test_checkout_amounts_out_of_bounds_are_400(paying_gateway: GatewayServer, amount: object) -> None:
    account = paying_gateway.new_account("1")
    owner_key, _ = paying_gateway.new_key(account.id, management=True)
    response = call(paying_gateway, "POST", "/credits/checkout", owner_key, {"amount": amount})
    assert response.status_code == 400, response.text


def test_raw_json_numbers_too_big_for_a_double_are_400(paying_gateway: GatewayServer) -> None:
    account = paying_gateway.new_account("1")
    owner_key, _ = paying_gateway.new_key(account.id, management=True)
    for raw in (b'{"amount": 1e999999}', b'{"amount": NaN}', b'{"threshold": 1, "amount": Infinity}'):
        for method, path in (("POST", "/credits/checkout"), ("PUT", "/credits/auto-recharge")):
            response = httpx.request(
                method,
                paying_gateway.api + path,
                content=raw,
                headers={"Authorization": f"Bearer {owner_key}", "Content-Type": "application/json"},
                timeout=30,
            )
            assert response.status_code == 400, (raw, path, response.text)
