"""One scenario per confusion users hit: the same code and figures from /balance, the refusal, and the CLI."""

from __future__ import annotations

import json
import time

from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support import GatewayServer, nanos, run_cli

ECHO = {
    "model": "tollway/offline-small",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "/echo " + " ".join(f"w{i}" for i in range(30))}],
}
ECHO_COST = 36 * 1000 + 20 * 2000
FREE = {"model": "tollway/offline-small:free", "max_tokens": 5, "messages": [{"role": "user", "content": "/echo hi"}]}

BALANCE_FIELDS = {
    "balance",
    "total_credits",
    "total_usage",
    "held_in_flight",
    "pending_payments",
    "key",
    "spendable_now",
    "free_models",
    "rate_limits",
    "last_refusals",
    "summary",
    "explanations",
}


def balance(gateway: GatewayServer, key: str) -> dict[str, object]:
    response = gateway.get("/balance", key)
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()["data"]
    assert set(data) >= BALANCE_FIELDS
    return data


def test_happy_case_says_nothing_limits_the_key(gateway: GatewayServer) -> None:
    account = gateway.new_account("5")
    data = balance(gateway, account.key)
    assert data["summary"] == "You have 5.00 USD and nothing limits this key."
    assert data["explanations"] == []
    assert data["spendable_now"] == 5
    assert data["free_models"] == {
        "limit_per_day": 50,
        "used_today": 0,
        "resets_at": data["free_models"]["resets_at"],  # type: ignore[index]
        "unlock_at_purchased": 10,
    }
    cli = json.loads(run_cli("whoami", "--key", account.key, "--json", database_url=gateway.database_url).stdout)
    # Without Redis the CLI cannot see the server's limit counters, so it never claims none is reached.
    assert cli["summary"].startswith("You have 5.00 USD; rate limits apply (free-models-per-min")
    assert [e["code"] for e in cli["explanations"]] == ["limits_not_visible"]


def test_key_cap_is_not_the_balance(gateway: GatewayServer) -> None:
    account = gateway.new_account("5", limit=f"{ECHO_COST / 1e9:.9f}", limit_reset="monthly")
    assert gateway.post("/chat/completions", account.key, ECHO).status_code == 200
    refused = gateway.post("/chat/completions", account.key, ECHO)
    assert refused.status_code == 403
    explanation = refused.json()["error"]["metadata"]["explanation"]
    assert explanation["code"] == "key_cap_exhausted"

    data = balance(gateway, account.key)
    assert data["explanations"][0] == explanation  # type: ignore[index]
    assert data["spendable_now"] == 0
    assert nanos(data["balance"]) == 5 * 10**9 - ECHO_COST  # type: ignore[arg-type]
    summary = str(data["summary"])
    assert summary.startswith("You have 4.999924 USD; this key's monthly cap of 0.000076 USD is used up until ")
    assert "00:00 UTC" in summary and "raise its cap or use another key" in summary
    last = data["last_refusals"][0]  # type: ignore[index]
    assert last["status"] == 403 and last["reason"] == "key_cap_exhausted"
    assert last["request_id"] == refused.headers["X-Request-Id"]

    whoami = run_cli("whoami", "--key", account.key, database_url=gateway.database_url).stdout
    assert summary in whoami
    explained = json.loads(
        run_cli("balance", account.id, "--explain", "--json", database_url=gateway.database_url).stdout
    )
    assert explained[0]["explanations"][0]["code"] == "key_cap_exhausted"
    assert explained[0]["summary"] == summary


def test_credits_are_real_figures_and_a_zero_balance_still_serves_free_models(gateway: GatewayServer) -> None:
    account = gateway.new_account(None)
    credits = gateway.get("/credits", account.key).json()["data"]
    assert credits == {"total_credits": 0, "total_usage": 0}
    refused = gateway.post("/chat/completions", account.key, ECHO)
    assert refused.status_code == 402
    explanation = refused.json()["error"]["metadata"]["explanation"]
    data = balance(gateway, account.key)
    assert data["explanations"][0] == explanation  # type: ignore[index]
    assert explanation["code"] == "balance_empty"
    assert gateway.post("/chat/completions", account.key, FREE).status_code == 200  # no "can only afford 0"


def test_small_balance_lowers_max_tokens_instead_of_refusing(gateway: GatewayServer) -> None:
    account = gateway.new_account("0.0001")
    before = balance(gateway, account.key)
    codes = [e["code"] for e in before["explanations"]]  # type: ignore[union-attr]
    # Lowered when max_tokens is left open; refused when a larger max_tokens is asked for.
    assert codes == ["max_tokens_lowered", "insufficient_for_request"]
    body = {"model": "tollway/offline-small", "messages": [{"role": "user", "content": "hello"}]}
    refused = gateway.post("/chat/completions", account.key, {**body, "max_tokens": 1000})
    assert refused.status_code == 402
    assert refused.json()["error"]["metadata"]["explanation"]["code"] == "insufficient_for_request"
    response = gateway.post("/chat/completions", account.key, body)
    assert response.status_code == 200
    assert 16 <= int(response.headers["X-Tollway-Max-Tokens-Capped"]) < 1024


def test_free_daily_cap_explained(small_free_tier: GatewayServer) -> None:
    gateway = small_free_tier
    account = gateway.new_account("1")
    for _ in range(5):
        gateway.post("/chat/completions", account.key, FREE)
    refused = gateway.post("/chat/completions", account.key, FREE)
    assert refused.status_code == 429
    explanation = refused.json()["error"]["metadata"]["explanation"]
    data = balance(gateway, account.key)
    assert explanation in data["explanations"]  # type: ignore[operator]
    assert explanation["code"] == "free_daily_cap"
    free = data["free_models"]
    assert free["limit_per_day"] == 5 and free["used_today"] == 5 and free["unlock_at_purchased"] == 10  # type: ignore[index]
    assert str(data["summary"]).startswith("You have 1.00 USD; you have used all 5 free-model requests for today")


def test_negative_balance_explained_everywhere(gateway: GatewayServer, upstream: FakeOpenAIUpstream) -> None:
    account = gateway.new_account("0.001")
    upstream.behaviour.prompt_tokens = 5_000
    assert (
        gateway.post(
            "/chat/completions", account.key, {"model": "fake/chat", "messages": [{"role": "user", "content": "x"}]}
        ).status_code
        == 200
    )
    refused = gateway.post("/chat/completions", account.key, FREE)
    assert refused.status_code == 402
    explanation = refused.json()["error"]["metadata"]["explanation"]
    assert explanation["code"] == "balance_negative"
    data = balance(gateway, account.key)
    assert data["explanations"][0] == explanation  # type: ignore[index]
    assert data["spendable_now"] == 0
    time.sleep(0.3)  # the refusal log is written in the background
    explained = json.loads(
        run_cli("balance", account.id, "--explain", "--json", database_url=gateway.database_url).stdout
    )
    assert explained[0]["explanations"][0] == explanation
    assert explained[0]["last_refusals"][0]["reason"] == "balance_negative"
