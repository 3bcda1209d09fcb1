"""Payments converge under provider faults, crashes and concurrent events: charged means credited, exactly once.

Real gateway processes on SQLite and PostgreSQL, the fake Stripe server with failure modes, and the
ledger read straight from the database after each case.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tests.conftest import CRYPTO_WEBHOOK_SECRET, STRIPE_WEBHOOK_SECRET, make_database_url
from tests.fakes.payment_servers import FakePayments, stripe_signature
from tests.support import NANOS, GatewayServer, nanos, run_cli, start_gateway

TRIALS = 10
OFFLINE = {"model": "tollway/offline-small", "max_tokens": 5, "messages": [{"role": "user", "content": "/echo hi"}]}
_event_ids = iter(range(1, 10**9))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakePayments]:
    server = FakePayments().start()
    yield server
    server.stop()


@dataclass
class Site:
    gateway: GatewayServer
    database_url: str
    env: dict[str, str]
    directory: Path


def _env(fake: FakePayments) -> dict[str, str]:
    return {
        "TOLLWAY_STRIPE_SECRET_KEY": "sk_test_fake",
        "TOLLWAY_STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
        "TOLLWAY_STRIPE_API_BASE": fake.stripe_base,
        "TOLLWAY_CRYPTO_API_KEY": "crypto_key_test",
        "TOLLWAY_CRYPTO_WEBHOOK_SECRET": CRYPTO_WEBHOOK_SECRET,
        "TOLLWAY_CRYPTO_API_BASE": fake.crypto_base,
        "TOLLWAY_AUTO_RECHARGE_CLAIM_TIMEOUT_SECONDS": "2",
        # Fees other than the defaults, to show the settings are the ones applied.
        "TOLLWAY_CARD_FEE_PERCENT": "3",
        "TOLLWAY_CARD_FEE_MIN_USD": "0.50",
        "TOLLWAY_CRYPTO_FEE_PERCENT": "1",
    }


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def site(
    request: pytest.FixtureRequest, fake: FakePayments, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    directory = tmp_path_factory.mktemp(f"payfaults-{request.param}")
    urls = make_database_url(request.param, directory)
    database_url = next(urls)
    env = _env(fake)
    gateway = start_gateway(database_url, None, directory, env=env)
    holder = Site(gateway, database_url, env, directory)
    yield holder
    holder.gateway.stop()
    for _ in urls:
        pass


@pytest.fixture(autouse=True)
def _reset_fake(fake: FakePayments) -> None:
    fake.behaviour.intent_failure = None
    fake.behaviour.intent_failures = 0
    fake.behaviour.intent_delay_s = 0.0
    fake.behaviour.decline_payment_intents = False
    fake.behaviour.lookups_unavailable = False


# The ledger, read from the database ------------------------------------------------------------------


def _query(database_url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    if database_url.startswith("sqlite"):
        connection = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30)
        try:
            return list(connection.execute(sql.replace("$1", "?").replace("$2", "?"), args).fetchall())
        finally:
            connection.close()

    async def run() -> list[tuple[Any, ...]]:
        connection = await asyncpg.connect(database_url)
        try:
            return [tuple(row) for row in await connection.fetch(sql, *args)]
        finally:
            await connection.close()

    return asyncio.run(run())


def _execute_script(database_url: str, statements: list[str]) -> None:
    if database_url.startswith("sqlite"):
        connection = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30)
        try:
            for statement in statements:
                connection.execute(statement)
            connection.commit()
        finally:
            connection.close()
        return

    async def run() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def entries(site: Site, account_id: str) -> list[tuple[str, int, str | None]]:
    rows = _query(
        site.database_url,
        "SELECT kind, amount_nanos, reference FROM ledger_entries WHERE account_id = $1 ORDER BY id",
        account_id,
    )
    return [(str(kind), int(amount), reference) for kind, amount, reference in rows]


def payment_row(site: Site, payment_id: str) -> dict[str, Any]:
    rows = _query(
        site.database_url,
        "SELECT status, amount_nanos, total_cents, refunded_cents, disputed FROM payments WHERE id = $1",
        payment_id,
    )
    status, amount, total, refunded, disputed = rows[0]
    return {"status": status, "amount": amount, "total": total, "refunded": refunded, "disputed": bool(disputed)}


def assert_reconciles(site: Site, account_id: str) -> None:
    """The balance the gateway shows is the sum of the account's entries (usage spends, the rest adds)."""

    def agree() -> bool:
        ledger = sum(-amount if kind == "usage" else amount for kind, amount, _ in entries(site, account_id))
        return nanos(site.gateway.balance(account_id)["balance"]) == ledger

    wait_for(agree, 5, "the balance to equal the ledger")


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


