"""Hostile input to every public endpoint: never a 5xx, and the ledger does not move.

Hypothesis mutates a valid body of each endpoint (a field replaced by any JSON value, numbers JSON
cannot hold in a double, NaN, nesting hundreds of levels deep, wrong shapes in nested fields) or sends
bytes that are no JSON at all, with the account's own keys. The account has no credits, so nothing a
fuzzed request could do may legitimately change its balance or its entries.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import fake_payments_env
from tests.fakes.anthropic_upstream import FakeAnthropicUpstream
from tests.fakes.gemini_upstream import FakeGeminiUpstream
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.fakes.payment_servers import FakePayments
from tests.support import GatewayServer, nanos, start_sqlite_gateway


class Raw(str):
    """A JSON token written as is: NaN, 1e999999, deep nesting."""


RAW = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999999",
    "-1e999999",
    "1e-999999",
    "123456789012345678901234567890",
    "-0",
    "0.0000000001",
    '"1e999999"',
    '"NaN"',
    '"Infinity"',
]
DEEP = [Raw("[" * n + "]" * n) for n in (63, 64, 65, 200, 255, 300, 1100)] + [
    Raw('{"a":' * n + "1" + "}" * n) for n in (64, 65, 254, 300)
]
FIELD_NAMES = [
    "model",
    "models",
    "messages",
    "prompt",
    "stream",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "provider",
    "tools",
    "tool_choice",
    "stop",
    "stop_sequences",
    "seed",
    "user",
    "system",
    "response_format",
    "reasoning",
    "usage",
    "logit_bias",
    "input",
    "dimensions",
    "encoding_format",
    "amount",
    "threshold",
    "enabled",
    "name",
    "limit",
    "limit_reset",
    "disabled",
    "include_byok_in_limit",
    "expires_at",
    "thinking",
    "metadata",
    "content",
    "role",
    "type",
    "text",
    "source",
    "tool_use_id",
    "input_schema",
    "function",
    "max_price",
    "only",
    "order",
    "sort",
]


def encode(value: Any) -> bytes:
    if isinstance(value, Raw):
        return value.encode()
    if isinstance(value, dict):
        return b"{" + b",".join(orjson.dumps(str(k)) + b":" + encode(v) for k, v in value.items()) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(encode(v) for v in value) + b"]"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value).encode()  # past 64 bits too, as a client may write it
    return orjson.dumps(value)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["user", "assistant", "system", "tool", "text", "image", "tool_use", "tool_result", "stripe"]),
    st.sampled_from([Raw(token) for token in RAW]),
    st.sampled_from(DEEP),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)

MODEL = "tollway/offline-small"
MESSAGE = {"role": "user", "content": "hi"}
TEMPLATES: dict[str, tuple[str, str, dict[str, Any], list[tuple[Any, ...]]]] = {
    "chat": (
        "POST",
        "/chat/completions",
        {"model": MODEL, "messages": [MESSAGE], "max_tokens": 5},
        [
            ("messages", 0, "content"),
            ("messages", 0),
            ("messages", 0, "role"),
            ("provider", "max_price", "prompt"),
            ("messages", 0, "content", 0),
            ("messages", 0, "tool_calls"),
            ("tools", 0),
            ("tools", 0, "function"),
            ("provider", "order"),
            ("provider", "sort"),
        ],
    ),
    "messages": (
        "POST",
        "/messages",
        {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
        [
            ("messages", 0, "content"),
            ("messages", 0, "content", 0),
            ("messages", 0, "content", 0, "content"),
            ("messages", 0, "content", 0, "type"),
            ("system",),
            ("system", 0),
            ("tools",),
            ("tools", 0),
            ("tool_choice",),
            ("messages", 0, "content", 0, "source"),
        ],
    ),
    "embeddings": ("POST", "/embeddings", {"model": "tollway/offline-embed", "input": "hi"}, [("input", 0)]),
    "keys": ("POST", "/keys", {"name": "fuzzed", "limit": 1}, []),
    "checkout": ("POST", "/credits/checkout", {"amount": 10, "provider": "stripe"}, []),
    "auto-recharge": ("PUT", "/credits/auto-recharge", {"threshold": 1, "amount": 5, "enabled": False}, []),
}
GETS = [
    "/models",
    "/models/count",
    "/model/tollway/offline-small",
    "/models/tollway/offline-small/endpoints",
    "/key",
    "/auth/key",
    "/credits",
    "/balance",
    "/generation",
    "/keys",
    "/credits/auto-recharge",
    "/credits/purchases",
]


def set_path(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        container = body if isinstance(body, list) else []
        if not container:
            container.append({})
        container[0] = set_path(container[0], rest, value)
        return container
    container = body if isinstance(body, dict) else {}
    container[head] = set_path(container.get(head), rest, value)
    return container


@pytest.fixture(scope="module")
def target(
    upstream: FakeOpenAIUpstream, fake_payments: FakePayments, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayServer, str, str, str, str]]:
    directory: Path = tmp_path_factory.mktemp("fuzz")
    server = start_sqlite_gateway(directory, upstream.base_url, env=fake_payments_env(fake_payments))
    account = server.new_account(None)
    owner, _ = server.new_key(account.id, management=True)
    _, spare_hash = server.new_key(account.id)
    yield server, account.id, account.key, owner, spare_hash
    server.stop()


def ledger_state(server: GatewayServer, account_id: str, key: str) -> tuple[Any, ...]:
    balance = server.balance(account_id)
    entries = server.admin("GET", f"/accounts/{account_id}/ledger").json()
    credits = server.get("/credits", key).json()["data"]
    return balance["balance"], balance["held_in_flight"], orjson.dumps(entries), credits


requests = st.one_of(
    st.tuples(st.sampled_from(sorted(TEMPLATES)), st.integers(0, 2**16), values, st.integers(0, 5)),
    st.tuples(
        st.just("get"),
        st.sampled_from(GETS),
        st.dictionaries(
            st.sampled_from(["id", "offset", "limit", "category", "supported_parameters", "q"]),
            st.text(max_size=12) | st.sampled_from(RAW),
            max_size=2,
        ),
        st.integers(0, 3),
    ),
    st.tuples(st.sampled_from(["stripe", "crypto"]), st.binary(max_size=300), values, st.integers(0, 3)),
    st.tuples(st.just("patch"), st.integers(0, 2**16), values, st.integers(0, 3)),
)


def test_no_input_makes_a_5xx_or_moves_money(target: tuple[GatewayServer, str, str, str, str]) -> None:
    server, account_id, key, owner, spare_hash = target
    before = ledger_state(server, account_id, key)
    seen: dict[int, int] = {}

    with httpx.Client(timeout=30) as client:

        @settings(max_examples=3000, suppress_health_check=list(HealthCheck), database=None)
        @given(request=requests, choice=st.integers(0, 2**16))
        def fuzz(request: tuple[Any, ...], choice: int) -> None:
            kind, detail, value, mode = request
            who = owner if choice % 2 else key
            headers = {"Authorization": f"Bearer {who}", "Content-Type": "application/json"}
            if kind == "get":
                response = client.get(server.api + detail, params=value, headers=headers)
            elif kind in ("stripe", "crypto"):
                signature = {"Stripe-Signature": f"t=1,v1={secrets.token_hex(32)}", "X-CC-Webhook-Signature": "00"}
                content = detail if mode == 0 else encode(value)
                response = client.post(server.api + f"/webhooks/{kind}", content=content, headers=signature)
            else:
                if kind == "patch":
                    method, path, body = "PATCH", f"/keys/{spare_hash}", {"name": "spare"}
                    paths: list[tuple[Any, ...]] = []
                    who = owner
                    headers["Authorization"] = f"Bearer {owner}"
                else:
                    method, path, template, paths = TEMPLATES[kind]
                    body = orjson.loads(orjson.dumps(template))
                if mode == 0:
                    content = encode(value)  # the whole body is any value
                elif mode == 1 and paths:
                    content = encode(set_path(body, paths[detail % len(paths)], value))
                elif mode == 2:
                    content = bytes([detail % 256]) + b"{" * (detail % 7)
                else:
                    body[FIELD_NAMES[detail % len(FIELD_NAMES)]] = value
                    content = encode(body)
                response = client.request(method, server.api + path, content=content, headers=headers)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (request, response.text[:500])
            if response.status_code >= 400:
                error = response.json()["error"]
                assert isinstance(error["message"], str) and error["code"] == response.status_code

        fuzz()

    print("statuses", dict(sorted(seen.items())))
    assert ledger_state(server, account_id, key) == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": ["hi"]}]}, "messages[0].content[0]"),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": 7}]}]},
            "messages[0].content[0].content",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [3]}]}]},
            "messages[0].content[0].content[0]",
        ),
        ({"system": {"text": "be brief"}}, "system"),
        ({"system": [5]}, "system[0]"),
        ({"tools": {"name": "x"}}, "tools"),
        ({"tools": ["x"]}, "tools[0]"),
        ({"messages": [{"role": ["user"], "content": "hi"}]}, "messages[0].role"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"max_tokens": 2**70}, "max_tokens"),
    ],
)
def test_malformed_messages_shapes_are_400s_naming_the_field(
    target: tuple[GatewayServer, str, str, str, str], change: dict[str, Any], field: str
) -> None:
    server, _account_id, key, _owner, _spare = target
    body = {"model": MODEL, "max_tokens": 5, "messages": [MESSAGE], **change}
    response = httpx.post(
        server.api + "/messages", content=encode(body), headers={"x-api-key": key, "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["metadata"]["field"] == field


@pytest.mark.parametrize("depth", [65, 255, 1000])
def test_deep_json_is_a_400_on_every_json_endpoint(
    target: tuple[GatewayServer, str, str, str, str], depth: int
) -> None:
    server, _account_id, key, owner, _spare = target
    deep = "[" * depth + "]" * depth
    for method, path, who in [
        ("POST", "/chat/completions", key),
        ("POST", "/messages", key),
        ("POST", "/embeddings", key),
        ("POST", "/keys", owner),
        ("POST", "/credits/checkout", owner),
        ("PUT", "/credits/auto-recharge", owner),
    ]:
        content = ('{"model": "tollway/offline-small", "max_tokens": 5, "x": ' + deep + "}").encode()
        response = httpx.request(
            method, server.api + path, content=content, headers={"Authorization": f"Bearer {who}"}, timeout=30
        )
        assert response.status_code == 400, (path, response.text)


FUNDED_MODELS = ["tollway/offline-small", "fake/chat", "fake/failover", "claude/fuzz", "gemini/fuzz"]


@pytest.fixture(scope="module")
def funded(upstream: FakeOpenAIUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    claude = FakeAnthropicUpstream().start()
    gemini = FakeGeminiUpstream().start()
    directory: Path = tmp_path_factory.mktemp("fuzz-funded")
    price = {"prompt": "0.000001", "completion": "0.000002"}
    extra = {
        "providers": [
            {"name": "fakeup", "kind": "openai", "base_url": upstream.base_url, "display_name": "FakeUp"},
            {"name": "deadup", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"},
            {"name": "claude", "kind": "anthropic", "base_url": claude.base_url, "api_key_env": "CLAUDE_KEY"},
            {"name": "gem", "kind": "gemini", "base_url": gemini.base_url, "api_key_env": "GEMINI_KEY"},
        ],
        "models": [
            {
                "id": "fake/chat",
                "endpoints": [{"provider": "fakeup", "upstream_model": "fake-chat-1", "pricing": price}],
            },
            {
                "id": "fake/failover",
                "endpoints": [
                    {"provider": "deadup", "upstream_model": "dead-1", "pricing": price},
                    {"provider": "fakeup", "upstream_model": "fake-chat-1", "pricing": price},
                ],
            },
            {
                "id": "claude/fuzz",
                "endpoints": [{"provider": "claude", "upstream_model": "claude-x", "pricing": price}],
            },
            {"id": "gemini/fuzz", "endpoints": [{"provider": "gem", "upstream_model": "gemini-x", "pricing": price}]},
        ],
    }
    server = start_sqlite_gateway(directory, upstream.base_url, extra, env={"CLAUDE_KEY": "k", "GEMINI_KEY": "k"})
    yield server
    server.stop()
    claude.stop()
    gemini.stop()


def test_funded_fuzz_bills_exactly_what_generations_report(funded: GatewayServer) -> None:
    """With credits, fuzzed requests reach every kind of upstream: still no 500, a 502 only for an upstream's
    failure, no hold left behind, and the balance falls by exactly the sum of the generations' costs."""
    account = funded.new_account("50")
    generations: list[str] = []
    seen: dict[int, int] = {}

    with httpx.Client(timeout=30) as client:

        @settings(max_examples=250, suppress_health_check=list(HealthCheck), database=None)
        @given(
            kind=st.sampled_from(["chat", "messages", "embeddings"]),
            model=st.sampled_from(FUNDED_MODELS),
            detail=st.integers(0, 2**16),
            value=values,
            mode=st.integers(1, 4),
            stream=st.booleans(),
        )
        def fuzz(kind: str, model: str, detail: int, value: Any, mode: int, stream: bool) -> None:
            method, path, template, paths = TEMPLATES[kind]
            body = orjson.loads(orjson.dumps(template))
            if kind != "embeddings":
                body["model"], body["stream"] = model, stream
            if mode == 1 and paths:
                body = set_path(body, paths[detail % len(paths)], value)
            elif mode == 2:
                body[FIELD_NAMES[detail % len(FIELD_NAMES)]] = value
            response = client.request(
                method,
                funded.api + path,
                content=encode(body),
                headers={"Authorization": f"Bearer {account.key}", "Content-Type": "application/json"},
            )
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code != 500, (body, response.text[:500])
            if response.status_code >= 500:
                assert response.json()["error"]["metadata"].get("provider_name"), response.text[:500]
            if "X-Generation-Id" in response.headers:
                generations.append(response.headers["X-Generation-Id"])

        fuzz()

    print("statuses", dict(sorted(seen.items())), "generations", len(generations))
    time.sleep(0.3)
    balance = funded.balance(account.id)
    assert nanos(balance["held_in_flight"]) == 0
    billed = 0
    for generation_id in generations:
        found = funded.get("/generation", account.key, id=generation_id)
        if found.status_code == 200:
            billed += nanos(found.json()["data"]["total_cost"])
    assert nanos("50") - nanos(balance["balance"]) == billed
