"""Shared by the payment fault tests: a gateway with the fake Stripe server, and the ledger read from the database."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from tests.conftest import STRIPE_WEBHOOK_SECRET, fake_payments_env, make_database_url
from tests.fakes.payment_servers import FakePayments, stripe_signature
from tests.support import GatewayServer, nanos, run_cli, start_gateway

OFFLINE = {"model": "tollway/offline-small", "max_tokens": 5, "messages": [{"role": "user", "content": "/echo hi"}]}
_event_ids = iter(range(1, 10**9))


@dataclass
class Site:
    gateway: GatewayServer
    database_url: str
    env: dict[str, str]
    directory: Path


def payment_env(fake: FakePayments) -> dict[str, str]:
    return {
        **fake_payments_env(fake),
        "TOLLWAY_AUTO_RECHARGE_CLAIM_TIMEOUT_SECONDS": "1",
        # Fees other than the defaults, to show the settings are the ones applied.
        "TOLLWAY_CARD_FEE_PERCENT": "3",
        "TOLLWAY_CARD_FEE_MIN_USD": "0.50",
        "TOLLWAY_CRYPTO_FEE_PERCENT": "1",
    }


def run_site(kind: str, fake: FakePayments, directory: Path) -> Iterator[Site]:
    """A gateway on a new SQLite or PostgreSQL database, stopped (and the database dropped) afterwards."""
    urls = make_database_url(kind, directory)
    database_url = next(urls)
    env = payment_env(fake)
    holder = Site(start_gateway(database_url, None, directory, env=env), database_url, env, directory)
    try:
        yield holder
    finally:
        holder.gateway.stop()
        for _ in urls:
            pass


def reset(fake: FakePayments) -> None:
    fake.behaviour.intent_failure = None
    fake.behaviour.intent_failures = 0
    fake.behaviour.intent_delay_s = 0.0
    fake.behaviour.decline_payment_intents = False
    fake.behaviour.lookups_unavailable = False


# The ledger, read from the database ------------------------------------------------------------------


def query(database_url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
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


def execute_script(database_url: str, statements: list[str]) -> None:
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
    rows = query(
        site.database_url,
        "SELECT kind, amount_nanos, reference FROM ledger_entries WHERE account_id = $1 ORDER BY id",
        account_id,
    )
    return [(str(kind), int(amount), reference) for kind, amount, reference in rows]


def payment_row(site: Site, payment_id: str) -> dict[str, Any]:
    rows = query(
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


def assert_reconcile_clean(site: Site) -> None:
    """`tollway reconcile` finds every cached figure equal to the ledger."""
    result = run_cli("reconcile", "--json", database_url=site.database_url, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


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


def enable_auto_recharge(site: Site, fake: FakePayments, owner: Owner, customer: str) -> None:
    """Save a card the way the owner does (setup checkout, Stripe's setup event), then turn auto-recharge on."""
    setup = site.gateway.post("/credits/auto-recharge/setup", owner.management_key, {})
    assert setup.status_code == 200, setup.text
    session = fake.sessions[setup.json()["data"]["url"].rsplit("/", 1)[1]]
    saved = send(
        site, stripe_event("checkout.session.completed", {**session, "customer": customer, "setup_intent": "seti_1"})
    )
    assert saved.json()["outcome"] == "saved", saved.text
    enabled = httpx.put(
        site.gateway.api + "/credits/auto-recharge",
        headers={"Authorization": f"Bearer {owner.management_key}"},
        json={"enabled": True, "threshold": 5, "amount": 10},
        timeout=30,
    )
    assert enabled.status_code == 200 and enabled.json()["data"]["has_payment_method"] is True, enabled.text


def auto_state(site: Site, owner: Owner) -> dict[str, Any]:
    response = site.gateway.get("/credits/auto-recharge", owner.management_key)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def auto_payment_ids(site: Site, owner: Owner) -> list[str]:
    rows = query(
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