# Driving the gateway ----------------------------------------------------------------------------------


@dataclass
class Owner:
    id: str
    management_key: str
    key: str


def new_owner(site: Site, credits_usd: str | None) -> Owner:
    account = site.gateway.new_account(credits_usd, management=True)
    key, _hash = site.gateway.new_key(account.id)
    return Owner(account.id, account.key, key)


def stripe_event(kind: str, obj: dict[str, Any]) -> bytes:
    return orjson.dumps({"id": f"evt_f{next(_event_ids)}", "object": "event", "type": kind, "data": {"object": obj}})


def send(site: Site, payload: bytes) -> httpx.Response:
    headers = {"Content-Type": "application/json", "Stripe-Signature": stripe_signature(payload, STRIPE_WEBHOOK_SECRET)}
    return httpx.post(site.gateway.api + "/webhooks/stripe", content=payload, headers=headers, timeout=30)


def enable_auto_recharge(site: Site, owner: Owner, customer: str) -> None:
    run_cli(
        "auto-recharge",
        "set",
        owner.id,
        "--enabled",
        "--threshold",
        "5",
        "--amount",
        "10",
        "--customer",
        customer,
        "--payment-method",
        "pm_saved",
        database_url=site.database_url,
    )
    wait_for(lambda: auto_state(site, owner)["enabled"], 5, "auto-recharge on")
    time.sleep(0.3)  # every poll of the gateway has seen it


def auto_state(site: Site, owner: Owner) -> dict[str, Any]:
    response = site.gateway.get("/credits/auto-recharge", owner.management_key)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def auto_payment_ids(site: Site, owner: Owner) -> list[str]:
    rows = _query(
        site.database_url,
        "SELECT id FROM payments WHERE account_id = $1 AND method = 'auto_recharge' ORDER BY created_at_us",
        owner.id,
    )
    return [str(row[0]) for row in rows]


def dip(site: Site, owner: Owner) -> None:
    """Spend so the balance falls below the threshold: the settlement starts an auto-recharge charge."""
    assert site.gateway.post("/chat/completions", owner.key, OFFLINE).status_code == 200


def intents_for(fake: FakePayments, payment_id: str) -> list[dict[str, Any]]:
    return [i for i in fake.payment_intents if i["metadata"].get("payment_id") == payment_id]


def purchases(site: Site, account_id: str, payment_id: str) -> list[int]:
    return [
        amount for kind, amount, ref in entries(site, account_id) if kind == "purchase" and ref == f"pay:{payment_id}"
    ]


# Ambiguous provider errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["500_after_charge", "drop_after_charge"])
def test_ambiguous_error_after_the_charge_stays_pending_and_the_webhook_credits_once(
    site: Site, fake: FakePayments, failure: str
) -> None:
    owner = new_owner(site, "0.002")
    enable_auto_recharge(site, owner, f"cus_{failure}")
    fake.behaviour.lookups_unavailable = True  # only the webhook can tell
    fake.behaviour.intent_failure, fake.behaviour.intent_failures = failure, 1
    dip(site, owner)
    payment_id = wait_for(lambda: auto_payment_ids(site, owner), 5, "the charge")[0]
    wait_for(lambda: intents_for(fake, payment_id), 5, "the charge at Stripe")
    time.sleep(0.5)
    # Charged at Stripe, answer lost: pending, auto-recharge still on, nothing credited yet.
    assert payment_row(site, payment_id)["status"] == "pending"
    state = auto_state(site, owner)
    assert state["enabled"] is True and state["disabled_reason"] is None
    assert purchases(site, owner.id, payment_id) == []

    intent = intents_for(fake, payment_id)[0]
    succeeded = {k: intent[k] for k in ("id", "object", "amount", "currency", "metadata")}
    first = send(site, stripe_event("payment_intent.succeeded", succeeded))
    assert first.status_code == 200 and first.json()["outcome"] == "credited", first.text
    again = send(site, stripe_event("payment_intent.succeeded", succeeded))
    assert again.json()["outcome"] == "ignored"
    fake.behaviour.lookups_unavailable = False
    time.sleep(1.0)  # the background lookups find it settled
    assert purchases(site, owner.id, payment_id) == [10 * NANOS]
    assert payment_row(site, payment_id)["status"] == "succeeded"
    state = auto_state(site, owner)
    assert state["enabled"] is True and state["charge_in_flight"] is None
    assert len(intents_for(fake, payment_id)) == 1
    assert_reconciles(site, owner.id)


