"""Sticky sessions: a session's requests stay on the endpoint that served it while that endpoint is healthy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support import GatewayServer, start_gateway

HELLO = [{"role": "user", "content": "Say hello"}]
PRICE = {"prompt": "0.000001", "completion": "0.000002"}


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]]:
    first, second = FakeOpenAIUpstream().start(), FakeOpenAIUpstream().start()
    yield first, second
    first.stop()
    second.stop()


def twin_config(directory: Path, pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]) -> Path:
    config = {
        "providers": [
            {"name": "alpha", "kind": "openai", "base_url": pair[0].base_url, "display_name": "Alpha"},
            {"name": "beta", "kind": "openai", "base_url": pair[1].base_url, "display_name": "Beta"},
        ],
        "models": [
            {
                "id": "twin/chat",
                "endpoints": [
                    {"provider": "alpha", "upstream_model": "chat-a", "pricing": PRICE},
                    {"provider": "beta", "upstream_model": "chat-b", "pricing": PRICE},
                ],
            }
        ],
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def server(
    pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("sticky")
    gateway = start_gateway(f"sqlite:///{directory / 'sticky.db'}", twin_config(directory, pair), directory)
    yield gateway
    gateway.stop()


@pytest.fixture(autouse=True)
def _healthy(pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]) -> None:
    for upstream in pair:
        upstream.reset()


def ask(server: GatewayServer, key: str, headers: dict[str, str] | None = None, **fields: Any) -> httpx.Response:
    response = httpx.post(
        server.api + "/chat/completions",
        json={"model": "twin/chat", "messages": HELLO, **fields},
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response


def served_by(response: httpx.Response) -> str:
    provider: str = response.json()["provider"]
    return provider


def test_requests_of_a_session_stick_to_the_endpoint_that_served_the_first(
    server: GatewayServer, pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]
) -> None:
    account = server.new_account("5")
    unsessioned = {served_by(ask(server, account.key)) for _ in range(30)}
    assert unsessioned == {"Alpha", "Beta"}  # without a session the load is spread

    first = ask(server, account.key, session_id="conv-1")
    home = served_by(first)
    for _ in range(10):
        assert served_by(ask(server, account.key, session_id="conv-1")) == home
    with httpx.stream(
        "POST",
        server.api + "/chat/completions",
        json={"model": "twin/chat", "messages": HELLO, "stream": True},
        headers={"Authorization": f"Bearer {account.key}", "X-Session-Id": "conv-1"},
        timeout=30,
    ) as streamed:
        assert streamed.status_code == 200
        streamed_id = streamed.headers["X-Generation-Id"]
        streamed.read()
    assert server.generation(account.key, streamed_id)["provider_name"] == home
    record = server.generation(account.key, first.json()["id"])
    assert record["session_id"] == "conv-1"
    assert all("session_id" not in call.body for upstream in pair for call in upstream.calls)  # the gateway's

    # The home endpoint fails: the session moves to the other one and stays there once home recovers.
    upstreams = {"Alpha": pair[0], "Beta": pair[1]}
    away = "Beta" if home == "Alpha" else "Alpha"
    upstreams[home].behaviour.status = 503
    moved = ask(server, account.key, session_id="conv-1")
    assert served_by(moved) == away
    attempts = server.generation(account.key, moved.json()["id"])["provider_responses"]
    assert [a["provider_name"] for a in attempts] == [home, away] and attempts[0]["status"] == 503
    upstreams[home].reset()
    for _ in range(5):
        assert served_by(ask(server, account.key, session_id="conv-1")) == away


def test_the_header_names_the_session_too_and_the_body_wins(server: GatewayServer) -> None:
    account = server.new_account("5")
    home = served_by(ask(server, account.key, headers={"X-Session-Id": "by-header"}))
    for _ in range(8):
        assert served_by(ask(server, account.key, headers={"X-Session-Id": "by-header"})) == home
    body_wins = ask(server, account.key, headers={"X-Session-Id": "by-header"}, session_id="by-body")
    assert server.generation(account.key, body_wins.json()["id"])["session_id"] == "by-body"
    plain = ask(server, account.key)
    assert server.generation(account.key, plain.json()["id"])["session_id"] is None


@pytest.mark.parametrize("value", ["x" * 257, 42, "", ["a"], "nul\u0000byte", "line\nbreak"])
def test_a_bad_session_id_is_refused_naming_the_field(server: GatewayServer, value: Any) -> None:
    account = server.new_account("1")
    before = server.balance(account.id)
    response = httpx.post(
        server.api + "/chat/completions",
        json={"model": "twin/chat", "messages": HELLO, "session_id": value},
        headers={"Authorization": f"Bearer {account.key}"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["metadata"]["field"] == "session_id"
    assert server.balance(account.id) == before


def test_a_nul_in_user_is_refused_before_it_reaches_the_ledger(server: GatewayServer) -> None:
    account = server.new_account("1")
    response = httpx.post(
        server.api + "/chat/completions",
        json={"model": "twin/chat", "messages": HELLO, "user": "a\u0000b"},
        headers={"Authorization": f"Bearer {account.key}"},
        timeout=30,
    )
    assert response.status_code == 400 and response.json()["error"]["metadata"]["field"] == "user"


def test_with_redis_every_process_knows_the_session(
    pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream], tmp_path_factory: pytest.TempPathFactory
) -> None:
    directory = tmp_path_factory.mktemp("sticky-redis")
    config = twin_config(directory, pair)
    database = f"sqlite:///{directory / 'shared.db'}"
    env = {"TOLLWAY_REDIS_URL": "redis://127.0.0.1:6379/0"}
    first = start_gateway(database, config, directory, env=env)
    second = start_gateway(database, config, directory, env=env)
    try:
        account = first.new_account("5")
        home = served_by(ask(first, account.key, session_id="shared"))
        for server in (second, first, second):
            for _ in range(4):
                assert served_by(ask(server, account.key, session_id="shared")) == home
        upstreams = {"Alpha": pair[0], "Beta": pair[1]}
        away = "Beta" if home == "Alpha" else "Alpha"
        upstreams[home].behaviour.status = 503
        assert served_by(ask(second, account.key, session_id="shared")) == away
        upstreams[home].reset()
        for _ in range(4):  # the first process never saw the move, yet follows it
            assert served_by(ask(first, account.key, session_id="shared")) == away
    finally:
        second.stop()
        first.stop()
