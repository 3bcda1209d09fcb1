"""Payment events under faults and races: a crediting failure credits once on retry; refunds and disputes,
concurrent or not, never debit more than the purchase still credits (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import STRIPE_WEBHOOK_SECRET
from tests.fakes.payment_servers import FakePayments, stripe_signature
from tests.faults.payment_support import (
    Site,
    assert_reconcile_clean,
    assert_reconciles,
    checkout,
    completed_session,
    debits,
    dispute,
    entries,
    execute_script,
    new_owner,
    paid_purchase,
    payment_row,
    purchases,
    refunded,
    send,
    stripe_event,
    wait_for,
)
from tests.support import NANOS, GatewayServer, nanos, start_gateway

TRIALS = 10


pytestmark = pytest.mark.usefixtures("fresh_fake")


# A crediting failure is retried by the provider and credits once --------------------------------------


def _arm_fault(site: Site, armed: bool) -> None:
    if site.database_url.startswith("sqlite"):
        execute_script(
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
    execute_script(
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
    assert_reconcile_clean(site)
