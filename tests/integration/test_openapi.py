"""GET /api/v1/openapi.json documents every public route, /docs/api shows it to people, and every body the
gateway sends (answers, stream events and errors) holds against the document's schemas."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import pytest

from tests.conftest import fake_payments_env
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.fakes.payment_servers import FakePayments
from tests.support import GatewayServer, start_sqlite_gateway
from tollway.app import _routes


@pytest.fixture(scope="module")
def server(
    upstream: FakeOpenAIUpstream, fake_payments: FakePayments, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("openapi")
    gateway = start_sqlite_gateway(directory, upstream.base_url, env=fake_payments_env(fake_payments))
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def document(server: GatewayServer) -> dict[str, Any]:
    response = httpx.get(server.api + "/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


class Checker:
    """Validates a response against what the document says of that operation and status."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.checked: set[tuple[str, str]] = set()

    def schema(self, method: str, path: str, status: int, media: str = "application/json") -> dict[str, Any]:
        responses = self.document["paths"][path][method]["responses"]
        spec = responses.get(str(status)) or responses["default"]
        content = spec["content"][media]
        schema: dict[str, Any] = content.get("x-event-schema") or content["schema"]
        return schema

    def validate(self, schema: dict[str, Any], value: Any, where: str) -> None:
        root = {**schema, "components": self.document["components"]}
        errors = [error.message for error in jsonschema_rs.validator_for(root).iter_errors(value)]
        assert not errors, (where, errors[:3], json.dumps(value)[:500])

    def check(self, method: str, path: str, response: httpx.Response) -> Any:
        assert response.status_code < 500, response.text
        body = response.json()
        self.validate(self.schema(method, path, response.status_code), body, f"{method} {path}")
        self.checked.add((method, path))
        return body

    def check_stream(self, method: str, path: str, response: httpx.Response) -> list[dict[str, Any]]:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        schema = self.schema(method, path, 200, "text/event-stream")
        events = [
            json.loads(line[6:])
            for line in response.text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
        assert events
        for event in events:
            self.validate(schema, event, f"{method} {path} stream")
        return events


def test_the_document_is_openapi_3_1_and_names_every_route(server: GatewayServer, document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    documented = {(method, path) for path, methods in document["paths"].items() for method in methods}
    for route in _routes("/api/v1"):
        path = re.sub(r"\{(\w+)[^}]*\}", r"{\1}", route.path)
        assert (route.method.lower(), path) in documented, (
            f"{route.method} {path} is not in the OpenAPI document: add an Operation in src/tollway/api/openapi.py"
        )
    ids = [op["operationId"] for methods in document["paths"].values() for op in methods.values()]
    assert len(ids) == len(set(ids))
    for methods in document["paths"].values():
        for operation in methods.values():
            refs = re.findall(r'"#/components/schemas/(\w+)"', json.dumps(operation))
            assert all(ref in document["components"]["schemas"] for ref in refs)
    # Every schema is valid JSON Schema (2020-12, as OpenAPI 3.1 uses).
    for name, schema in document["components"]["schemas"].items():
        jsonschema_rs.validator_for({**schema, "components": document["components"]})
        assert schema.get("type") == "object", name
    assert httpx.get(server.base_url + "/v1/openapi.json", timeout=10).json() == document


def test_the_reference_page_shows_every_endpoint_without_javascript(
    server: GatewayServer, document: dict[str, Any]
) -> None:
    page = httpx.get(server.base_url + "/docs/api", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<script" not in html.lower()
    for path, methods in document["paths"].items():
        assert path.replace("{", "{") in html
        for operation in methods.values():
            assert f'id="{operation["operationId"]}"' in html
    assert "curl -X POST http://localhost:8080/api/v1/responses" in html
    assert 'id="schema-ResponsesRequest"' in html and "max_output_tokens" in html


def test_every_answer_holds_against_the_document(
    server: GatewayServer, document: dict[str, Any], upstream: FakeOpenAIUpstream
) -> None:
    checker = Checker(document)
    owner = server.new_account("10", management=True)
    user_key, user_hash = server.new_key(owner.id)
    auth = {"Authorization": f"Bearer {user_key}"}
    manage = {"Authorization": f"Bearer {owner.key}"}
    api = server.api

    def call(method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, server.base_url + path, headers=headers, timeout=30, **kwargs)

    # Inference, answered and streamed.
    for model in ("fake/chat", "tollway/offline-small"):
        chat_body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        done = checker.check(
            "post", "/api/v1/chat/completions", call("POST", "/api/v1/chat/completions", auth, json=chat_body)
        )
        streamed = call("POST", "/api/v1/chat/completions", auth, json={**chat_body, "stream": True})
        checker.check_stream("post", "/api/v1/chat/completions", streamed)
        responses_body = {"model": model, "input": "hi", "instructions": "Be brief."}
        checker.check("post", "/api/v1/responses", call("POST", "/api/v1/responses", auth, json=responses_body))
        events = checker.check_stream(
            "post",
            "/api/v1/responses",
            call("POST", "/api/v1/responses", auth, json={**responses_body, "stream": True}),
        )
        assert events[-1]["type"] == "response.completed"
        legacy = {"model": model, "prompt": "hi", "max_tokens": 5}
        checker.check("post", "/api/v1/completions", call("POST", "/api/v1/completions", auth, json=legacy))
        checker.check_stream(
            "post", "/api/v1/completions", call("POST", "/api/v1/completions", auth, json={**legacy, "stream": True})
        )
        anthropic = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
        checker.check("post", "/api/v1/messages", call("POST", "/api/v1/messages", auth, json=anthropic))
    upstream.behaviour.tool_call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    tool = {"type": "function", "name": "f", "parameters": {"type": "object"}}
    checker.check(
        "post",
        "/api/v1/responses",
        call("POST", "/api/v1/responses", auth, json={"model": "fake/chat", "input": "x", "tools": [tool]}),
    )
    upstream.behaviour.tool_call = None
    embedded = call("POST", "/api/v1/embeddings", auth, json={"model": "fake/embed", "input": ["a", "b"]})
    checker.check("post", "/api/v1/embeddings", embedded)

    # Models (public), the caller's figures, keys, payments, audit.
    for path in ("/api/v1/models", "/api/v1/models/count"):
        checker.check("get", path, call("GET", path))
    for path in [p for p in document["paths"] if "{author}/{slug}" in p]:  # every model route, one model
        checker.check("get", path, call("GET", path.replace("{author}/{slug}", "fake/chat")))
    checker.check("get", "/api/v1/models/{model_id}", call("GET", "/api/v1/models/fake%2Fchat"))
    for path in ("/key", "/auth/key", "/credits", "/balance", "/credits/purchases", "/credits/auto-recharge"):
        checker.check("get", "/api/v1" + path, call("GET", "/api/v1" + path, auth))
    generation = checker.check(
        "get", "/api/v1/generation", call("GET", "/api/v1/generation", auth, params={"id": done["id"]})
    )
    assert generation["data"]["id"] == done["id"]
    checker.check("get", "/api/v1/keys", call("GET", "/api/v1/keys", manage))
    created = checker.check("post", "/api/v1/keys", call("POST", "/api/v1/keys", manage, json={"name": "doc"}))
    one = "/api/v1/keys/" + created["data"]["hash"]
    checker.check("get", "/api/v1/keys/{hash}", call("GET", one, manage))
    checker.check("patch", "/api/v1/keys/{hash}", call("PATCH", one, manage, json={"disabled": True}))
    checker.check("delete", "/api/v1/keys/{hash}", call("DELETE", one, manage))
    checker.check("get", "/api/v1/audit", call("GET", "/api/v1/audit", manage))
    checker.check("get", "/api/v1/activity", call("GET", "/api/v1/activity", manage))
    preset = {"name": "doc", "model": "fake/chat", "parameters": {"temperature": 0.2}}
    checker.check("post", "/api/v1/presets", call("POST", "/api/v1/presets", manage, json=preset))
    checker.check("get", "/api/v1/presets", call("GET", "/api/v1/presets", manage))
    checker.check("get", "/api/v1/presets/{name}", call("GET", "/api/v1/presets/doc", manage))
    changed = call("PATCH", "/api/v1/presets/doc", manage, json={"description": "documented"})
    checker.check("patch", "/api/v1/presets/{name}", changed)
    checker.check("delete", "/api/v1/presets/{name}", call("DELETE", "/api/v1/presets/doc", manage))

    # The operator's admin API.
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    base = "/api/v1/admin/accounts/{account_id}"
    checker.check("get", "/api/v1/admin/accounts", call("GET", "/api/v1/admin/accounts", admin))
    for tail in ("/balance", "/keys", "/ledger", "/limits"):
        checker.check("get", base + tail, call("GET", f"/api/v1/admin/accounts/{owner.id}{tail}", admin))
    checker.check(
        "get", "/api/v1/admin/keys/{hash}/limits", call("GET", f"/api/v1/admin/keys/{user_hash}/limits", admin)
    )
    question = {"messages": [{"role": "user", "content": "What is my balance?"}]}
    checker.check("post", "/api/v1/assistant", call("POST", "/api/v1/assistant", auth, json=question))
    checker.check_stream(
        "post", "/api/v1/assistant", call("POST", "/api/v1/assistant", auth, json={**question, "stream": True})
    )
    created_account = checker.check(
        "post", "/api/v1/admin/accounts", call("POST", "/api/v1/admin/accounts", admin, json={"email": "d@example.com"})
    )
    other = created_account["data"]["id"]
    checker.check(
        "post",
        base + "/credits",
        call("POST", f"/api/v1/admin/accounts/{other}/credits", admin, json={"amount": "2", "reason": "trial"}),
    )
    checker.check(
        "post",
        base + "/keys",
        call("POST", f"/api/v1/admin/accounts/{other}/keys", admin, json={"name": "k", "management": True}),
    )
    limits = {"requests_per_minute": 100}
    checker.check("put", base + "/limits", call("PUT", f"/api/v1/admin/accounts/{other}/limits", admin, json=limits))
    checker.check(
        "put",
        "/api/v1/admin/keys/{hash}/limits",
        call("PUT", f"/api/v1/admin/keys/{user_hash}/limits", admin, json=limits),
    )
    for path in ("/api/v1/webhooks/stripe", "/api/v1/webhooks/crypto", "/api/v1/credits/auto-recharge/setup"):
        checker.check("post", path, call("POST", path, manage, json={}))
    checker.check(
        "post", "/api/v1/credits/checkout", call("POST", "/api/v1/credits/checkout", manage, json={"amount": "10"})
    )
    checker.check(
        "put",
        "/api/v1/credits/auto-recharge",
        call("PUT", "/api/v1/credits/auto-recharge", manage, json={"threshold": "5", "amount": "20"}),
    )
    checker.check("get", "/health", call("GET", "/health"))
    checker.check("get", "/api/v1/health", call("GET", "/api/v1/health"))
    checker.check("get", "/ready", call("GET", "/ready"))

    # Errors, in the documented error shape.
    errors = [
        ("post", "/api/v1/responses", call("POST", "/api/v1/responses", auth, json={"input": "x", "store": True})),
        ("post", "/api/v1/responses", call("POST", "/api/v1/responses", json={"input": "x"})),
        ("post", "/api/v1/completions", call("POST", "/api/v1/completions", auth, content=b"{")),
        (
            "post",
            "/api/v1/chat/completions",
            call(
                "POST",
                "/api/v1/chat/completions",
                manage,
                json={"model": "fake/chat", "messages": [{"role": "user", "content": "hi"}]},
            ),
        ),
        ("get", "/api/v1/model/{author}/{slug}", call("GET", "/api/v1/model/no/such")),
        ("get", "/api/v1/keys", call("GET", "/api/v1/keys", auth)),
        ("get", "/api/v1/generation", call("GET", "/api/v1/generation", auth)),
        ("get", "/api/v1/responses/{response_id}", call("GET", "/api/v1/responses/" + done["id"], auth)),
        ("delete", "/api/v1/responses/{response_id}", call("DELETE", "/api/v1/responses/" + done["id"], auth)),
    ]
    for method, path, response in errors:
        assert response.status_code >= 400
        checker.check(method, path, response)
    documented = {(method, path) for path, methods in document["paths"].items() for method in methods}
    assert documented - checker.checked == {("get", "/api/v1/openapi.json")}
    assert api == server.base_url + "/api/v1"


def test_every_documented_example_is_valid_and_accepted(server: GatewayServer, document: dict[str, Any]) -> None:
    checker = Checker(document)
    owner = server.new_account("10", management=True)
    user_key, _ = server.new_key(owner.id)
    _, spare_hash = server.new_key(owner.id)
    tokens = {"apiKey": user_key, "managementKey": owner.key, "adminToken": server.admin_token}
    tried = 0
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            media = ((operation.get("requestBody") or {}).get("content") or {}).get("application/json") or {}
            if "example" not in media:
                continue
            checker.validate(media["schema"], media["example"], f"{method} {path} example")
            scheme = next(iter(operation["security"][0])) if operation.get("security") else None
            headers = {"Authorization": f"Bearer {tokens[scheme]}"} if scheme else {}
            url = server.base_url + path.replace("{hash}", spare_hash).replace("{account_id}", owner.id)
            response = httpx.request(method, url, json=media["example"], headers=headers, timeout=30)
            assert response.status_code < 300, (method, path, response.text)
            checker.check(method, path, response)
            tried += 1
    assert tried >= 10
