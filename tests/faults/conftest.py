"""Fixtures of the payment fault tests: the fake payment servers and a paying gateway on each database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.payment_servers import FakePayments
from tests.faults.payment_support import Site, reset, run_site


@pytest.fixture(scope="module")
def fake() -> Iterator[FakePayments]:
    server = FakePayments().start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def site(
    request: pytest.FixtureRequest, fake: FakePayments, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    yield from run_site(request.param, fake, tmp_path_factory.mktemp(f"payments-{request.param}"))


@pytest.fixture
def fresh_fake(fake: FakePayments) -> None:
    """The fake payment servers without the failures and delays an earlier test set."""
    reset(fake)
