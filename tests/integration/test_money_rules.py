"""Holds, caps and refusals as a user meets them: 402 for the account, 403 for a used-up key cap."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support import GatewayServer, nanos, run_cli

# "/echo" plus 30 words: the offline model answers with exactly these words, so costs are known.
ECHO = "/echo " + " ".join(f"w{i}" for i in range(30))
ECHO_PROMPT_TOKENS = 32 + 4  # "/", "echo", 30 words, plus 4 per message
PROMPT_NANOS, COMPLETION_NANOS = 1000, 2000  # the offline model's default prices per token


def echo_request(max_tokens: int | None = 20, model: str = "tollway/offline-small") -> dict[str, object]:
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": ECHO}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def cost_of(completion_tokens: int) -> int:
    return ECHO_PROMPT_TOKENS * PROMPT_NANOS + completion_tokens * COMPLETION_NANOS


def usd(nanos_amount: int) -> str:
    return f"{nanos_amount / 10**9:.9f}"


def test_concurrent_requests_never_spend_money_that_is_not_there(gateway: GatewayServer) -> None:
    per_request = cost_of(20)
    account = gateway.new_account(usd(50 * per_request))

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            return await asyncio.gather(
                *[
                    client.post(
                        gateway.api + "/chat/completions",
                        json=echo_request(20),
                        headers={"Authorization": f"Bearer {account.key}"},
                    )
                    for _ in range(200)
                ]
            )

    responses = asyncio.run(fire())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 402}
    ok = [r for r in responses if r.status_code == 200]
    # Each request costs exactly its hold, so exactly the 50 affordable ones run.
    assert len(ok) == 50
    billed = sum(nanos(r.json()["usage"]["cost"]) for r in ok)
    balance = gateway.balance(account.id)
    assert nanos(balance["balance"]) >= 0
    assert nanos(balance["total_usage"]) == billed == 50 * per_request
    assert nanos(balance["held_in_flight"]) == 0
    refused = [r for r in responses if r.status_code == 402]
    assert all(r.json()["error"]["metadata"]["limit_source"] == "account" for r in refused)


def test_max_tokens_is_lowered_to_what_the_balance_pays_for(gateway: GatewayServer) -> None:
    account = gateway.new_account(usd(cost_of(32)))
    response = gateway.post("/chat/completions", account.key, echo_request(max_tokens=None))
    assert response.status_code == 200, response.text
    assert response.headers["X-Tollway-Max-Tokens-Capped"] == "32"
    assert response.json()["usage"]["completion_tokens"] == 30
    generation = gateway.get("/generation", account.key, id=response.json()["id"]).json()["data"]
    assert generation["max_tokens_capped"] == 32


def test_fewer_than_16_affordable_tokens_is_a_402_with_figures(gateway: GatewayServer) -> None:
    account = gateway.new_account(usd(cost_of(15)))
    response = gateway.post("/chat/completions", account.key, echo_request(max_tokens=None))
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["metadata"]["error_type"] == "payment_required"
    assert error["metadata"]["limit_source"] == "account"
    assert "can only afford 15" in error["message"]
    assert error["metadata"]["explanation"]["code"] == "insufficient_for_request"


def test_explicit_max_tokens_above_the_balance_is_refused_not_lowered(gateway: GatewayServer) -> None:
    account = gateway.new_account(usd(cost_of(32)))
    response = gateway.post("/chat/completions", account.key, echo_request(max_tokens=500))
    assert response.status_code == 402
    assert "You requested up to 500 tokens, but can only afford 32" in response.json()["error"]["message"]


def test_empty_balance_refuses_paid_but_serves_free_models(gateway: GatewayServer) -> None:
    account = gateway.new_account(None)
    paid = gateway.post("/chat/completions", account.key, echo_request())
    assert paid.status_code == 402
    assert paid.json()["error"]["metadata"]["explanation"]["code"] == "balance_empty"
    free = gateway.post("/chat/completions", account.key, echo_request(model="tollway/offline-small:free"))
    assert free.status_code == 200
    assert free.json()["usage"]["cost"] == 0


def test_key_total_cap_gives_403_key_limit_exceeded(gateway: GatewayServer) -> None:
    account = gateway.new_account("10", limit=usd(2 * cost_of(20)))
    for _ in range(2):
        assert gateway.post("/chat/completions", account.key, echo_request(20)).status_code == 200
    refused = gateway.post("/chat/completions", account.key, echo_request(20))
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["message"].startswith("Key limit exceeded (total limit)")
    assert error["metadata"]["error_type"] == "permission_denied"
    assert error["metadata"]["limit_source"] == "key"
    info = gateway.get("/key", account.key).json()["data"]
    assert info["limit_remaining"] == 0
    assert nanos(info["usage"]) == 2 * cost_of(20)
    # The account still has money: /credits says so.
    credits = gateway.get("/credits", account.key).json()["data"]
    assert nanos(credits["total_credits"]) - nanos(credits["total_usage"]) == 10 * 10**9 - 2 * cost_of(20)


def test_key_monthly_cap_names_its_window_and_binds_before_the_balance(gateway: GatewayServer) -> None:
    account = gateway.new_account("10", limit=usd(cost_of(20) + cost_of(10)), limit_reset="monthly")
    assert gateway.post("/chat/completions", account.key, echo_request(20)).status_code == 200
    short = gateway.post("/chat/completions", account.key, echo_request(20))
    assert short.status_code == 402
    assert short.json()["error"]["metadata"]["limit_source"] == "key"
    assert short.json()["error"]["metadata"]["explanation"]["code"] == "key_cap_insufficient"
    assert gateway.post("/chat/completions", account.key, echo_request(10)).status_code == 200
    refused = gateway.post("/chat/completions", account.key, echo_request(10))
    assert refused.status_code == 403
    assert refused.json()["error"]["message"].startswith("Key limit exceeded (monthly limit)")
    info = gateway.get("/key", account.key).json()["data"]
    assert info["limit_reset"] == "monthly"
    assert nanos(info["usage_monthly"]) == cost_of(20) + cost_of(10)


def test_settlement_above_the_hold_bills_it_and_then_refuses_with_402(
    gateway: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    account = gateway.new_account("0.01")
    upstream.behaviour.prompt_tokens = 20_000  # far above the prompt estimate: 0.02 USD of prompt
    response = gateway.post(
        "/chat/completions",
        account.key,
        {"model": "fake/chat", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 200
    assert nanos(response.json()["usage"]["cost"]) == 20_000 * 1000 + 6 * 2000
    balance = gateway.balance(account.id)
    assert nanos(balance["balance"]) == 10**7 - (20_000 * 1000 + 6 * 2000) < 0
    for model in ("tollway/offline-small", "tollway/offline-small:free"):
        refused = gateway.post("/chat/completions", account.key, echo_request(model=model))
        assert refused.status_code == 402
        assert refused.json()["error"]["metadata"]["explanation"]["code"] == "balance_negative"


def test_zero_completion_with_error_finish_is_not_billed(gateway: GatewayServer, upstream: FakeOpenAIUpstream) -> None:
    account = gateway.new_account("1")
    upstream.behaviour.reply_words = []
    upstream.behaviour.finish_reason = "error"
    response = gateway.post(
        "/chat/completions",
        account.key,
        {"model": "fake/chat", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 200
    assert response.json()["usage"]["cost"] == 0
    assert nanos(gateway.balance(account.id)["total_usage"]) == 0


def test_credits_granted_through_the_cli_reach_a_running_server_within_a_second(
    gateway: GatewayServer,
) -> None:
    account = gateway.new_account(None)
    assert gateway.post("/chat/completions", account.key, echo_request()).status_code == 402
    run_cli("credits", "grant", account.id, "1", "--reason", "test", database_url=gateway.database_url)
    granted_at = time.monotonic()
    status = 0
    while status != 200 and time.monotonic() - granted_at < 1.0:
        status = gateway.post("/chat/completions", account.key, echo_request()).status_code
    assert status == 200
