"""Payments as users and providers meet them: pending from the first moment, credited exactly once."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import orjson

from tests.conftest import CRYPTO_WEBHOOK_SECRET, STRIPE_WEBHOOK_SECRET, fake_stripe_env
from tests.fakes.payment_servers import FakePayments, crypto_signature, stripe_signature
from tests.support import Account, GatewayServer, nanos, run_cli

_event_ids = iter(range(1, 10**9))


_owner_keys: dict[str, str] = {}


def owner(gateway: GatewayServer, account: Account) -> str:
    """A management key of the account: billing is the owner's, inference keys are refused."""
    if account.id not in _owner_keys:
        _owner_keys[account.id] = gateway.new_key(account.id, management=True)[0]
    return _owner_keys[account.id]


def checkout(gateway: GatewayServer, account: Account, amount: object, provider: str = "stripe") -> httpx.Response:
    return gateway.post("/credits/checkout", owner(gateway, account), {"amount": amount, "provider": provider})


def stripe_event(kind: str, obj: dict[str, Any], event_id: str | None = None) -> bytes:
    return orjson.dumps(
        {"id": event_id or f"evt_{next(_event_ids)}", "object": "event", "type": kind, "data": {"object": obj}}
    )


def send_stripe(gateway: GatewayServer, payload: bytes, signature: str | None = None) -> httpx.Response:
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": signature or stripe_signature(payload, STRIPE_WEBHOOK_SECRET),
    }
    return httpx.post(gateway.api + "/webhooks/stripe", content=payload, headers=headers, timeout=30)


def completed_session(fake: FakePayments, payment_id: str, paid: bool = True, **changes: Any) -> dict[str, Any]:
    session = dict(next(s for s in fake.sessions.values() if s["metadata"].get("payment_id") == payment_id))
    session.update(payment_status="paid" if paid else "unpaid", payment_intent=f"pi_for_{payment_id}", **changes)
    return session


def balance_nanos(gateway: GatewayServer, account: Account) -> int:
    return nanos(gateway.balance(account.id)["balance"])


def test_checkout_answers_amount_fee_total_and_shows_pending(
    paying_gateway: GatewayServer, fake_payments: FakePayments
) -> None:
    account = paying_gateway.new_account(None)
    response = checkout(paying_gateway, account, 10)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["amount"] == 10 and data["fee"] == 0.8 and data["total"] == 10.8
    assert data["url"].startswith(fake_payments.stripe_base + "/pay/cs_test_")
    big = checkout(paying_gateway, account, 100).json()["data"]
    assert big["fee"] == 5.5 and big["total"] == 105.5
    purchases = paying_gateway.get("/credits/purchases", account.key).json()["data"]
    assert [p["status"] for p in purchases] == ["pending", "pending"]
    assert {p["method"] for p in purchases} == {"card"}
    balance = paying_gateway.get("/balance", account.key).json()["data"]
    assert len(balance["pending_payments"]) == 2
    assert "payment_pending" in [e["code"] for e in balance["explanations"]]
    for bad in (4.99, 25_001, -5, "ten", None, 10.001):
        assert checkout(paying_gateway, account, bad).status_code == 400, bad


def test_paid_checkout_credits_exactly_once_and_unlocks_the_free_tier(
    paying_gateway: GatewayServer, fake_payments: FakePayments
) -> None:
    account = paying_gateway.new_account(None)
    payment_id = checkout(paying_gateway, account, 10).json()["data"]["id"]
    payload = stripe_event("checkout.session.completed", completed_session(fake_payments, payment_id))
    first = send_stripe(paying_gateway, payload)
    assert first.status_code == 200 and first.json()["outcome"] == "credited"
    replay = send_stripe(paying_gateway, payload)
    assert replay.status_code == 200 and replay.json()["outcome"] == "duplicate"
    assert balance_nanos(paying_gateway, account) == 10 * 10**9
    purchase = paying_gateway.get("/credits/purchases", account.key).json()["data"][0]
    assert purchase["status"] == "succeeded" and purchase["amount"] == 10 and purchase["fee"] == 0.8
    assert paying_gateway.get("/key", account.key).json()["data"]["is_free_tier"] is False
    assert paying_gateway.get("/credits", account.key).json()["data"]["total_credits"] == 10


