"""The audit log: each kind of change leaves one entry with its actor and before → after, through the API, the
admin API, the CLI, the dashboard and the payment provider; GET /audit shows an owner their own account only."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import time
from typing import Any

import httpx
import pytest

from tests.conftest import fake_stripe_env
from tests.fakes.payment_servers import FakePayments
from tests.integration.test_dashboard_http import create_user, csrf, signed_in, signed_up
from tests.integration.test_payments import checkout, completed_session, owner, send_stripe, stripe_event
from tests.support import GatewayServer, nanos, run_cli

NANOS = 1_000_000_000


def audit(gateway: GatewayServer, key: str, **params: Any) -> list[dict[str, Any]]:
    response = gateway.get("/audit", key, **params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["data"]
    return entries


def cli_audit(gateway: GatewayServer, account_id: str) -> list[dict[str, Any]]:
    result = run_cli("audit", account_id, "--json", database_url=gateway.database_url)
    entries: list[dict[str, Any]] = json.loads(result.stdout)["data"]
    return entries


def only(entries: list[dict[str, Any]], action: str, target: str | None = None) -> dict[str, Any]:
    found = [e for e in entries if e["action"] == action and (target is None or e["target"] == target)]
    assert len(found) == 1, (action, target, entries)
    return found[0]


def test_key_caps_and_limits_changed_through_the_api(gateway: GatewayServer) -> None:
    account = gateway.new_account("10")  # the admin API creates the account's key and grants 10 USD
    manager, manager_hash = gateway.new_key(account.id, management=True)
    created = gateway.post(
        "/keys", manager, {"name": "laptop", "limit": 1.5, "rate_limit": {"requests": 10, "per": "minute"}}
    )
    assert created.status_code == 201, created.text
    key_hash = created.json()["data"]["hash"]
    headers = {"Authorization": f"Bearer {manager}"}
    for change in ({"limit": 2, "limit_reset": "monthly"}, {"disabled": True}, {"rate_limit": None}):
        patched = httpx.patch(f"{gateway.api}/keys/{key_hash}", headers=headers, json=change)
        assert patched.status_code == 200, patched.text
    assert httpx.delete(f"{gateway.api}/keys/{key_hash}", headers=headers).status_code == 200

    entries = audit(gateway, manager)
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    by_manager = {"type": "key", "id": manager_hash}
    made = only(entries, "key.create", key_hash)
    assert made["actor"] == by_manager and made["before"] is None
    assert made["after"]["name"] == "laptop" and made["after"]["limit_nanos"] == 3 * NANOS // 2
    assert created.json()["key"] not in json.dumps(entries) and manager not in json.dumps(entries)  # hashes only
    updates = [e for e in entries if e["action"] == "key.update" and e["target"] == key_hash]
    cap, disabled = updates[1], updates[0]  # newest first
    assert cap["before"]["limit_nanos"] == 3 * NANOS // 2 and cap["after"]["limit_nanos"] == 2 * NANOS
    assert cap["before"]["limit_reset"] is None and cap["after"]["limit_reset"] == "monthly"
    assert disabled["before"]["disabled"] is False and disabled["after"]["disabled"] is True
    limits = [e for e in entries if e["action"] == "limits.update" and e["target"] == key_hash]
    assert limits[1]["before"]["requests"] is None and limits[1]["after"] == {
        "requests": 10,
        "per": "minute",
        "tokens_per_minute": None,
        "concurrency": None,
    }
    assert limits[0]["before"]["requests"] == 10 and limits[0]["after"]["requests"] is None
    deleted = only(entries, "key.delete", key_hash)
    assert deleted["before"]["deleted"] is False and deleted["after"]["deleted"] is True
    assert all(e["at"].endswith("Z") for e in entries)

    # What the admin API did is there too, by the admin API.
    grant = only(entries, "credits.grant")
    assert grant["actor"] == {"type": "admin_api"} and grant["after"]["amount_nanos"] == 10 * NANOS
    assert only(entries, "key.create", account.key_hash)["actor"] == {"type": "admin_api"}
    put = gateway.admin("PUT", f"/accounts/{account.id}/limits", {"concurrency": 3})
    assert put.status_code == 200
    account_limits = only(audit(gateway, manager), "limits.update", account.id)
    assert account_limits["before"]["concurrency"] is None and account_limits["after"]["concurrency"] == 3

    # Pages, newest first, without overlap.
    first, second = audit(gateway, manager, limit=2), audit(gateway, manager, limit=2, offset=2)
    assert len(first) == len(second) == 2 and first[-1]["id"] > second[0]["id"]
    assert gateway.get("/audit", manager, limit=0).status_code == 400


def test_only_the_owner_reads_the_audit_log_of_their_own_account(gateway: GatewayServer) -> None:
    mine, other = gateway.new_account("1"), gateway.new_account("1")
    other_manager, _ = gateway.new_key(other.id, management=True)
    refused = gateway.get("/audit", mine.key)  # an inference key
    assert refused.status_code == 403
    assert httpx.get(gateway.api + "/audit").status_code == 401
    seen = audit(gateway, other_manager)
    assert seen and all(e["account_id"] == other.id for e in seen)
    assert mine.key_hash not in json.dumps(seen)


def test_changes_made_with_the_cli_name_the_cli(gateway: GatewayServer) -> None:
    if not gateway.database_url.startswith("sqlite"):
        pytest.skip("a dozen CLI processes take 15 s; the same SQL runs on PostgreSQL in the other tests")
    account = gateway.new_account(None)
    db = gateway.database_url
    run_cli("credits", "grant", account.id, "2.5", "--reason", "welcome", database_url=db)
    made = json.loads(run_cli("keys", "create", account.id, "--name", "cli key", "--json", database_url=db).stdout)
    key_hash = made["data"]["hash"]
    run_cli("keys", "disable", key_hash, database_url=db)
    run_cli("limits", "set", "--key", key_hash, "--requests", "5", "--per", "minute", database_url=db)
    run_cli("auto-recharge", "set", account.id, "--threshold", "1", "--amount", "5", database_url=db)
    run_cli("keys", "delete", key_hash, database_url=db)
    email = f"member-{account.id}@example.com"
    create_user(gateway, email, "member password", "--account", account.id)
    run_cli("users", "promote", email, database_url=db)

    entries = cli_audit(gateway, account.id)
    manager, _ = gateway.new_key(account.id, management=True)
    assert entries == [e for e in audit(gateway, manager) if e["id"] <= entries[0]["id"]]
    setup = [e for e in entries if e["actor"] == {"type": "admin_api"}]  # the account and key the fixture made
    assert {e["action"] for e in setup} == {"account.create", "key.create"}
    assert all(e["actor"] == {"type": "cli"} for e in entries if e not in setup)
    grant = only(entries, "credits.grant")
    assert grant["after"]["amount_nanos"] == nanos("2.5") and grant["after"]["reason"] == "welcome"
    assert only(entries, "key.create", key_hash)["after"]["name"] == "cli key"
    assert only(entries, "key.disable", key_hash)["after"]["disabled"] is True
    assert only(entries, "limits.update", key_hash)["after"]["requests"] == 5
    recharge = only(entries, "auto_recharge.update")
    assert recharge["before"]["threshold_nanos"] == 0 and recharge["after"]["threshold_nanos"] == NANOS
    assert recharge["after"]["amount_nanos"] == 5 * NANOS
    assert only(entries, "key.delete", key_hash)["after"]["deleted"] is True
    user = only(entries, "user.create")
    assert user["after"] == {"email": email, "role": "member", "is_admin": False}
    promoted = only(entries, "user.promote")
    assert promoted["before"] == {"is_admin": False} and promoted["after"] == {"is_admin": True}
    text = run_cli("audit", account.id, database_url=db).stdout
    assert "cli  user.promote" in text and '{"is_admin":false} -> {"is_admin":true}' in text
    missing = run_cli("audit", "acct_nope", database_url=db, check=False)
    assert missing.returncode == 1 and "acct_nope" in missing.stderr


def test_changes_made_in_the_dashboard_name_the_user(gateway: GatewayServer) -> None:
    email = f"dash-{os.getpid()}-{id(gateway)}@example.com"
    user = signed_up(gateway, email)
    account_id = gateway.admin("GET", f"/accounts?email={email}").json()["data"][0]["id"]
    manager, _ = gateway.new_key(account_id, management=True)
    page = user.get("/keys")
    created = user.post("/keys", data={"csrf_token": csrf(page), "name": "dash key", "limit": "3"})
    assert created.status_code == 200
    entries = audit(gateway, manager)
    signup = only(entries, "user.create")
    assert signup["actor"]["type"] == "user" and signup["actor"]["email"] == email
    key_hash = next(e["target"] for e in entries if e["action"] == "key.create" and e["actor"]["type"] == "user")
    token = csrf(user.get("/keys"))
    user.post(f"/keys/{key_hash}/edit", data={"csrf_token": token, "limit": "4", "limit_reset": "daily"})
    user.post(f"/keys/{key_hash}/disable", data={"csrf_token": token})
    credits = user.get("/credits")
    saved = user.post(
        "/credits/auto-recharge", data={"csrf_token": csrf(credits), "threshold": "1", "amount": "6", "enabled": "0"}
    )
    assert saved.status_code == 303

    entries = audit(gateway, manager)
    by_user = {"type": "user", "id": signup["actor"]["id"], "email": email}
    edit = only(entries, "key.edit", key_hash)
    assert edit["actor"] == by_user
    assert edit["before"]["limit_nanos"] == 3 * NANOS and edit["after"]["limit_nanos"] == 4 * NANOS
    assert only(entries, "key.disable", key_hash)["after"]["disabled"] is True
    recharge = only(entries, "auto_recharge.update")
    assert recharge["actor"] == by_user and recharge["after"]["amount_nanos"] == 6 * NANOS

    # An admin grants from the admin page, and reads it all on the Audit page; members cannot.
    admin_email = f"admin-{account_id}@example.com"
    create_user(gateway, admin_email, "admin password", "--admin")
    admin = signed_in(gateway, admin_email, "admin password")
    granted = admin.post(
        "/admin/grant", data={"csrf_token": csrf(admin.get("/admin")), "account_id": account_id, "amount": "1.25"}
    )
    assert granted.status_code == 200
    grant = only(audit(gateway, manager), "credits.grant")
    assert grant["actor"]["email"] == admin_email and grant["after"]["amount_nanos"] == nanos("1.25")
    page = admin.get("/admin/audit", params={"account": account_id})
    assert page.status_code == 200
    rows = re.findall(r"<tr>\s*<td>", page.text)
    assert len(rows) == len(audit(gateway, manager))
    assert "credits.grant" in page.text and "key.edit" in page.text and admin_email in page.text
    assert user.get("/admin/audit").status_code == 403


def test_saved_cards_and_refunds_are_audited(paying_gateway: GatewayServer, fake_payments: FakePayments) -> None:
    account = paying_gateway.new_account(None)
    manager = owner(paying_gateway, account)
    setup = paying_gateway.post("/credits/auto-recharge/setup", manager, {})
    assert setup.status_code == 200
    session_id = setup.json()["data"]["url"].rsplit("/", 1)[1]
    event = {**fake_payments.sessions[session_id], "customer": "cus_audit", "setup_intent": "seti_audit"}
    assert send_stripe(paying_gateway, stripe_event("checkout.session.completed", event)).json()["outcome"] == "saved"
    put = httpx.put(
        paying_gateway.api + "/credits/auto-recharge",
        headers={"Authorization": f"Bearer {manager}"},
        json={"enabled": True, "threshold": 2, "amount": 10},
    )
    assert put.status_code == 200, put.text

    payment_id = checkout(paying_gateway, account, 10).json()["data"]["id"]
    send_stripe(
        paying_gateway, stripe_event("checkout.session.completed", completed_session(fake_payments, payment_id))
    )
    run_cli(
        "payments",
        "refund",
        payment_id,
        "--amount",
        "1.50",
        database_url=paying_gateway.database_url,
        env=fake_stripe_env(fake_payments),
    )

    entries = audit(paying_gateway, manager)
    card = only(entries, "card.save")
    assert card["actor"] == {"type": "payment_provider", "id": "stripe"}
    assert card["before"]["customer_id"] is None and card["after"]["customer_id"] == "cus_audit"
    assert card["after"]["payment_method_id"]
    enabled = only(entries, "auto_recharge.update")
    assert enabled["actor"]["type"] == "key" and enabled["before"]["enabled"] is False
    assert enabled["after"] == {
        **card["after"],
        "enabled": True,
        "threshold_nanos": 2 * NANOS,
        "amount_nanos": 10 * NANOS,
    }
    refund = only(entries, "payment.refund", payment_id)
    assert refund["actor"] == {"type": "cli"} and refund["after"]["refund_usd"] == "1.50"


def test_the_database_refuses_to_rewrite_the_audit_log(gateway: GatewayServer) -> None:
    account = gateway.new_account("1")
    if gateway.database_url.startswith("sqlite"):
        with sqlite3.connect(gateway.database_url.removeprefix("sqlite:///")) as db:
            for statement in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"):
                with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                    db.execute(statement)
    else:
        import asyncpg

        async def tamper() -> None:
            connection = await asyncpg.connect(gateway.database_url)
            try:
                await connection.execute("UPDATE audit_log SET action = 'x'")
                await connection.execute("DELETE FROM audit_log")
            finally:
                await connection.close()

        asyncio.run(tamper())
    manager, _ = gateway.new_key(account.id, management=True)
    assert only(audit(gateway, manager), "credits.grant")["action"] == "credits.grant"


def test_a_declined_auto_recharge_turned_off_is_audited_as_the_system(
    paying_gateway: GatewayServer, fake_payments: FakePayments
) -> None:
    account = paying_gateway.new_account("0.002")
    manager = owner(paying_gateway, account)
    run_cli(
        "auto-recharge",
        "set",
        account.id,
        "--enabled",
        "--threshold",
        "5",
        "--amount",
        "10",
        "--customer",
        "cus_declined",
        "--payment-method",
        "pm_declined",
        database_url=paying_gateway.database_url,
    )
    body = {"model": "tollway/offline-small", "max_tokens": 5, "messages": [{"role": "user", "content": "/echo hi"}]}
    fake_payments.behaviour.decline_payment_intents = True
    try:
        deadline = time.monotonic() + 10
        turned_off: list[dict[str, Any]] = []
        while not turned_off and time.monotonic() < deadline:
            assert paying_gateway.post("/chat/completions", account.key, body).status_code == 200
            turned_off = [e for e in audit(paying_gateway, manager) if e["action"] == "auto_recharge.disable"]
            time.sleep(0.2)
    finally:
        fake_payments.behaviour.decline_payment_intents = False
    assert len(turned_off) == 1
    entry = turned_off[0]
    assert entry["actor"] == {"type": "system"}
    assert entry["before"]["enabled"] is True and entry["after"]["enabled"] is False
    assert entry["before"]["disabled_reason"] is None and "failed" in entry["after"]["disabled_reason"]
