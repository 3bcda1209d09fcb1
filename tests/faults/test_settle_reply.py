"""A settlement's Redis step is written before the caller answers its client; only its reply comes later.

Readers on other connections (other processes) see the cost in place of the hold as soon as `begin_settle`
returned, before anything awaited its reply; the ledger's `settle` returns once the entry is committed,
with the reply still out, and what follows a settlement (auto-recharge's look at the balance) runs after it.
A reply Redis never sends (the connection dropped) is retried once, as every call is, and counts once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.fakes.tcp_proxy import CuttableProxy
from tests.faults.own_redis import OwnRedis
from tollway.auth.records import KeyRecord, unlimited_key
from tollway.clock import SystemClock
from tollway.db.engine import create_engine
from tollway.db.migrations import migrate
from tollway.ledger.records import EntryKind, GenerationRecord, LedgerEntry
from tollway.ledger.redis_book import RedisBook
from tollway.ledger.service import Ledger
from tollway.ledger.store import LedgerStore
from tollway.ledger.writer import LedgerWriter

HOLD, COST = 1_000_000, 600_000


def now_us() -> int:
    return int(time.time() * 1_000_000)


def key_for(account_id: str) -> KeyRecord:
    return unlimited_key(
        account_id, key_id="key-" + account_id, key_hash="h" + account_id, name="k", label="k", revision=0
    )


async def funded(store: LedgerStore, book: RedisBook) -> KeyRecord:
    account_id = uuid.uuid4().hex
    grant = LedgerEntry(account_id, EntryKind.GRANT, 10 * HOLD, now_us())
    await book.apply_local(replace(grant, id=await store.append(grant, origin="test")))
    return key_for(account_id)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path).start()
    yield server
    server.stop()


@contextlib.asynccontextmanager
async def ledger_and_book(directory: Path, redis_url: str, origin: str) -> AsyncIterator[tuple[LedgerStore, RedisBook]]:
    """A migrated SQLite ledger of record and a Redis book over it, both closed after the block."""
    engine = create_engine(f"sqlite:///{directory / (origin + '.db')}")
    await migrate(engine)
    store = LedgerStore(engine)
    book = RedisBook(store, origin, redis_url, hold_ttl_s=60)
    try:
        yield store, book
    finally:
        await book.close()
        await engine.dispose()


def test_readers_elsewhere_see_the_cost_before_the_reply_is_awaited(tmp_path: Path, redis_server: OwnRedis) -> None:
    async def scenario() -> None:
        async with ledger_and_book(tmp_path, redis_server.url, "here") as (store, book):
            elsewhere = RedisBook(store, "elsewhere", redis_server.url, hold_ttl_s=60)  # another process
            key = await funded(store, book)
            hold = (await book.try_reserve(key, HOLD, now_us())).hold
            assert hold is not None
            assert (await elsewhere.account_snapshot(key.account_id)).held_nanos == HOLD

            reply = book.begin_settle(hold, COST, now_us(), "gen-" + uuid.uuid4().hex)
            seen = await elsewhere.account_snapshot(key.account_id)  # the reply was not awaited yet
            assert (seen.usage_nanos, seen.held_nanos) == (COST, 0)
            assert book.open_hold_count == 0
            await reply
            assert (await book.account_snapshot(key.account_id)).usage_nanos == COST
            await elsewhere.close()

    asyncio.run(scenario())


def test_the_ledger_answers_after_the_commit_and_follows_the_reply_after(
    tmp_path: Path, redis_server: OwnRedis
) -> None:
    proxy = CuttableProxy("127.0.0.1", redis_server.port).start()

    async def scenario() -> None:
        async with ledger_and_book(tmp_path, f"redis://127.0.0.1:{proxy.port}/0", "proxied") as (store, book):
            writer = LedgerWriter(store, "proxied", queue_limit=100, flush_timeout_s=5)
            ledger = Ledger(store, book, writer, SystemClock(), min_affordable_tokens=16)
            after: list[int] = []
            key = await funded(store, book)
            for round_ in range(2):
                hold = (await book.try_reserve(key, HOLD, now_us())).hold
                assert hold is not None
                generation = GenerationRecord(
                    id="gen-" + uuid.uuid4().hex,
                    account_id=key.account_id,
                    key_id=key.id,
                    model="test/model",
                    provider_name="test",
                    created_at_us=now_us(),
                    cost_nanos=COST,
                )

                async def then() -> None:
                    after.append((await book.account_snapshot(key.account_id)).usage_nanos)

                if round_ == 1:
                    proxy.cut()  # the reply never comes on this connection: the step is sent again, once
                assert await ledger.settle(hold, generation, then=then)
                assert len(ledger.book_replies) == 1 and len(after) == round_  # answered; the reply still out
                if round_ == 1:
                    proxy.restore()
                assert await ledger.book_replies.drain(timeout_s=10)
                assert after == [COST * (n + 1) for n in range(round_ + 1)]
            totals = await store.account_totals(key.account_id)
            figures = await book.account_snapshot(key.account_id)
            assert (figures.usage_nanos, figures.held_nanos) == (totals.usage_nanos, 0) == (2 * COST, 0)

    try:
        asyncio.run(scenario())
    finally:
        proxy.stop()


def test_a_renewal_sent_before_a_settlement_but_run_after_it_puts_nothing_back(
    tmp_path: Path, redis_server: OwnRedis
) -> None:
    """The upkeep loop renews the holds it saw open; one settled meanwhile (its script ran first, on another
    connection) stayed held in Redis until its TTL, a phantom hold a balance read showed as in flight."""

    async def scenario() -> None:
        async with ledger_and_book(tmp_path, redis_server.url, "renew") as (store, book):
            key = await funded(store, book)
            hold = (await book.try_reserve(key, HOLD, now_us())).hold
            assert hold is not None
            seen_open = dict(book._open)  # what the upkeep loop took to renew
            await book.settle(hold, COST, now_us(), "gen-" + uuid.uuid4().hex)
            book._open.update(seen_open)
            await book.renew([hold], now_us())  # the renewal runs in Redis after the settlement
            book._open.clear()
            figures = await book.account_snapshot(key.account_id)
            assert (figures.usage_nanos, figures.held_nanos) == (COST, 0)

    asyncio.run(scenario())


def test_a_slot_renewal_run_after_its_request_ended_puts_no_slot_back(redis_server: OwnRedis) -> None:
    from tollway.limits import redis_backend

    with redis_server.client() as client:
        slots, ticket = "tw:limit:key:conc:k1", "ticket-1"
        client.zadd(slots, {ticket: now_us() + 60_000_000})
        give_back = client.register_script(redis_backend._GIVE_BACK)
        renew = client.register_script(redis_backend._RENEW)
        give_back(keys=[slots], args=["concurrency", 1, ticket])  # the request ended
        renew(keys=[slots], args=[now_us() + 60_000_000, 60_000, ticket])  # a renewal sent before that
        assert client.zcard(slots) == 0
        other = "ticket-2"  # a live request's slot Redis lost is still put back
        renew(keys=[slots], args=[now_us() + 60_000_000, 60_000, other])
        assert client.zrange(slots, 0, -1) == [other.encode()]
