"""What /balance says about a key agrees with what the next request with that key gets.

Random account, key and limit states are built through the real API of a running gateway; then
/balance is read and one request is sent. A refusal's code is always among /balance's explanations
(or, for a key refused at the door, /balance is refused with the same code), and "nothing limits this
key" is said only when the request is served.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support import GatewayServer, start_gateway, write_config

FREE_PER_DAY = 3
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def agreeing_gateway(upstream: FakeOpenAIUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("agree")
    config = write_config(directory / "config.yaml", upstream.base_url)
    server = start_gateway(
        f"sqlite:///{directory / 'agree.db'}",
        config,
        directory,
        env={"TOLLWAY_FREE_REQUESTS_PER_MINUTE": "1000", "TOLLWAY_FREE_REQUESTS_PER_DAY": str(FREE_PER_DAY)},
    )
    yield server
    server.stop()


@dataclass(frozen=True)
class State:
    credits: str | None  # granted USD, None for none
    cap: str | None  # the key's cap in USD
    cap_reset: str | None
    negative: bool  # an upstream overrun leaves the balance below zero
    limits: str  # "none" | "free_daily" (all free requests of today used) | "key_rate" (1 a minute, used)
    disabled: bool
    request: str  # "open" | "max16" | "max1000" | "free"


states = st.builds(
    State,
    credits=st.sampled_from([None, "0.00002", "0.0002", "0.002", "5"]),
    cap=st.sampled_from([None, None, "0", "0.00002", "0.0003", "2"]),
    cap_reset=st.sampled_from([None, "daily", "monthly"]),
    negative=st.booleans(),
    limits=st.sampled_from(["none", "none", "free_daily", "key_rate"]),
    disabled=st.sampled_from([False, False, False, True]),
    request=st.sampled_from(["open", "max16", "max1000", "free"]),
)


def request_body(kind: str) -> dict[str, Any]:
    if kind == "free":
        return {"model": "tollway/offline-small:free", "max_tokens": 5, "messages": HELLO}
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
    if served.status_code == 200:
        return
    assert served.status_code in (402, 403, 429), served.text
    assert explanation_code(served) in codes, (state, codes, served.text)
    assert "nothing limits" not in data["summary"]