def test_forged_expired_and_unbound_events_credit_nothing(
    paying_gateway: GatewayServer, fake_payments: FakePayments
) -> None:
    account = paying_gateway.new_account(None)
    other = paying_gateway.new_account(None)
    payment_id = checkout(paying_gateway, account, 20).json()["data"]["id"]
    good = completed_session(fake_payments, payment_id)

    payload = stripe_event("checkout.session.completed", good)
    assert send_stripe(paying_gateway, payload, signature="t=1,v1=deadbeef").status_code == 400
    old = stripe_signature(payload, STRIPE_WEBHOOK_SECRET, timestamp=int(time.time()) - 3600)
    assert send_stripe(paying_gateway, payload, signature=old).status_code == 400
    assert send_stripe(paying_gateway, payload, signature=stripe_signature(payload, "whsec_wrong")).status_code == 400
    missing = httpx.post(paying_gateway.api + "/webhooks/stripe", content=payload)
    assert missing.status_code == 400
    assert missing.json()["error"]["message"].startswith("Webhook signature check failed")

    cases = [
        {**good, "metadata": {"payment_id": "pay_unknown", "account_id": account.id}, "id": "cs_unknown"},
        {**good, "amount_total": 1},
        {**good, "currency": "eur"},
        {**good, "metadata": {"payment_id": payment_id, "account_id": other.id}},
        {**good, "id": "cs_someone_else"},
    ]
    for session in cases:
        response = send_stripe(paying_gateway, stripe_event("checkout.session.completed", session))
        assert response.status_code == 200
        assert response.json()["outcome"] == "rejected", response.json()
    assert balance_nanos(paying_gateway, account) == 0
    assert balance_nanos(paying_gateway, other) == 0
    # The genuine event still credits.
    assert send_stripe(paying_gateway, payload).json()["outcome"] == "credited"
    assert balance_nanos(paying_gateway, account) == 20 * 10**9


def test_100_concurrent_duplicate_deliveries_credit_once(
    paying_gateway: GatewayServer, fake_payments: FakePayments
) -> None:
    account = paying_gateway.new_account(None)
    payment_id = checkout(paying_gateway, account, 7).json()["data"]["id"]
    payload = stripe_event("checkout.session.completed", completed_session(fake_payments, payment_id))
    signature = stripe_signature(payload, STRIPE_WEBHOOK_SECRET)

    async def deliver() -> list[httpx.Response]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100), timeout=60) as client:
            return await asyncio.gather(
                *[
                    client.post(
                        paying_gateway.api + "/webhooks/stripe",
                        content=payload,
                        headers={"Stripe-Signature": signature},
                    )
                    for _ in range(100)
                ]
            )

    responses = asyncio.run(deliver())
    assert [r.status_code for r in responses].count(200) == 100
    outcomes = [r.json()["outcome"] for r in responses]
    assert outcomes.count("credited") == 1 and outcomes.count("duplicate") == 99
    assert balance_nanos(paying_gateway, account) == 7 * 10**9


def test_async_payment_is_pending_until_it_succeeds(paying_gateway: GatewayServer, fake_payments: FakePayments) -> None:
    account = paying_gateway.new_account(None)
    payment_id = checkout(paying_gateway, account, 15).json()["data"]["id"]
    unpaid = completed_session(fake_payments, payment_id, paid=False)
    assert (
        send_stripe(paying_gateway, stripe_event("checkout.session.completed", unpaid)).json()["outcome"] == "pending"
    )
    purchase = paying_gateway.get("/credits/purchases", account.key).json()["data"][0]
    assert purchase["status"] == "pending" and "bank" in purchase["note"]
    assert balance_nanos(paying_gateway, account) == 0
    summary = paying_gateway.get("/balance", account.key).json()["data"]["summary"]
    assert "pending" in summary
    succeeded = stripe_event("checkout.session.async_payment_succeeded", unpaid)
    assert send_stripe(paying_gateway, succeeded).json()["outcome"] == "credited"
    assert balance_nanos(paying_gateway, account) == 15 * 10**9


def test_partial_then_full_refund_and_disputes(paying_gateway: GatewayServer, fake_payments: FakePayments) -> None:
    account = paying_gateway.new_account(None)
    payment_id = checkout(paying_gateway, account, 10).json()["data"]["id"]
    session = completed_session(fake_payments, payment_id)
    send_stripe(paying_gateway, stripe_event("checkout.session.completed", session))
    charge = {"id": "ch_1", "payment_intent": session["payment_intent"], "amount": 1080, "currency": "usd"}
    partial = send_stripe(paying_gateway, stripe_event("charge.refunded", {**charge, "amount_refunded": 540}))
    assert partial.json()["outcome"] == "refunded"
    assert balance_nanos(paying_gateway, account) == 5 * 10**9  # 10 × 540 / 1080
    status = paying_gateway.get("/credits/purchases", account.key).json()["data"][0]["status"]
    assert status == "partially_refunded"
    full = send_stripe(paying_gateway, stripe_event("charge.refunded", {**charge, "amount_refunded": 1080}))
    assert full.json()["outcome"] == "refunded"
    assert balance_nanos(paying_gateway, account) == 0
    assert paying_gateway.get("/credits/purchases", account.key).json()["data"][0]["status"] == "refunded"
    assert paying_gateway.get("/credits", account.key).json()["data"]["total_credits"] == 0

    second = paying_gateway.new_account(None)
    payment_id = checkout(paying_gateway, second, 10).json()["data"]["id"]
    session = completed_session(fake_payments, payment_id)
    send_stripe(paying_gateway, stripe_event("checkout.session.completed", session))
    dispute = {"id": "dp_1", "payment_intent": session["payment_intent"], "status": "needs_response"}
    send_stripe(paying_gateway, stripe_event("charge.dispute.created", dispute))
    assert balance_nanos(paying_gateway, second) == 0
    send_stripe(paying_gateway, stripe_event("charge.dispute.closed", {**dispute, "status": "won"}))
    assert balance_nanos(paying_gateway, second) == 10 * 10**9