def test_ambiguous_error_is_resolved_by_asking_stripe_without_a_webhook(site: Site, fake: FakePayments) -> None:
    owner = new_owner(site, "0.002")
    enable_auto_recharge(site, owner, "cus_lookup")
    fake.behaviour.intent_failure, fake.behaviour.intent_failures = "500_after_charge", 1
    lookups_before = fake.intent_lookups
    dip(site, owner)
    payment_id = wait_for(lambda: auto_payment_ids(site, owner), 5, "the charge")[0]
    wait_for(lambda: payment_row(site, payment_id)["status"] == "succeeded", 15, "the lookup to credit")
    assert fake.intent_lookups > lookups_before
    assert purchases(site, owner.id, payment_id) == [10 * NANOS]
    assert len(intents_for(fake, payment_id)) == 1
    state = auto_state(site, owner)
    assert state["enabled"] is True and state["charge_in_flight"] is None
    # The webhook arriving later changes nothing.
    intent = intents_for(fake, payment_id)[0]
    late = send(
        site, stripe_event("payment_intent.succeeded", {k: intent[k] for k in ("id", "amount", "currency", "metadata")})
    )
    assert late.json()["outcome"] == "ignored"
    assert purchases(site, owner.id, payment_id) == [10 * NANOS]
    assert_reconciles(site, owner.id)


def test_error_before_the_charge_fails_after_the_claim_timeout_and_keeps_auto_recharge_on(
    site: Site, fake: FakePayments
) -> None:
    owner = new_owner(site, "0.002")
    enable_auto_recharge(site, owner, "cus_never")
    fake.behaviour.intent_failure, fake.behaviour.intent_failures = "500_before_charge", 1
    dip(site, owner)
    payment_id = wait_for(lambda: auto_payment_ids(site, owner), 5, "the charge")[0]
    assert payment_row(site, payment_id)["status"] == "pending"
    wait_for(lambda: payment_row(site, payment_id)["status"] == "failed", 15, "the order given up")
    state = wait_for(lambda: (s := auto_state(site, owner))["charge_in_flight"] is None and s, 5, "the claim released")
    assert state["enabled"] is True and state["disabled_reason"] is None
    assert purchases(site, owner.id, payment_id) == [] and intents_for(fake, payment_id) == []
    assert_reconciles(site, owner.id)


def test_a_real_decline_turns_auto_recharge_off(site: Site, fake: FakePayments) -> None:
    owner = new_owner(site, "0.002")
    enable_auto_recharge(site, owner, "cus_declined")
    fake.behaviour.decline_payment_intents = True
    dip(site, owner)
    state = wait_for(lambda: (s := auto_state(site, owner))["enabled"] is False and s, 5, "auto-recharge off")
    assert "declined" in state["disabled_reason"]
    assert all(kind != "purchase" for kind, _, _ in entries(site, owner.id))


@pytest.mark.slow
def test_worker_killed_mid_charge_the_claim_expires_and_the_charge_is_credited_once(
    site: Site, fake: FakePayments
) -> None:
    owner = new_owner(site, "0.002")
    enable_auto_recharge(site, owner, "cus_crash")
    fake.behaviour.intent_delay_s = 3.0  # the charge is made, the answer is still on its way
    dip(site, owner)
    payment_id = wait_for(lambda: auto_payment_ids(site, owner), 5, "the charge")[0]
    wait_for(lambda: intents_for(fake, payment_id), 5, "the charge at Stripe")
    os.kill(site.gateway.process.pid, signal.SIGKILL)
    site.gateway.process.wait(10)
    assert payment_row(site, payment_id)["status"] == "pending"
    site.gateway = start_gateway(site.database_url, None, site.directory, env=site.env)
    # The new process finds the order the dead one left, asks Stripe, credits it and frees the slot.
    wait_for(lambda: payment_row(site, payment_id)["status"] == "succeeded", 20, "the order settled")
    assert purchases(site, owner.id, payment_id) == [10 * NANOS]
    assert len(intents_for(fake, payment_id)) == 1
    state = auto_state(site, owner)
    assert state["enabled"] is True and state["charge_in_flight"] is None
    assert_reconciles(site, owner.id)


# A crediting failure is retried by the provider and credits once --------------------------------------


