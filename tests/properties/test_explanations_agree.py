"""What /balance says about a key agrees with what the next request with that key gets.

Random account, key and limit states are built through the real API of a running gateway; then
/balance is read and one request is sent. A refusal's code is always among /balance's explanations
(or, for a key refused at the door, /balance is refused with the same code), and "nothing limits this
key" is said only when the request is served.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support import GatewayServer, run_cli, start_gateway, start_sqlite_gateway

FREE_PER_DAY = 3
REDIS_URL = "redis://127.0.0.1:6379/0"
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def agreeing_gateway(upstream: FakeOpenAIUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("agree")
    server = start_sqlite_gateway(
        directory,
        upstream.base_url,
        env={
            "TOLLWAY_FREE_REQUESTS_PER_MINUTE": "1000",
            "TOLLWAY_FREE_REQUESTS_PER_DAY": str(FREE_PER_DAY),
            "TOLLWAY_ASSISTANT_REQUESTS_PER_MINUTE": "100000",
        },
    )
    yield server
    server.stop()


@dataclass(frozen=True)
class State:
    credits: str | None  # granted USD, None for none
    cap: str | None  # the key's cap in USD
    cap_reset: str | None
    negative: bool  # an upstream overrun leaves the balance below zero
    limits: str  # "none" | "free_daily" (today's free requests used) | "key_rate" (1 a minute, used) | "key_tpm"
    disabled: bool
    request: str  # "open" | "max16" | "max1000" | "free" | "long" (a free request with a long prompt)


states = st.builds(
    State,
    credits=st.sampled_from([None, "0.00002", "0.0002", "0.002", "5"]),
    cap=st.sampled_from([None, None, "0", "0.00002", "0.0003", "2"]),
    cap_reset=st.sampled_from([None, "daily", "monthly"]),
    negative=st.booleans(),
    limits=st.sampled_from(["none", "none", "free_daily", "key_rate", "key_tpm"]),
    disabled=st.sampled_from([False, False, False, True]),
    request=st.sampled_from(["open", "max16", "max1000", "free", "long"]),
)


def request_body(kind: str) -> dict[str, Any]:
    if kind == "free":
        return {"model": "tollway/offline-small:free", "max_tokens": 5, "messages": HELLO}
    if kind == "long":
        long_prompt = [{"role": "user", "content": " ".join(f"word{i}" for i in range(120))}]
        return {"model": "tollway/offline-small:free", "max_tokens": 5, "messages": long_prompt}
    body: dict[str, Any] = {"model": "tollway/offline-small", "messages": HELLO}
    if kind.startswith("max"):
        body["max_tokens"] = int(kind.removeprefix("max"))
    return body


def build(gateway: GatewayServer, upstream: FakeOpenAIUpstream, state: State) -> str:
    """The key of a fresh account in `state`, built only through the API."""
    credits = state.credits if not state.negative else "0.0005"
    account = gateway.new_account(credits)
    if state.negative:
        upstream.behaviour.prompt_tokens = 5_000  # the upstream counts far more than the hold allowed for
        overrun = gateway.post("/chat/completions", account.key, {"model": "fake/chat", "messages": HELLO})
        upstream.reset()
        assert overrun.status_code == 200, overrun.text
    options: dict[str, Any] = {}
    if state.cap is not None:
        options = {"limit": state.cap, "limit_reset": state.cap_reset}
    key, key_hash = gateway.new_key(account.id, **options)
    if state.limits == "free_daily":
        for _ in range(FREE_PER_DAY):
            gateway.post("/chat/completions", account.key, request_body("free"))
    elif state.limits == "key_rate":
        limited = gateway.admin("PUT", f"/keys/{key_hash}/limits", {"requests": 1, "per": "minute"})
        assert limited.status_code == 200, limited.text
        gateway.post("/chat/completions", key, request_body("free"))
    elif state.limits == "key_tpm":  # part of a tokens-per-minute allowance used: a long prompt no longer fits
        limited = gateway.admin("PUT", f"/keys/{key_hash}/limits", {"tokens_per_minute": 200})
        assert limited.status_code == 200, limited.text
        gateway.post("/chat/completions", key, request_body("long"))
    if state.disabled:
        manager, _ = gateway.new_key(account.id, management=True)
        patched = httpx.patch(
            f"{gateway.api}/keys/{key_hash}",
            json={"disabled": True},
            headers={"Authorization": f"Bearer {manager}"},
            timeout=30,
        )
        assert patched.status_code == 200, patched.text
    return key


def explanation_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["metadata"]["explanation"]["code"])


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(state=states)
def test_balance_never_contradicts_the_next_request(
    agreeing_gateway: GatewayServer, upstream: FakeOpenAIUpstream, state: State
) -> None:
    gateway = agreeing_gateway
    key = build(gateway, upstream, state)
    report = gateway.get("/balance", key)
    served = gateway.post("/chat/completions", key, request_body(state.request))
    if report.status_code != 200:
        # Refused at the door (a disabled key): /balance says why, with the code the request gets.
        assert report.status_code == served.status_code == 401
        assert explanation_code(report) == explanation_code(served) == "key_disabled"
        return
    data = report.json()["data"]
    codes = [e["code"] for e in data["explanations"]]
    # The assistant stands on the same explanations, in the same order, and says the same about them.
    answer = gateway.post("/assistant", key, {"messages": [{"role": "user", "content": "do I have a balance?"}]})
    assert answer.status_code == 200, answer.text
    said = answer.json()["data"]
    assert [f["code"] for f in said["facts"] if f["code"] in codes] == codes
    assert ("Nothing limits this key." in said["answer"]) == (codes == [])
    if served.status_code == 200:
        return
    assert served.status_code in (402, 403, 429), served.text
    assert explanation_code(served) in codes, (state, codes, served.text)
    assert "nothing limits" not in data["summary"]
    assert f"[{explanation_code(served)}]" in said["answer"]


def test_whoami_never_says_nothing_limits_while_the_server_refuses(agreeing_gateway: GatewayServer) -> None:
    """Without Redis the CLI cannot see the server's limit counters: it says so instead of "nothing limits"."""
    gateway = agreeing_gateway
    account = gateway.new_account("5")
    limited = gateway.admin("PUT", f"/keys/{account.key_hash}/limits", {"requests": 1, "per": "minute"})
    assert limited.status_code == 200
    assert gateway.post("/chat/completions", account.key, request_body("free")).status_code == 200
    refused = gateway.post("/chat/completions", account.key, request_body("free"))
    assert refused.status_code == 429 and explanation_code(refused) == "rate_limited"
    assert "rate_limited" in [e["code"] for e in gateway.get("/balance", account.key).json()["data"]["explanations"]]
    # The refusal log reaches the database in the background (a fraction of a second).
    database = gateway.database_url.removeprefix("sqlite:///")
    deadline = time.monotonic() + 10
    while (
        not sqlite3.connect(database)
        .execute("SELECT 1 FROM refusals WHERE request_id = ?", (refused.headers["X-Request-Id"],))
        .fetchone()
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    whoami = json.loads(run_cli("whoami", "--key", account.key, "--json", database_url=gateway.database_url).stdout)
    assert "nothing limits" not in whoami["summary"]
    codes = [e["code"] for e in whoami["explanations"]]
    assert codes == ["rate_limited", "limits_not_visible"]  # the 429 just refused, from the refusal log
    assert whoami["explanations"][0]["request_id"] == refused.headers["X-Request-Id"]
    assert "key-requests" in whoami["explanations"][1]["limits"]


def test_whoami_with_redis_sees_the_limit_the_server_refuses_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Redis the CLI reads the same limit counters as the server: whoami names the 429's code."""
    monkeypatch.setenv("TOLLWAY_REDIS_URL", REDIS_URL)
    gateway = start_gateway(f"sqlite:///{tmp_path / 'redis.db'}", None, tmp_path)
    try:
        account = gateway.new_account("5")
        assert gateway.admin("PUT", f"/keys/{account.key_hash}/limits", {"requests": 1, "per": "minute"}).is_success
        assert gateway.post("/chat/completions", account.key, request_body("max16")).status_code == 200
        refused = gateway.post("/chat/completions", account.key, request_body("max16"))
        assert refused.status_code == 429
        whoami = json.loads(run_cli("whoami", "--key", account.key, "--json", database_url=gateway.database_url).stdout)
        assert explanation_code(refused) in [e["code"] for e in whoami["explanations"]]
        assert "nothing limits" not in whoami["summary"]
    finally:
        gateway.stop()
