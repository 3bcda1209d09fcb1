"""Auto-recharge charges converge under provider faults and crashes: charged means credited, exactly once.

Real gateway processes on SQLite and PostgreSQL, the fake Stripe server with failure modes, and the
ledger read straight from the database after each case.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.fakes.payment_servers import FakePayments
from tests.faults.payment_support import (
    Site,
    assert_reconcile_clean,
    assert_reconciles,
    auto_payment_ids,
    auto_state,
    dip,
    enable_auto_recharge,
    entries,
    intents_for,
    new_owner,
    payment_row,
    purchases,
    send,
    stripe_event,
    wait_for,
)
from tests.support import NANOS, start_gateway

pytestmark = pytest.mark.usefixtures("fresh_fake")


# Ambiguous provider errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["500_after_charge", "drop_after_charge"])
def test_ambiguous_error_after_the_charge_stays_pending_and_the_webhook_credits_once(
    site: Site, fake: FakePayments, failure: str
) -> None:
    if failure == "drop_after_charge" and not site.database_url.startswith("sqlite"):
        pytest.skip("how the answer was lost does not depend on the database: one is enough")
    owner = new_owner(site, "0.002")
    enable_auto_recharge(site, fake, owner, f"cus_{failure}")
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
    enable_auto_recharge(site, fake, owner, "cus_lookup")
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
    enable_auto_recharge(site, fake, owner, "cus_never")
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
    if not site.database_url.startswith("sqlite"):
        pytest.skip("the decline path writes nothing to the ledger: one database is enough")
    owner = new_owner(site, "0.002")
    enable_auto_recharge(site, fake, owner, "cus_declined")
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
    enable_auto_recharge(site, fake, owner, "cus_crash")
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
    assert_reconcile_clean(site)


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


def test_a_fee_setting_that_is_not_a_number_stops_serve_with_its_name(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "tollway", "serve", "--database-url", f"sqlite:///{tmp_path / 'fees.db'}"],
        env={**os.environ, "TOLLWAY_CARD_FEE_PERCENT": "five"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "card_fee_percent" in result.stderr, result.stderr


def test_a_claim_left_by_a_dead_process_expires(tmp_path: Path) -> None:
    """The charge slot: one holder at a time, taken over once the claim timeout has passed."""
    import asyncio

    from tollway.db.engine import create_engine
    from tollway.db.migrations import migrate
    from tollway.payments.auto_recharge import AutoRechargeStore

    second_us, timeout_us = 1_000_000, 300_000_000

    async def run() -> list[bool]:
        engine = create_engine(f"sqlite:///{tmp_path / 'claims.db'}")
        try:
            await migrate(engine)
            store = AutoRechargeStore(engine)
            await store.save("acct_c", 0, enabled=True, threshold_nanos=5, amount_nanos=10)
            return [
                await store.claim("acct_c", "pay_dead", 0, 0, timeout_us),
                await store.claim("acct_c", "pay_early", timeout_us - second_us, 0, timeout_us),
                await store.claim("acct_c", "pay_next", timeout_us, 0, timeout_us),
                await store.claim("acct_c", "pay_again", timeout_us + second_us, 0, timeout_us),
            ]
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == [True, False, True, False]