def _arm_fault(site: Site, armed: bool) -> None:
    if site.database_url.startswith("sqlite"):
        _execute_script(
            site.database_url,
            [
                "CREATE TABLE IF NOT EXISTS test_fault (armed INTEGER NOT NULL)",
                "DELETE FROM test_fault",
                f"INSERT INTO test_fault VALUES ({1 if armed else 0})",
                "CREATE TRIGGER IF NOT EXISTS test_fail_purchase BEFORE INSERT ON ledger_entries "
                "WHEN NEW.kind = 'purchase' AND (SELECT armed FROM test_fault) = 1 "
                "BEGIN SELECT RAISE(ABORT, 'injected crediting failure'); END",
            ],
        )
        return
    _execute_script(
        site.database_url,
        [
            "CREATE TABLE IF NOT EXISTS test_fault (armed BOOLEAN NOT NULL)",
            "DELETE FROM test_fault",
            f"INSERT INTO test_fault VALUES ({'true' if armed else 'false'})",
            "CREATE OR REPLACE FUNCTION test_fail_purchase() RETURNS trigger AS $$ BEGIN "
            "IF NEW.kind = 'purchase' AND (SELECT armed FROM test_fault LIMIT 1) THEN "
            "RAISE EXCEPTION 'injected crediting failure'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "DROP TRIGGER IF EXISTS test_fail_purchase ON ledger_entries",
            "CREATE TRIGGER test_fail_purchase BEFORE INSERT ON ledger_entries "
            "FOR EACH ROW EXECUTE FUNCTION test_fail_purchase()",
        ],
    )


def test_a_crediting_failure_is_retried_by_the_provider_and_credits_once(site: Site, fake: FakePayments) -> None:
    owner = new_owner(site, None)
    payment_id = checkout(site, owner, 20)
    session = completed_session(fake, payment_id)
    payload = stripe_event("checkout.session.completed", session)
    _arm_fault(site, True)
    try:
        failed = send(site, payload)
        assert failed.status_code >= 500, failed.text  # the provider retries a 5xx
    finally:
        _arm_fault(site, False)
    assert payment_row(site, payment_id)["status"] == "pending"
    assert entries(site, owner.id) == []
    retried = send(site, payload)
    assert retried.status_code == 200 and retried.json()["outcome"] == "credited"
    assert send(site, payload).json()["outcome"] == "duplicate"
    assert purchases(site, owner.id, payment_id) == [20 * NANOS]
    assert_reconciles(site, owner.id)


# Refunds and disputes never debit more than the purchase still credits -------------------------------


def checkout(site: Site, owner: Owner, amount: int, provider: str = "stripe") -> str:
    response = site.gateway.post("/credits/checkout", owner.management_key, {"amount": amount, "provider": provider})
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["id"])


def completed_session(fake: FakePayments, payment_id: str) -> dict[str, Any]:
    session = dict(next(s for s in fake.sessions.values() if s["metadata"].get("payment_id") == payment_id))
    session.update(payment_status="paid", payment_intent=f"pi_for_{payment_id}")
    return session


def paid_purchase(site: Site, fake: FakePayments, owner: Owner, amount: int) -> tuple[str, int]:
    payment_id = checkout(site, owner, amount)
    session = completed_session(fake, payment_id)
    assert send(site, stripe_event("checkout.session.completed", session)).json()["outcome"] == "credited"
    return payment_id, int(session["amount_total"])


def refunded(payment_id: str, cumulative_cents: int) -> bytes:
    obj = {"id": f"ch_{payment_id}", "payment_intent": f"pi_for_{payment_id}", "amount_refunded": cumulative_cents}
    return stripe_event("charge.refunded", {**obj, "currency": "usd"})


def dispute(payment_id: str, kind: str, dispute_id: str, status: str = "needs_response") -> bytes:
    obj = {"id": dispute_id, "payment_intent": f"pi_for_{payment_id}", "status": status}
    return stripe_event(kind, obj)


def debits(site: Site, account_id: str) -> int:
    return -sum(amount for kind, amount, _ in entries(site, account_id) if kind in ("refund", "adjustment"))