def test_admin_refund_asks_stripe_within_the_window(paying_gateway: GatewayServer, fake_payments: FakePayments) -> None:
    account = paying_gateway.new_account(None)
    payment_id = checkout(paying_gateway, account, 10).json()["data"]["id"]
    send_stripe(
        paying_gateway, stripe_event("checkout.session.completed", completed_session(fake_payments, payment_id))
    )
    env_url = paying_gateway.database_url
    result = run_cli(
        "payments",
        "refund",
        payment_id,
        "--amount",
        "2.70",
        "--json",
        database_url=env_url,
        env=fake_stripe_env(fake_payments),
    )
    assert json.loads(result.stdout)["refund_requested"] is True
    assert fake_payments.refunds[-1]["amount"] == 270
    listed = json.loads(run_cli("payments", "list", account.id, "--json", database_url=env_url).stdout)
    assert listed[0]["id"] == payment_id and listed[0]["status"] == "succeeded"


def test_webhook_arriving_before_checkout_returns_still_binds(
    paying_gateway: GatewayServer, fake_payments: FakePayments
) -> None:
    account = paying_gateway.new_account(None)
    fake_payments.behaviour.session_delay_s = 1.0
    result: dict[str, httpx.Response] = {}
    thread = threading.Thread(target=lambda: result.update(r=checkout(paying_gateway, account, 5)))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        pending: list[dict[str, Any]] = []
        while not pending and time.monotonic() < deadline:
            pending = paying_gateway.get("/credits/purchases", account.key).json()["data"]
            time.sleep(0.05)
        payment_id = pending[0]["id"]
        session_id = fake_payments.next_session_id()
        early = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "payment",
            "amount_total": 580,
            "currency": "usd",
            "payment_status": "paid",
            "payment_intent": "pi_early",
            "metadata": {"payment_id": payment_id, "account_id": account.id},
        }
        assert (
            send_stripe(paying_gateway, stripe_event("checkout.session.completed", early)).json()["outcome"]
            == "credited"
        )
    finally:
        thread.join(10)
        fake_payments.behaviour.session_delay_s = 0
    assert result["r"].status_code == 200
    assert balance_nanos(paying_gateway, account) == 5 * 10**9


def test_crypto_pending_then_confirmed(paying_gateway: GatewayServer, fake_payments: FakePayments) -> None:
    account = paying_gateway.new_account(None)
    data = checkout(paying_gateway, account, 20, provider="crypto").json()["data"]
    assert data["fee"] == 1 and data["total"] == 21
    charge = fake_payments.charges[data["url"].rsplit("/", 1)[1]]
    assert charge["api_key"] == "crypto_key_test"

    def event(kind: str, **changes: Any) -> bytes:
        body = {"id": charge["id"], "metadata": charge["metadata"], "pricing": charge["pricing"], **changes}
        return orjson.dumps({"event": {"id": f"ev-{next(_event_ids)}", "type": kind, "data": body}})

    def send(payload: bytes, signature: str | None = None) -> httpx.Response:
        return httpx.post(
            paying_gateway.api + "/webhooks/crypto",
            content=payload,
            headers={"X-CC-Webhook-Signature": signature or crypto_signature(payload, CRYPTO_WEBHOOK_SECRET)},
        )

    assert send(event("charge:confirmed"), signature="0" * 64).status_code == 400
    assert send(event("charge:pending")).json()["outcome"] == "pending"
    assert paying_gateway.get("/credits/purchases", account.key).json()["data"][0]["status"] == "pending"
    tampered = event("charge:confirmed", pricing={"local": {"amount": "2100.00", "currency": "USD"}})
    assert send(tampered).json()["outcome"] == "rejected"
    assert send(event("charge:confirmed")).json()["outcome"] == "credited"
    assert balance_nanos(paying_gateway, account) == 20 * 10**9
    purchase = paying_gateway.get("/credits/purchases", account.key).json()["data"][0]
    assert purchase["method"] == "crypto" and purchase["status"] == "succeeded"


