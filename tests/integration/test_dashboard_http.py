"""The dashboard over plain HTTP (no JavaScript): redirects, sign-in rules, CSRF, isolation, CSV."""

from __future__ import annotations

import csv
import io
import re

import httpx

from tests.support import GatewayServer, run_cli


def csrf(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert match, page.text[:500]
    return match.group(1)


def signed_up(gateway: GatewayServer, email: str, password: str = "correct horse") -> httpx.Client:
    """Sign up (which answers "now sign in", new email or not), then sign in."""
    client = httpx.Client(base_url=gateway.base_url, timeout=30)
    token = csrf(client.get("/signup"))
    response = client.post("/signup", data={"csrf_token": token, "email": email, "password": password})
    assert response.status_code == 303 and response.headers["location"] == "/login?signed_up=1"
    assert "tw_session" not in response.cookies
    return signed_in(gateway, email, password)


def signed_in(gateway: GatewayServer, email: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=gateway.base_url, timeout=30)
    token = csrf(client.get("/login"))
    response = client.post("/login", data={"csrf_token": token, "email": email, "password": password})
    assert response.status_code == 303 and response.headers["location"] == "/credits", response.text[:300]
    return client


def create_user(gateway: GatewayServer, email: str, password: str, *options: str) -> None:
    """`tollway users create`, the password on stdin (never on the command line)."""
    run_cli(
        "users",
        "create",
        "--email",
        email,
        "--password-stdin",
        *options,
        database_url=gateway.database_url,
        stdin=password + "\n",
    )


def test_pages_redirect_to_login_with_next(gateway: GatewayServer) -> None:
    for path in ("/credits", "/keys", "/activity", "/models", "/admin"):
        response = httpx.get(gateway.base_url + path)
        assert response.status_code == 303 and response.headers["location"] == f"/login?next={path}"
    assert httpx.get(gateway.base_url + "/").headers["location"] == "/login"


def test_sign_up_sign_in_and_sign_out(gateway: GatewayServer) -> None:
    client = signed_up(gateway, "owner-1@example.com")
    cookie = client.cookies.jar
    session = next(c for c in cookie if c.name == "tw_session")
    assert session.has_nonstandard_attr("HttpOnly")
    credits = client.get("/credits")
    assert credits.status_code == 200 and "0.00 USD" in credits.text
    assert client.get("/").headers["location"] == "/credits"
    logout_page = client.get("/logout")
    assert logout_page.status_code == 200
    assert client.post("/logout", data={"csrf_token": "wrong"}).status_code == 403
    assert client.post("/logout", data={"csrf_token": csrf(logout_page)}).status_code == 303
    assert client.get("/credits").status_code == 303

    fresh = httpx.Client(base_url=gateway.base_url)
    token = csrf(fresh.get("/login"))
    bad = fresh.post("/login", data={"csrf_token": token, "email": "owner-1@example.com", "password": "nope nope"})
    assert bad.status_code == 401 and "Invalid email or password" in bad.text
    good = fresh.post(
        "/login",
        data={"csrf_token": token, "email": "owner-1@example.com", "password": "correct horse", "next": "/keys"},
    )
    assert good.status_code == 303 and good.headers["location"] == "/keys"


def test_signup_validation_errors_show_next_to_the_fields(gateway: GatewayServer) -> None:
    client = httpx.Client(base_url=gateway.base_url)
    token = csrf(client.get("/signup"))
    short = client.post("/signup", data={"csrf_token": token, "email": "x@example.com", "password": "short"})
    assert short.status_code == 400 and "at least 8 characters" in short.text
    email = client.post("/signup", data={"csrf_token": token, "email": "not-an-email", "password": "long enough"})
    assert email.status_code == 400 and "is not an email address" in email.text
    missing = client.post("/signup", data={"email": "y@example.com", "password": "long enough"})
    assert missing.status_code == 403


def test_keys_csv_and_isolation_between_accounts(gateway: GatewayServer) -> None:
    alice = signed_up(gateway, "alice@example.com")
    bob = signed_up(gateway, "bob@example.com")
    page = alice.get("/keys")
    created = alice.post(
        "/keys", data={"csrf_token": csrf(page), "name": "laptop", "limit": "1.5", "limit_reset": "monthly"}
    )
    assert created.status_code == 200
    key = re.search(r'id="new-key" readonly value="(sk-tw-v1-[0-9a-f]{64})"', created.text)
    assert key
    usage = httpx.post(
        gateway.api + "/chat/completions",
        headers={"Authorization": f"Bearer {key.group(1)}"},
        json={"model": "tollway/offline-small:free", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert usage.status_code == 200
    listing = alice.get("/keys")
    assert "laptop" in listing.text and key.group(1) not in listing.text  # only the masked label afterwards
    key_hash = re.search(r"/keys/([0-9a-f]{64})/disable", listing.text)
    assert key_hash
    # Bob naming Alice's key: 404 exactly as a key that does not exist, and nothing changes.
    bob_token = csrf(bob.get("/keys"))
    assert bob.post(f"/keys/{key_hash.group(1)}/disable", data={"csrf_token": bob_token}).status_code == 404
    assert bob.post(f"/keys/{'0' * 64}/disable", data={"csrf_token": bob_token}).status_code == 404
    assert (
        httpx.post(
            gateway.api + "/chat/completions",
            headers={"Authorization": f"Bearer {key.group(1)}"},
            json={"model": "tollway/offline-small:free", "messages": [{"role": "user", "content": "hi"}]},
        ).status_code
        == 200
    )
    exported = alice.get("/activity/generations.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert list(rows[0]) == [
        "id",
        "created_at",
        "model",
        "provider",
        "tokens_prompt",
        "tokens_completion",
        "tokens_cached",
        "tokens_cache_write",
        "tokens_reasoning",
        "images",
        "cost",
        "cache_discount",
        "usage_estimated",
        "latency_ms",
        "status",
    ]
    assert {r["id"] for r in rows} >= {usage.json()["id"]}
    assert rows[0]["cost"] == "0" and rows[0]["usage_estimated"] == "false"
    daily = list(csv.reader(io.StringIO(alice.get("/activity/daily.csv").text)))
    assert daily[0] == ["date", "model", "requests", "tokens", "cost"] and int(daily[1][2]) == 2
    assert "alice" not in bob.get("/activity/generations.csv").text


def test_admin_page_needs_an_admin_and_grants(gateway: GatewayServer) -> None:
    member = signed_up(gateway, "member@example.com")
    assert member.get("/admin").status_code == 403
    create_user(gateway, "root@example.com", "admin password", "--admin")
    admin = signed_in(gateway, "root@example.com", "admin password")
    page = admin.get("/admin")
    assert page.status_code == 200 and "member@example.com" in page.text
    account_id = re.search(r"<code>(acct_[0-9a-f]+)</code></td><td>member@example.com", page.text)
    assert account_id
    granted = admin.post(
        "/admin/grant",
        data={"csrf_token": csrf(page), "account_id": account_id.group(1), "amount": "3.25", "reason": "welcome"},
    )
    assert granted.status_code == 200 and "Granted 3.25 USD" in granted.text
    assert 'id="balance">3.25 USD' in member.get("/credits").text
    bad = admin.post("/admin/grant", data={"csrf_token": csrf(page), "account_id": account_id.group(1), "amount": "-1"})
    assert bad.status_code == 400
