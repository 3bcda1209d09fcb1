"""The assistant's model mode and its own rate limit, on a gateway whose answers a fake upstream model writes.

Every USD figure of a model's answer must be a fact's to the cent; an invented one, or a failing model, gives
the grounded answer and counts in assistant_rejected_answers_total.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.integration.test_assistant import ECHO, answer_of, ask
from tests.integration.test_discord import PUBLIC_KEY, command, dashboard_user, link_code, message, send
from tests.support import GatewayServer, run_cli, start_gateway, write_config


@pytest.fixture(scope="module")
def model_mode(upstream: FakeOpenAIUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("assistant-model")
    database_url = f"sqlite:///{directory / 'model.db'}"
    config = write_config(directory / "config.yaml", upstream.base_url)
    first = start_gateway(database_url, config, directory)
    try:
        house = first.new_account("1")
    finally:
        first.stop()
    server = start_gateway(
        database_url,
        config,
        directory,
        env={
            "TOLLWAY_ASSISTANT_MODEL": "fake/chat",
            "TOLLWAY_ASSISTANT_HOUSE_KEY": house.key,
            "TOLLWAY_ASSISTANT_REQUESTS_PER_MINUTE": "4",
            "TOLLWAY_ASSISTANT_EMBEDDING_MODEL": "fake/embed",
            "TOLLWAY_DISCORD_PUBLIC_KEY": PUBLIC_KEY,
        },
    )
    server.house = house  # type: ignore[attr-defined]
    # The documentation is embedded in the background at start-up, in batches of passages: wait until the
    # first batch came and no further batch for two seconds, so no batch lands inside a test's calls.
    deadline = time.monotonic() + 30

    def batches() -> int:
        return sum(1 for c in list(upstream.calls) if c.path == "/v1/embeddings" and len(c.body["input"]) > 1)

    seen, quiet_since = 0, time.monotonic()
    while seen == 0 or time.monotonic() - quiet_since < 2:
        assert time.monotonic() < deadline, "the documentation was never embedded, or its embedding never ended"
        if batches() != seen:
            seen, quiet_since = batches(), time.monotonic()
        time.sleep(0.05)
    yield server
    server.stop()


def rejected_answers(gateway: GatewayServer) -> float:
    text = httpx.get(gateway.base_url + "/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith("assistant_rejected_answers_total "):
            return float(line.split()[1])
    raise AssertionError("assistant_rejected_answers_total is missing from /metrics")


def test_model_mode_answers_with_fact_figures_billed_to_the_house(
    model_mode: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    account = model_mode.new_account("5")
    upstream.behaviour.reply_words = ["Yes,", " you", " have", " 5.00", " USD", " to", " spend."]
    data = answer_of(model_mode, account.key, "do I have a balance?")
    assert data["mode"] == "model" and data["model"] == "fake/chat"
    assert data["answer"] == "Yes, you have 5.00 USD to spend."
    assert data["generation_id"].startswith("gen-")
    embedded = [c.body["input"] for c in upstream.calls if c.path == "/v1/embeddings"]
    assert embedded == [["do I have a balance?"]]  # the question, to rank passages with the model's vectors
    assert data["sources"]
    sent = upstream.calls[-1].body
    assert "5.00" in sent["messages"][0]["content"] or "5.0" in sent["messages"][0]["content"]
    house = model_mode.house  # type: ignore[attr-defined]
    assert model_mode.balance(house.id)["total_usage"] > 0
    assert model_mode.balance(account.id)["total_usage"] == 0


def test_model_mode_invented_figure_falls_back_to_the_grounded_answer(
    model_mode: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    account = model_mode.new_account("5")
    before = rejected_answers(model_mode)
    upstream.behaviour.reply_words = ["You", " have", " $42.17", " left."]
    data = answer_of(model_mode, account.key, "do I have a balance?")
    assert data["mode"] == "grounded"
    assert data["answer"].startswith("Yes: you have 5.00 USD")
    assert "42.17" not in data["answer"]
    assert rejected_answers(model_mode) == before + 1
    upstream.behaviour.status = 500
    data = answer_of(model_mode, account.key, "do I have a balance?")
    assert data["mode"] == "grounded" and data["answer"].startswith("Yes: you have 5.00 USD")


def test_the_assistant_has_its_own_rate_limit(model_mode: GatewayServer, upstream: FakeOpenAIUpstream) -> None:
    account = model_mode.new_account("5")
    statuses = [ask(model_mode, account.key, "balance?").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    refused = ask(model_mode, account.key, "balance?")
    explanation = refused.json()["error"]["metadata"]["explanation"]
    assert explanation["code"] == "rate_limited" and explanation["limit"] == "assistant"
    # Its limit is its own: completions with the same key are not refused by it.
    assert model_mode.post("/chat/completions", account.key, ECHO).status_code == 200


def test_model_mode_billed_to_the_asker_or_the_house_account(
    upstream: FakeOpenAIUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    directory = tmp_path_factory.mktemp("assistant-asker")
    config = write_config(directory / "config.yaml", upstream.base_url)
    database_url = f"sqlite:///{directory / 'asker.db'}"
    created = run_cli("accounts", "create", "--email", "house@example.com", "--json", database_url=database_url)
    house_id = json.loads(created.stdout)["id"]
    gateway = start_gateway(
        database_url,
        config,
        directory,
        env={
            "TOLLWAY_ASSISTANT_MODEL": "fake/chat",
            "TOLLWAY_ASSISTANT_BILLING": "asker",
            "TOLLWAY_ASSISTANT_HOUSE_ACCOUNT": house_id,
        },
    )
    try:
        account = gateway.new_account("2")
        upstream.behaviour.reply_words = ["You", " have", " 2.00", " USD."]
        data = answer_of(gateway, account.key, "do I have a balance?")
        assert data["mode"] == "model" and data["answer"] == "You have 2.00 USD."
        generation = gateway.get("/generation", account.key, id=data["generation_id"])
        assert generation.status_code == 200 and generation.json()["data"]["total_cost"] > 0
        assert gateway.balance(account.id)["total_usage"] > 0
        # A management key cannot pay for completions, and the house account has no key yet: grounded.
        manager, _ = gateway.new_key(account.id, management=True)
        data = answer_of(gateway, manager, "do I have a balance?")
        assert data["mode"] == "grounded" and data["answer"].startswith("Yes: you have")
        # Once the house account has money and a key, it pays for the management key's question.
        assert gateway.admin("POST", f"/accounts/{house_id}/credits", {"amount": "1"}).status_code == 201
        gateway.new_key(house_id)
        data = answer_of(gateway, manager, "do I have a balance?")
        assert data["mode"] == "model"
        assert gateway.balance(house_id)["total_usage"] > 0
    finally:
        gateway.stop()


def test_discord_gets_the_grounded_answer_when_the_model_is_too_slow(
    model_mode: GatewayServer, upstream: FakeOpenAIUpstream
) -> None:
    client, _account_id = dashboard_user(model_mode, "4.50")
    assert "Linked" in message(send(model_mode, command("link", "7007", code=link_code(client))))
    upstream.behaviour.delay_s = 8  # Discord gives up on an interaction after 3 s
    started = time.monotonic()
    text = message(send(model_mode, command("ask", "7007", question="do I have a balance?")))
    assert time.monotonic() - started < 6
    assert text.startswith("Yes: you have 4.50 USD")