def test_auto_recharge_charges_once_per_dip_and_a_decline_turns_it_off(
    paying_gateway: GatewayServer, fake_payments: FakePayments
) -> None:
    account = paying_gateway.new_account("0.002")
    refused = paying_gateway.post("/credits/auto-recharge", owner(paying_gateway, account), {})
    assert refused.status_code == 405 or refused.status_code == 404 or refused.status_code == 400
    enable = httpx.put(
        paying_gateway.api + "/credits/auto-recharge",
        headers={"Authorization": f"Bearer {owner(paying_gateway, account)}"},
        json={"enabled": True, "threshold": 5, "amount": 10},
    )
    assert enable.status_code == 400 and "save a card first" in enable.json()["error"]["message"]
    setup = paying_gateway.post("/credits/auto-recharge/setup", owner(paying_gateway, account), {})
    assert setup.status_code == 200
    session_id = setup.json()["data"]["url"].rsplit("/", 1)[1]
    setup_event = {**fake_payments.sessions[session_id], "customer": "cus_1", "setup_intent": "seti_1"}
    assert (
        send_stripe(paying_gateway, stripe_event("checkout.session.completed", setup_event)).json()["outcome"]
        == "saved"
    )
    enable = httpx.put(
        paying_gateway.api + "/credits/auto-recharge",
        headers={"Authorization": f"Bearer {owner(paying_gateway, account)}"},
        json={"enabled": True, "threshold": 5, "amount": 10},
    )
    assert enable.status_code == 200 and enable.json()["data"]["has_payment_method"] is True

    before = len(fake_payments.payment_intents)
    body = {"model": "tollway/offline-small", "max_tokens": 5, "messages": [{"role": "user", "content": "/echo hi"}]}

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            responses = await asyncio.gather(
                *[
                    client.post(
                        paying_gateway.api + "/chat/completions",
                        json=body,
                        headers={"Authorization": f"Bearer {account.key}"},
                    )
                    for _ in range(20)
                ]
            )
        return [r.status_code for r in responses]

    assert 200 in asyncio.run(burst())
    time.sleep(0.5)
    intents = fake_payments.payment_intents[before:]
    assert len(intents) == 1
    assert intents[0]["amount"] == 1080 and intents[0]["customer"] == "cus_1"
    assert intents[0]["payment_method"] == "pm_test_saved"
    assert intents[0]["idempotency_key"].startswith("auto-recharge-")
    succeeded = {
        "id": intents[0]["id"],
        "object": "payment_intent",
        "amount": 1080,
        "currency": "usd",
        "metadata": intents[0]["metadata"],
    }
    assert (
        send_stripe(paying_gateway, stripe_event("payment_intent.succeeded", succeeded)).json()["outcome"] == "credited"
    )
    assert balance_nanos(paying_gateway, account) > 10 * 10**9

    # A declined charge turns auto-recharge off, says why, and nothing turns it back on by itself.
    second = paying_gateway.new_account("0.002")
    run_cli(
        "auto-recharge",
        "set",
        second.id,
        "--enabled",
        "--threshold",
        "5",
        "--amount",
        "10",
        "--customer",
        "cus_2",
        "--payment-method",
        "pm_2",
        database_url=paying_gateway.database_url,
    )
    time.sleep(0.4)
    fake_payments.behaviour.decline_payment_intents = True
    try:
        assert paying_gateway.post("/chat/completions", second.key, body).status_code == 200
        deadline = time.monotonic() + 5
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = paying_gateway.get("/credits/auto-recharge", owner(paying_gateway, second)).json()["data"]
            if not state["enabled"]:
                break
            time.sleep(0.1)
    finally:
        fake_payments.behaviour.decline_payment_intents = False
    assert state["enabled"] is False
    assert "declined" in state["disabled_reason"]
    assert paying_gateway.post("/chat/completions", second.key, body).status_code == 200
    time.sleep(0.3)
    assert (
        paying_gateway.get("/credits/auto-recharge", owner(paying_gateway, second)).json()["data"]["enabled"] is False
    )


def test_payments_not_configured_answer_501(gateway: GatewayServer) -> None:
    account = gateway.new_account(None)
    response = gateway.post("/credits/checkout", owner(gateway, account), {"amount": 10})
    assert response.status_code == 501
    assert "payments are not configured" in response.json()["error"]["message"]
    assert httpx.post(gateway.api + "/webhooks/stripe", content=b"{}").status_code == 501