def test_dispute_after_a_partial_refund_debits_only_the_remainder(site: Site, fake: FakePayments) -> None:
    owner = new_owner(site, None)
    payment_id, total_cents = paid_purchase(site, fake, owner, 20)
    assert send(site, refunded(payment_id, total_cents // 4)).json()["outcome"] == "refunded"
    assert debits(site, owner.id) == 5 * NANOS
    assert send(site, dispute(payment_id, "charge.dispute.created", "dp_1")).json()["outcome"] == "dispute"
    assert debits(site, owner.id) == 20 * NANOS  # never 25 (or 40) for a 20 USD purchase
    assert nanos(site.gateway.balance(owner.id)["balance"]) == 0
    # A refund while the dispute holds everything debits nothing more; winning restores only what is not refunded.
    assert send(site, refunded(payment_id, total_cents // 2)).json()["outcome"] == "refunded"
    assert debits(site, owner.id) == 20 * NANOS
    won = dispute(payment_id, "charge.dispute.closed", "dp_1", status="won")
    assert send(site, won).json()["outcome"] == "dispute"
    assert debits(site, owner.id) == 10 * NANOS
    assert nanos(site.gateway.balance(owner.id)["balance"]) == 10 * NANOS
    assert send(site, refunded(payment_id, total_cents * 5)).json()["outcome"] == "refunded"  # capped at the total
    assert debits(site, owner.id) == 20 * NANOS
    assert payment_row(site, payment_id)["refunded"] == total_cents
    assert_reconciles(site, owner.id)


def _send_together(gateways: list[GatewayServer], payloads: list[bytes]) -> list[httpx.Response]:
    """Deliver the events at once, spread over processes (one process serialises its own webhooks)."""

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *[
                    client.post(
                        gateways[index % len(gateways)].api + "/webhooks/stripe",
                        content=payload,
                        headers={
                            "Content-Type": "application/json",
                            "Stripe-Signature": stripe_signature(payload, STRIPE_WEBHOOK_SECRET),
                        },
                    )
                    for index, payload in enumerate(payloads)
                ]
            )

    return asyncio.run(run())


@pytest.fixture
def second_gateway(site: Site) -> Iterator[GatewayServer]:
    server = start_gateway(site.database_url, None, site.directory, env=site.env)
    yield server
    server.stop()


def test_concurrent_refunds_and_disputes_never_over_debit(
    site: Site, fake: FakePayments, second_gateway: GatewayServer
) -> None:
    gateways = [site.gateway, second_gateway]
    owner = new_owner(site, None)
    for trial in range(TRIALS):
        payment_id, total_cents = paid_purchase(site, fake, owner, 10)
        before = debits(site, owner.id)
        payloads = [refunded(payment_id, total_cents // 2), refunded(payment_id, total_cents)]
        if trial % 2:
            payloads += [
                refunded(payment_id, total_cents // 2),
                dispute(payment_id, "charge.dispute.created", f"dp_c{trial}"),
            ]
        responses = _send_together(gateways, payloads)
        assert {r.status_code for r in responses} == {200}, [r.text for r in responses]
        # Whatever the interleaving, the purchase's 10 USD come back exactly once: never more.
        assert debits(site, owner.id) - before == 10 * NANOS, (trial, entries(site, owner.id))
        row = payment_row(site, payment_id)
        assert row["refunded"] == total_cents and row["status"] == "refunded"
    # The other process's entries reach this one's figures within a poll.
    wait_for(lambda: nanos(site.gateway.balance(owner.id)["balance"]) == 0, 5, "the balance back to 0")
    assert_reconciles(site, owner.id)


# Fees are the configured ones -------------------------------------------------------------------------


def test_fee_settings_are_the_ones_charged(site: Site, fake: FakePayments) -> None:
    owner = new_owner(site, None)
    cases = [("stripe", 10, 0.5, 10.5), ("stripe", 100, 3, 103), ("crypto", 10, 0.1, 10.1), ("crypto", 100, 1, 101)]
    for provider, amount, fee, total in cases:
        response = site.gateway.post(
            "/credits/checkout", owner.management_key, {"amount": amount, "provider": provider}
        )
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert (data["amount"], data["fee"], data["total"]) == (amount, fee, total), (provider, data)


@pytest.mark.parametrize(
    ("name", "value"),
    [("TOLLWAY_CARD_FEE_PERCENT", "five"), ("TOLLWAY_CRYPTO_FEE_PERCENT", "-1"), ("TOLLWAY_CARD_FEE_MIN_USD", "x")],
)
def test_a_fee_setting_that_is_not_a_number_stops_serve_with_its_name(tmp_path: Path, name: str, value: str) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "tollway", "serve", "--database-url", f"sqlite:///{tmp_path / 'fees.db'}"],
        env={**os.environ, name: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert name.removeprefix("TOLLWAY_").lower() in result.stderr, result.stderr
