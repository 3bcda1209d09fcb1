"""Schema-driven fuzzing: schemathesis generates requests from GET /api/v1/openapi.json for every documented
operation and sends them to a running gateway with a funded key; no answer may be a 5xx, and every answer
must be what the document says (status, content type and body schema). Bounded: schemathesis' coverage
cases (boundaries, wrong types, missing fields) and five generated examples per operation, so the whole
file stays well under a minute as operations are added."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import fake_payments_env
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.fakes.payment_servers import FakePayments
from tests.support import GatewayServer, start_sqlite_gateway
from tollway.api.openapi import document

schema = schemathesis.openapi.from_dict(document())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed(
    upstream: FakeOpenAIUpstream, fake_payments: FakePayments, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("fuzz")
    # Payments configured (against the fake Stripe and crypto servers), so their endpoints answer.
    server = start_sqlite_gateway(directory, upstream.base_url, env=fake_payments_env(fake_payments))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fuzz_key(fuzzed: GatewayServer) -> str:
    return fuzzed.new_account("1000", management=False).key


@pytest.fixture(scope="module")
def fuzz_management_key(fuzzed: GatewayServer) -> str:
    return fuzzed.new_account("1000", management=True).key


BOUNDED = settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@schema.parametrize()
@BOUNDED
def test_no_generated_request_gets_a_5xx_or_an_undocumented_answer(
    case: schemathesis.Case[Any], fuzzed: GatewayServer, fuzz_key: str
) -> None:
    headers = {"Authorization": f"Bearer {fuzz_key}"}
    case.call_and_validate(base_url=fuzzed.base_url, headers=headers, checks=CHECKS, timeout=30)


@schema.include(tag_regex="^(Keys|Payments|Account)$").parametrize()
@BOUNDED
def test_management_operations_under_a_management_key(
    case: schemathesis.Case[Any], fuzzed: GatewayServer, fuzz_management_key: str
) -> None:
    headers = {"Authorization": f"Bearer {fuzz_management_key}"}
    case.call_and_validate(base_url=fuzzed.base_url, headers=headers, checks=CHECKS, timeout=30)


@schema.include(tag="Admin").parametrize()
@BOUNDED
def test_admin_operations_under_the_admin_token(case: schemathesis.Case[Any], fuzzed: GatewayServer) -> None:
    headers = {"Authorization": f"Bearer {fuzzed.admin_token}"}
    case.call_and_validate(base_url=fuzzed.base_url, headers=headers, checks=CHECKS, timeout=30)
