"""Key expiry: set on create and PATCH (API, CLI), explained on /balance a day ahead, then 401 key_expired.

Time is moved, not waited for: a second server on the same database runs with its clock two days ahead
(settings.clock_offset_seconds), so "later" is a request away.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.integration.test_dashboard_http import csrf, signed_up
from tests.support import GatewayServer, nanos, run_cli, start_gateway, write_config

HELLO = [{"role": "user", "content": "Say hello"}]
TWO_DAYS_S = 2 * 86_400


@pytest.fixture(scope="module")
def servers(
    upstream: FakeOpenAIUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayServer, GatewayServer]]:
    directory = tmp_path_factory.mktemp("expiry")
    config = write_config(directory / "config.yaml", upstream.base_url)
    database_url = f"sqlite:///{directory / 'expiry.db'}"
    now = start_gateway(database_url, config, directory)
    later = start_gateway(database_url, config, directory, env={"TOLLWAY_CLOCK_OFFSET_SECONDS": str(TWO_DAYS_S)})
    yield now, later
    later.stop()
    now.stop()


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def codes(server: GatewayServer, key: str) -> list[str]:
    response = server.get("/balance", key)
    assert response.status_code == 200, response.text
    return [e["code"] for e in response.json()["data"]["explanations"]]


def expired_refusal(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 401, response.text
    explanation: dict[str, str] = response.json()["error"]["metadata"]["explanation"]
    assert explanation["code"] == "key_expired"
    return explanation


def test_a_key_is_explained_a_day_ahead_then_refused_with_key_expired(
    servers: tuple[GatewayServer, GatewayServer],
) -> None:
    now, later = servers
    account = now.new_account("5")
    manage, _ = now.new_key(account.id, management=True)
    soon_at = datetime.now(UTC) + timedelta(hours=12)
    soon = now.post("/keys", manage, {"name": "soon", "expires_at": iso(soon_at)})
    far = now.post("/keys", manage, {"name": "far", "expires_at": iso(datetime.now(UTC) + timedelta(days=2.5))})
    assert soon.status_code == far.status_code == 201, (soon.text, far.text)
    assert soon.json()["data"]["expires_at"] == iso(soon_at).replace("Z", ".000Z")
    soon_key, far_key = soon.json()["key"], far.json()["key"]

    assert "key_expires_soon" in codes(now, soon_key)
    assert "key_expires_soon" not in codes(now, far_key)
    explained = now.get("/balance", soon_key).json()["data"]["explanations"]
    notice = next(e for e in explained if e["code"] == "key_expires_soon")
    assert notice["expires_at"] == soon.json()["data"]["expires_at"] and "401 key_expired" in notice["message"]
    assert now.get("/balance", soon_key).json()["data"]["key"]["expires_at"] == notice["expires_at"]
    assert now.post("/chat/completions", soon_key, {"model": "fake/chat", "messages": HELLO}).status_code == 200
    balance_before = now.balance(account.id)["balance"]

    # Two days on: the first key has expired everywhere it is used; the second is within its last day.
    for path in ("/key", "/balance", "/credits"):
        expired_refusal(later.get(path, soon_key))
    refused = later.post("/chat/completions", soon_key, {"model": "fake/chat", "messages": HELLO})
    explanation = expired_refusal(refused)
    assert explanation["expires_at"] == soon.json()["data"]["expires_at"]
    with pytest.raises(openai.AuthenticationError) as caught:
        openai.OpenAI(base_url=later.api, api_key=soon_key, max_retries=0).chat.completions.create(
            model="fake/chat", messages=[{"role": "user", "content": "hi"}]
        )
    assert "expired" in str(caught.value)
    assert now.balance(account.id)["balance"] == balance_before  # the ledger never moved
    assert "key_expires_soon" in codes(later, far_key)

    # A management key moves the expiry: the key works again, then never expires.
    key_hash = soon.json()["data"]["hash"]
    moved_to = iso(datetime.now(UTC) + timedelta(days=10))
    patched = httpx.patch(
        later.api + f"/keys/{key_hash}",
        json={"expires_at": moved_to},
        headers={"Authorization": f"Bearer {manage}"},
        timeout=10,
    )
    assert patched.status_code == 200, patched.text
    assert later.get("/key", soon_key).status_code == 200
    assert "key_expires_soon" not in codes(later, soon_key)
    cleared = httpx.patch(
        later.api + f"/keys/{key_hash}",
        json={"expires_at": None},
        headers={"Authorization": f"Bearer {manage}"},
        timeout=10,
    )
    assert cleared.status_code == 200 and cleared.json()["data"]["expires_at"] is None


def test_expiry_from_the_admin_api_and_the_cli(servers: tuple[GatewayServer, GatewayServer]) -> None:
    now, later = servers
    account = now.new_account("1")
    expires = iso(datetime.now(UTC) + timedelta(days=1, hours=1))
    key, _hash = now.new_key(account.id, expires_at=expires)
    assert now.get("/key", key).json()["data"]["expires_at"] == expires.replace("Z", ".000Z")
    expired_refusal(later.get("/key", key))
    bad = now.admin("POST", f"/accounts/{account.id}/keys", {"name": "x", "expires_at": "2001-01-01T00:00:00Z"})
    assert bad.status_code == 400 and bad.json()["error"]["metadata"]["field"] == "expires_at"

    url = now.database_url
    created = run_cli(
        "keys", "create", account.id, "--name", "cli", "--expires-at", expires, "--json", database_url=url
    )
    data = json.loads(created.stdout)
    assert data["data"]["expires_at"] == expires.replace("Z", ".000Z")
    expired_refusal(later.get("/key", data["key"]))
    listed = run_cli("keys", "list", account.id, database_url=url).stdout
    assert f"expires={expires.replace('Z', '.000Z')}" in listed
    never = run_cli("keys", "expire", data["data"]["hash"], "--at", "never", "--json", database_url=url)
    assert json.loads(never.stdout)["expires_at"] is None
    refused = run_cli(
        "keys",
        "create",
        account.id,
        "--name",
        "old",
        "--expires-at",
        "2001-01-01T00:00:00Z",
        database_url=url,
        check=False,
    )
    assert refused.returncode != 0 and "expires_at" in refused.stderr
    assert nanos(now.balance(account.id)["balance"]) == nanos("1")


def test_the_dashboard_sets_and_changes_a_key_expiry(servers: tuple[GatewayServer, GatewayServer]) -> None:
    now, later = servers
    email = f"expiry-{datetime.now(UTC).timestamp()}@example.com"
    client = signed_up(now, email)
    moment = (datetime.now(UTC) + timedelta(days=1, hours=6)).replace(second=0, microsecond=0)
    field = moment.strftime("%Y-%m-%dT%H:%M")  # what a datetime-local input sends, read as UTC
    created = client.post("/keys", data={"csrf_token": csrf(client.get("/keys")), "name": "web", "expires_at": field})
    key = re.search(r'id="new-key" readonly value="([^"]+)"', created.text)
    assert key, created.text[:500]
    assert now.get("/key", key.group(1)).json()["data"]["expires_at"] == iso(moment).replace("Z", ".000Z")
    page = client.get("/keys").text
    assert moment.strftime("%Y-%m-%d %H:%M") in page
    expired_refusal(later.get("/key", key.group(1)))
    assert re.search(r"<td>\s*web\s*</td>", page) and ">active</td>" in page
    later_page = httpx.get(later.base_url + "/keys", cookies=dict(client.cookies), timeout=30).text
    assert ">expired</td>" in later_page  # two days on, the same page says so

    key_hash = now.get("/key", key.group(1)).json()["data"]["hash"]
    refused = client.post(
        f"/keys/{key_hash}/edit",
        data={
            "csrf_token": csrf(client.get("/keys")),
            "limit": "",
            "limit_reset": "",
            "expires_at": "2001-01-01T00:00",
        },
    )
    assert refused.status_code == 400 and "not in the future" in refused.text
    cleared = client.post(
        f"/keys/{key_hash}/edit",
        data={"csrf_token": csrf(client.get("/keys")), "limit": "", "limit_reset": "", "expires_at": ""},
    )
    assert cleared.status_code in (200, 303)
    assert now.get("/key", key.group(1)).json()["data"]["expires_at"] is None
    bad = client.post(
        "/keys", data={"csrf_token": csrf(client.get("/keys")), "name": "web2", "expires_at": "tomorrow-ish"}
    )
    assert bad.status_code == 400 and "is not an ISO-8601 time" in bad.text
