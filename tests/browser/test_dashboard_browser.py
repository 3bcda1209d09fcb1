"""The dashboard in a real browser (Debian's chromium through Playwright), with a screenshot of each page.

Screenshots go to tests/artifacts/screenshots/ (untracked); `make screenshots` copies them to docs/screenshots/,
which the README links to, so `make test` leaves tracked files untouched.
"""

from __future__ import annotations

import csv
import io
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import STRIPE_WEBHOOK_SECRET
from tests.fakes.payment_servers import FakePayments, stripe_signature
from tests.support import GatewayServer

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "tests" / "artifacts" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield instance
        instance.close()


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_a_new_user_signs_up_creates_a_key_uses_it_and_buys_credits(
    browser: Browser, paying_gateway: GatewayServer, fake_payments: FakePayments
) -> None:
    base = paying_gateway.base_url
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(base + "/credits")
    assert page.url.endswith("/login?next=/credits")
    shot(page, "login")
    page.goto(base + "/signup")
    email = f"browser-{time.time_ns()}@example.com"
    page.fill("#email", email)
    page.fill("#password", "a long password")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/login?signed_up=1")
    page.fill("#email", email)
    page.fill("#password", "a long password")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/credits")
    assert page.inner_text("#balance") == "0.00 USD"

    page.goto(base + "/keys")
    page.fill("#name", "browser key")
    page.fill("#limit", "2")
    page.select_option("#limit_reset", "monthly")
    page.click("text=Create key")
    key = page.input_value("#new-key")
    assert key.startswith("sk-tw-v1-")
    shot(page, "keys")
    answer = httpx.post(
        paying_gateway.api + "/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "tollway/offline-small:free", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert answer.status_code == 200
    generation_id = answer.json()["id"]
    started = time.monotonic()
    page.goto(base + "/activity")
    while (
        generation_id[:12] not in page.content()
        and "tollway/offline-small:free" not in page.inner_text("#generations")
        and time.monotonic() - started < 1.0
    ):
        page.reload()
    assert "tollway/offline-small:free" in page.inner_text("#generations")
    shot(page, "activity")
    exported = page.request.get(base + "/activity/generations.csv")
    rows = list(csv.DictReader(io.StringIO(exported.text())))
    assert rows[0]["id"] == generation_id and rows[0]["model"] == "tollway/offline-small:free"

    page.goto(base + "/credits")
    page.fill("#amount", "12")
    with page.expect_navigation():
        page.click("text=Buy with card")
    assert page.url.startswith(fake_payments.stripe_base + "/pay/cs_test_")
    session_id = page.url.rsplit("/", 1)[1]
    page.goto(base + "/credits")
    assert "Pending payments" in page.content() and "12.00 USD by card" in page.content()
    assert "pending" in page.inner_text("#summary")
    shot(page, "credits-pending")
    session = {**fake_payments.sessions[session_id], "payment_status": "paid", "payment_intent": "pi_browser"}
    payload = orjson.dumps(
        {"id": f"evt_browser_{session_id}", "type": "checkout.session.completed", "data": {"object": session}}
    )
    webhook = httpx.post(
        paying_gateway.api + "/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": stripe_signature(payload, STRIPE_WEBHOOK_SECRET)},
    )
    assert webhook.json()["outcome"] == "credited"
    page.reload()
    assert page.inner_text("#balance") == "12.00 USD"
    assert "succeeded" in page.inner_text("#purchases")
    shot(page, "credits")

    page.check("input[name=enabled]")
    page.fill("#threshold", "2")
    page.fill("#recharge_amount", "10")
    page.click("text=Save auto-recharge")
    assert "Save a card first" in page.content()

    page.goto(base + "/models")
    assert "tollway/offline-small" in page.inner_text("#models")
    shot(page, "models")
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    phone.context.add_cookies(page.context.cookies())
    phone.goto(base + "/credits")
    shot(phone, "credits-phone")
    phone.close()
    page.close()


def test_reading_another_accounts_key_is_refused(browser: Browser, paying_gateway: GatewayServer) -> None:
    owner = paying_gateway.new_account("1")
    page = browser.new_page()
    page.goto(paying_gateway.base_url + "/signup")
    email = f"intruder-{time.time_ns()}@example.com"
    page.fill("#email", email)
    page.fill("#password", "a long password")
    page.click("button[type=submit]")
    page.wait_for_url(paying_gateway.base_url + "/login?signed_up=1")
    page.fill("#email", email)
    page.fill("#password", "a long password")
    page.click("button[type=submit]")
    page.wait_for_url(paying_gateway.base_url + "/credits")
    token = page.input_value("input[name=csrf_token] >> nth=0")
    response = page.request.post(paying_gateway.base_url + f"/keys/{owner.key_hash}/delete", form={"csrf_token": token})
    assert response.status == 404
    assert (
        paying_gateway.post(
            "/chat/completions",
            owner.key,
            {"model": "tollway/offline-small", "messages": [{"role": "user", "content": "still mine"}]},
        ).status_code
        == 200
    )
    page.close()
