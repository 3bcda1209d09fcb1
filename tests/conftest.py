"""Shared fixtures: the fake upstream, databases (SQLite and PostgreSQL), and running gateways."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from hypothesis import settings

from tests.fakes.anthropic_upstream import FakeAnthropicUpstream
from tests.fakes.gemini_upstream import FakeGeminiUpstream
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.fakes.payment_servers import FakePayments
from tests.support import GatewayServer, start_gateway, write_config

# Timing varies on a shared 2-core machine; properties are about results, not speed.
settings.register_profile("tollway", deadline=None, print_blob=True)
settings.load_profile("tollway")

STRIPE_WEBHOOK_SECRET = "whsec_test_" + "a" * 24
CRYPTO_WEBHOOK_SECRET = "crypto_secret_test"
# A role that may create databases; `make test` sets it to the role scripts/ensure-services.sh creates.
POSTGRES_ADMIN_DSN = os.environ.get("TOLLWAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeOpenAIUpstream]:
    server = FakeOpenAIUpstream().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset_upstream(request: pytest.FixtureRequest) -> None:
    if "upstream" in request.fixturenames:
        request.getfixturevalue("upstream").reset()


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropicUpstream]:
    server = FakeAnthropicUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGeminiUpstream]:
    server = FakeGeminiUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def fresh_fakes(claude: FakeAnthropicUpstream, gemini: FakeGeminiUpstream) -> None:
    """The Anthropic and Gemini fakes with no calls or scripted answers left from an earlier test."""
    claude.reset()
    gemini.reset()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


async def _create_database(name: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def _drop_database(name: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def make_database_url(kind: str, directory: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{directory / ('tollway-' + secrets.token_hex(4) + '.db')}"
        return
    name = f"tollway_test_{secrets.token_hex(4)}"
    asyncio.run(_create_database(name))
    try:
        yield f"{POSTGRES_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(_drop_database(name))


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from make_database_url(request.param, tmp_path_factory.mktemp("db"))


@pytest.fixture(scope="session")
def gateway(database_url: str, upstream: FakeOpenAIUpstream, artifacts: Path) -> Iterator[GatewayServer]:
    config = write_config(artifacts / f"config-{secrets.token_hex(3)}.yaml", upstream.base_url)
    server = start_gateway(database_url, config, artifacts)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def small_free_tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("free")
    server = start_gateway(
        f"sqlite:///{directory / 'free.db'}",
        None,
        directory,
        env={
            "TOLLWAY_FREE_REQUESTS_PER_MINUTE": "1000",
            "TOLLWAY_FREE_REQUESTS_PER_DAY": "5",
            "TOLLWAY_FREE_REQUESTS_PER_DAY_UNLOCKED": "8",
        },
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_payments() -> Iterator[FakePayments]:
    server = FakePayments().start()
    yield server
    server.stop()


def fake_stripe_env(fake_payments: FakePayments) -> dict[str, str]:
    """The settings that point Stripe payments at the fake Stripe server."""
    return {
        "TOLLWAY_STRIPE_SECRET_KEY": "sk_test_fake",
        "TOLLWAY_STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
        "TOLLWAY_STRIPE_API_BASE": fake_payments.stripe_base,
    }


def fake_payments_env(fake_payments: FakePayments) -> dict[str, str]:
    """The settings that point a gateway's Stripe and crypto payments at the fake payment servers."""
    return {
        **fake_stripe_env(fake_payments),
        "TOLLWAY_CRYPTO_API_KEY": "crypto_key_test",
        "TOLLWAY_CRYPTO_WEBHOOK_SECRET": CRYPTO_WEBHOOK_SECRET,
        "TOLLWAY_CRYPTO_API_BASE": fake_payments.crypto_base,
    }


@pytest.fixture(scope="session")
def paying_gateway(fake_payments: FakePayments, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    directory = tmp_path_factory.mktemp("payments")
    server = start_gateway(
        f"sqlite:///{directory / 'payments.db'}",
        None,
        directory,
        env={**fake_payments_env(fake_payments), "TOLLWAY_AUTO_RECHARGE_MIN_INTERVAL_SECONDS": "600"},
    )
    yield server
    server.stop()
