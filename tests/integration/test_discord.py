"""Discord's HTTP interactions and the dashboard's Help page: signatures, linking by one-time code, answers.

Interactions are signed with a real Ed25519 key whose public half the gateway is configured with, as
Discord signs them; `tollway discord register` is pointed at a loopback fake of Discord's API.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from nacl.signing import SigningKey

from tests.fakes.loopback import LoopbackServer
from tests.integration.test_dashboard_http import csrf, signed_up
from tests.support import GatewayServer, run_cli, start_gateway

SIGNING_KEY = SigningKey.generate()
PUBLIC_KEY = SIGNING_KEY.verify_key.encode().hex()
INTERACTIONS = "/integrations/discord/interactions"


@pytest.fixture(scope="module")
def linked_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("discord")
    server = start_gateway(
        f"sqlite:///{directory / 'discord.db'}",
        None,
        directory,
        env={"TOLLWAY_DISCORD_PUBLIC_KEY": PUBLIC_KEY, "TOLLWAY_ASSISTANT_REQUESTS_PER_MINUTE": "1000"},
    )
    yield server
    server.stop()


def send(
    gateway: GatewayServer, payload: dict[str, Any], key: SigningKey = SIGNING_KEY, **headers: str
) -> httpx.Response:
    body = orjson.dumps(payload)
    timestamp = str(int(time.time()))
    signature = key.sign(timestamp.encode() + body).signature.hex()
    sent = {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": timestamp, "Content-Type": "application/json"}
    sent.update(headers)
    return httpx.post(gateway.base_url + INTERACTIONS, content=body, headers=sent, timeout=30)


def command(name: str, user_id: str, in_guild: bool = True, **options: str) -> dict[str, Any]:
    data: dict[str, Any] = {"id": "1", "name": name, "type": 1}
    if options:
        data["options"] = [{"name": k, "type": 3, "value": v} for k, v in options.items()]
    user = {"id": user_id, "username": f"user{user_id}"}
    who = {"member": {"user": user}, "guild_id": "42"} if in_guild else {"user": user}
    return {"id": "9", "application_id": "77", "type": 2, "token": "t", "version": 1, "data": data, **who}


def message(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == 4 and body["data"]["flags"] == 64  # an ephemeral channel message
    return str(body["data"]["content"])


def dashboard_user(gateway: GatewayServer, credits_usd: str) -> tuple[httpx.Client, str]:
    """A signed-in dashboard user whose account holds `credits_usd`; (client, account id)."""
    email = f"discord-{time.monotonic_ns()}@example.com"
    client = signed_up(gateway, email)
    account_id = gateway.admin("GET", f"/accounts?email={email}").json()["data"][0]["id"]
    assert gateway.admin("POST", f"/accounts/{account_id}/credits", {"amount": credits_usd}).status_code == 201
    return client, account_id


def link_code(client: httpx.Client) -> str:
    page = client.post("/help/discord-code", data={"csrf_token": csrf(client.get("/help"))})
    assert page.status_code == 200
    found = re.search(r"Your code: <strong>([A-Z0-9]{5}-[A-Z0-9]{5})</strong>", page.text)
    assert found, page.text[-1500:]
    return found.group(1)


def test_signed_ping_is_answered_and_forgeries_are_refused(linked_gateway: GatewayServer) -> None:
    pong = send(linked_gateway, {"type": 1})
    assert pong.status_code == 200 and pong.json() == {"type": 1}
    assert send(linked_gateway, {"type": 1}, key=SigningKey.generate()).status_code == 401
    body = orjson.dumps({"type": 1})
    url = linked_gateway.base_url + INTERACTIONS
    assert httpx.post(url, content=body, timeout=30).status_code == 401
    timestamp = str(int(time.time()))
    good = SIGNING_KEY.sign(timestamp.encode() + body).signature.hex()
    cases = [
        {"X-Signature-Ed25519": good, "X-Signature-Timestamp": str(int(timestamp) + 1)},  # timestamp changed
        {"X-Signature-Ed25519": "zz" * 64, "X-Signature-Timestamp": timestamp},
        {"X-Signature-Ed25519": good[:-2], "X-Signature-Timestamp": timestamp},
        {"X-Signature-Ed25519": "", "X-Signature-Timestamp": timestamp},
    ]
    for headers in cases:
        assert httpx.post(url, content=body, headers=headers, timeout=30).status_code == 401, headers
    tampered = httpx.post(
        url,
        content=orjson.dumps(command("balance", "1")),
        headers={"X-Signature-Ed25519": good, "X-Signature-Timestamp": timestamp},
        timeout=30,
    )
    assert tampered.status_code == 401


def test_unlinked_user_gets_instructions_never_figures(linked_gateway: GatewayServer) -> None:
    dashboard_user(linked_gateway, "6.43")  # someone else's money exists on this gateway
    for interaction in (command("balance", "1001"), command("ask", "1001", question="do I have a balance?")):
        text = message(send(linked_gateway, interaction))
        assert "not linked" in text and "/link" in text
        assert "USD" not in text


def test_link_then_balance_then_replayed_code_then_unlink(linked_gateway: GatewayServer) -> None:
    client, account_id = dashboard_user(linked_gateway, "7.25")
    # The Help page shows a code at once, the same one until it is used; a new one replaces it.
    shown = re.search(r"Your code: <strong>([A-Z0-9]{5}-[A-Z0-9]{5})</strong>", client.get("/help").text)
    assert shown and shown.group(1) in client.get("/help").text
    code = link_code(client)
    assert code != shown.group(1) and code in client.get("/help").text
    assert "unknown, already used or expired" in message(
        send(linked_gateway, command("link", "2002", code=shown.group(1)))
    )
    assert "Linked" in message(send(linked_gateway, command("link", "2002", code=code)))

    balance = message(send(linked_gateway, command("balance", "2002")))
    assert "Yes: you have 7.25 USD" in balance
    in_dm = message(send(linked_gateway, command("ask", "2002", in_guild=False, question="why 429 on a free model")))
    assert "free" in in_dm and "7.25 USD" in in_dm

    # The same code again, from another Discord user or the same one: refused, nothing linked.
    replay = message(send(linked_gateway, command("link", "3003", code=code)))
    assert "unknown, already used or expired" in replay
    assert "not linked" in message(send(linked_gateway, command("balance", "3003")))
    assert "unknown, already used or expired" in message(send(linked_gateway, command("link", "2002", code=code)))
    assert "unknown, already used or expired" in message(
        send(linked_gateway, command("link", "3003", code="AAAAA-BBBBB"))
    )

    assert code not in client.get("/help").text  # used: the page shows a fresh one
    assert message(send(linked_gateway, command("unlink", "2002"))) == "Unlinked."
    assert "not linked" in message(send(linked_gateway, command("balance", "2002")))
    assert account_id not in balance


def test_link_attempts_are_limited(linked_gateway: GatewayServer) -> None:
    answers = [message(send(linked_gateway, command("link", "4004", code=f"WRONG-{i:05d}"))) for i in range(7)]
    assert "Too many link attempts" in answers[-1]


def test_help_page_works_without_javascript(linked_gateway: GatewayServer) -> None:
    client, _account_id = dashboard_user(linked_gateway, "3.10")
    credits = client.get("/credits")
    assert '<a href="/help">' in credits.text
    page = client.get("/help")
    assert page.status_code == 200 and 'name="question"' in page.text
    token = csrf(page)
    first = client.post("/help", data={"csrf_token": token, "question": "do I have a balance?", "conversation": "[]"})
    assert first.status_code == 200
    assert "Yes: you have 3.10 USD" in first.text
    conversation = re.search(r'name="conversation" value="([^"]*)"', first.text)
    assert conversation
    history = conversation.group(1).replace("&#34;", '"').replace("&quot;", '"').replace("&#39;", "'")
    history = history.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    second = client.post(
        "/help", data={"csrf_token": token, "question": "how do I buy credits", "conversation": history}
    )
    assert second.status_code == 200
    assert second.text.count('class="turn user"') == 2 and second.text.count('class="turn assistant"') == 2
    assert client.post("/help", data={"csrf_token": "wrong", "question": "hi"}).status_code == 403
    empty = client.post("/help", data={"csrf_token": token, "question": "  ", "conversation": "not json"})
    assert empty.status_code == 400 and 'role="alert"' in empty.text
    hostile = client.post(
        "/help", data={"csrf_token": token, "question": "<script>alert(1)</script> balance?", "conversation": "[]"}
    )
    assert "<script>alert(1)</script>" not in hostile.text and "&lt;script&gt;" in hostile.text
    assert httpx.get(linked_gateway.base_url + "/help").status_code in (303, 200)


class FakeDiscordApi(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str, Any]] = []

        self.bulk = True  # False: like an API without the bulk overwrite, one POST per command

    def routes(self, app: web.Application) -> None:
        app.router.add_put("/api/v10/applications/{app_id}/commands", self._put)
        app.router.add_post("/api/v10/applications/{app_id}/commands", self._post)

    async def _put(self, request: web.Request) -> web.Response:
        if not self.bulk:
            return web.json_response({"message": "405: Method Not Allowed", "code": 0}, status=405)
        body = await request.json()
        self.calls.append((request.match_info["app_id"], request.headers.get("Authorization", ""), body))
        if request.headers.get("Authorization") != "Bot good-token":
            return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        return web.json_response([{**c, "id": str(i)} for i, c in enumerate(body)])

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append((request.match_info["app_id"], request.headers.get("Authorization", ""), [body]))
        return web.json_response({**body, "id": "1"}, status=201)


def test_discord_register_puts_the_four_commands(
    linked_gateway: GatewayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeDiscordApi().start()
    try:
        monkeypatch.setenv("TOLLWAY_DISCORD_API_BASE", fake.base_url + "/api/v10")
        monkeypatch.setenv("TOLLWAY_DISCORD_APPLICATION_ID", "123456")
        monkeypatch.setenv("TOLLWAY_DISCORD_BOT_TOKEN", "good-token")
        result = run_cli("discord", "register", "--json", database_url=linked_gateway.database_url)
        assert json.loads(result.stdout) == {"registered": ["balance", "ask", "link", "unlink"]}
        app_id, authorization, commands = fake.calls[-1]
        assert (app_id, authorization) == ("123456", "Bot good-token")
        ask = next(c for c in commands if c["name"] == "ask")
        assert ask["options"][0]["name"] == "question" and ask["options"][0]["required"] is True
        monkeypatch.setenv("TOLLWAY_DISCORD_BOT_TOKEN", "bad-token")
        refused = run_cli("discord", "register", database_url=linked_gateway.database_url, check=False)
        assert refused.returncode == 1 and "401" in refused.stderr
        fake.bulk = False
        fake.calls.clear()
        run_cli("discord", "register", database_url=linked_gateway.database_url)
        assert [call[2][0]["name"] for call in fake.calls] == ["balance", "ask", "link", "unlink"]
    finally:
        fake.stop()


def test_hostile_interactions(linked_gateway: GatewayServer) -> None:
    url = linked_gateway.base_url + INTERACTIONS

    def signed(body: bytes) -> httpx.Response:
        timestamp = str(int(time.time()))
        signature = SIGNING_KEY.sign(timestamp.encode() + body).signature.hex()
        headers = {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": timestamp}
        return httpx.post(url, content=body, headers=headers, timeout=30)

    assert signed(b"{not json").status_code == 400
    assert signed(b"[1, 2]").status_code == 400
    assert signed(orjson.dumps({"type": 3})).status_code == 400  # a component interaction: not handled
    assert signed(b"x" * (70 * 1024)).status_code == 401  # larger than any interaction: refused unread
    no_user = command("balance", "5005")
    del no_user["member"]
    assert "could not tell who" in message(send(linked_gateway, no_user))
    forged_id = command("balance", "5005")
    forged_id["member"]["user"]["id"] = "../../admin"
    assert "could not tell who" in message(send(linked_gateway, forged_id))
    assert "Unknown command" in message(send(linked_gateway, command("grant", "5005", amount="100")))
    too_long = message(send(linked_gateway, command("ask", "5005", question="x" * 5000)))
    assert "not linked" in too_long  # nothing is read for an unlinked user, however long the question
