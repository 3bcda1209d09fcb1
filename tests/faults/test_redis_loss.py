"""Redis is a cache of the ledger: FLUSHALL or a restart mid-load loses nothing and invents nothing.

Two gateway processes on PostgreSQL share a Redis of the test's own. Whatever Redis forgets, every
answered request has exactly one ledger entry, the sum of the costs the clients saw is the usage
the ledger and /credits show, a funded account never reads 0 nor gets 402, a grant made while the
figures are gone is counted once, and a key's spending cap keeps binding.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import make_database_url
from tests.fakes.tcp_proxy import CuttableProxy
from tests.faults.own_redis import OwnRedis
from tests.support import OFFLINE_ECHO, OFFLINE_ECHO_NANOS, GatewayServer, nanos, run_cli, start_gateway
from tollway.auth.records import KeyRecord, unlimited_key
from tollway.db.engine import create_engine
from tollway.db.migrations import migrate
from tollway.ledger.book import Hold
from tollway.ledger.records import EntryKind, LedgerEntry
from tollway.ledger.redis_book import RedisBook
from tollway.ledger.store import AccountLoad, LedgerStore

pytestmark = pytest.mark.slow

ECHO = OFFLINE_ECHO
PER_REQUEST = OFFLINE_ECHO_NANOS


class Cluster:
    def __init__(self, redis_server: OwnRedis, database_url: str, gateways: list[GatewayServer], spool: Path) -> None:
        self.redis = redis_server
        self.database_url = database_url
        self.gateways = gateways
        self.spool = spool


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("redis-loss")
    redis_server = OwnRedis(directory).start()
    urls = make_database_url("postgres", directory)
    database_url = next(urls)
    env = {
        "TOLLWAY_REDIS_URL": redis_server.url,
        "TOLLWAY_HOLD_TTL_SECONDS": "3",
        "TOLLWAY_SPOOL_PATH": str(directory / "spool"),
    }
    gateways = [start_gateway(database_url, None, directory, env=env) for _ in range(2)]
    try:
        yield Cluster(redis_server, database_url, gateways, directory / "spool")
    finally:
        for gateway in gateways:
            gateway.stop()
        redis_server.stop()
        for _ in urls:
            pass


def ledger_usage(database_url: str, account_id: str) -> tuple[dict[str, int], int]:
    """Usage entries per generation id, and the total of every credit entry, straight from PostgreSQL."""

    async def read() -> tuple[dict[str, int], int]:
        connection = await asyncpg.connect(database_url)
        try:
            rows = await connection.fetch(
                "SELECT generation_id, count(*) AS n FROM ledger_entries"
                " WHERE account_id = $1 AND kind = 'usage' GROUP BY generation_id",
                account_id,
            )
            credits = await connection.fetchval(
                "SELECT coalesce(sum(amount_nanos), 0) FROM ledger_entries WHERE account_id = $1 AND kind <> 'usage'",
                account_id,
            )
        finally:
            await connection.close()
        return {row["generation_id"]: row["n"] for row in rows}, int(credits)

    return asyncio.run(read())


def load(gateways: list[GatewayServer], key: str, count: int, concurrency: int) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        semaphore = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(timeout=60) as client:

            async def one(index: int) -> httpx.Response:
                async with semaphore:
                    return await client.post(
                        gateways[index % len(gateways)].api + "/chat/completions",
                        json=ECHO,
                        headers={"Authorization": f"Bearer {key}"},
                    )

            return list(await asyncio.gather(*[one(i) for i in range(count)]))

    return asyncio.run(run())


class CreditsWatcher(threading.Thread):
    """Reads /credits from every gateway until stopped; remembers every answer."""

    def __init__(self, gateways: list[GatewayServer], key: str) -> None:
        super().__init__(daemon=True)
        self.gateways = gateways
        self.key = key
        self.stopped = threading.Event()
        self.answers: list[tuple[int, dict[str, float] | None]] = []

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stopped.is_set():
                for gateway in self.gateways:
                    response = client.get(gateway.api + "/credits", headers={"Authorization": f"Bearer {self.key}"})
                    self.answers.append(
                        (response.status_code, response.json()["data"] if response.status_code == 200 else None)
                    )
                time.sleep(0.01)


def wait_for_total_credits(gateway: GatewayServer, key: str, expected_nanos: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        data = gateway.get("/credits", key).json()["data"]
        if nanos(data["total_credits"]) == expected_nanos:
            return
        time.sleep(0.05)
    raise AssertionError(f"total_credits stayed {data}, expected {expected_nanos / 1e9}")


def test_flushall_mid_load_loses_and_invents_nothing(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    gateways = cluster.gateways
    account = gateways[0].new_account("4.37")
    watcher = CreditsWatcher(gateways, account.key)
    watcher.start()
    results: list[httpx.Response] = []
    loader = threading.Thread(target=lambda: results.extend(load(gateways, account.key, 240, 16)))
    loader.start()
    flushes = 0
    while loader.is_alive() and flushes < 6:
        time.sleep(0.15)
        cluster.redis.flushall()
        flushes += 1
    loader.join()
    watcher.stopped.set()
    watcher.join()

    statuses = [r.status_code for r in results]
    assert statuses.count(402) == 0, [r.text for r in results if r.status_code == 402][:3]
    assert set(statuses) <= {200, 503}, set(statuses)
    assert statuses.count(200) >= 200
    served = {r.json()["id"]: nanos(r.json()["usage"]["cost"]) for r in results if r.status_code == 200}
    billed = sum(served.values())
    assert billed == statuses.count(200) * PER_REQUEST

    time.sleep(0.5)  # the last commits
    entries, credits = ledger_usage(cluster.database_url, account.id)
    assert {gid: entries.get(gid) for gid in served} == dict.fromkeys(served, 1)  # one entry per response
    assert set(entries) == set(served)  # and none for a request nobody was answered
    assert credits == nanos("4.37")
    for gateway in gateways:
        data = gateway.get("/credits", account.key).json()["data"]
        assert nanos(data["total_credits"]) == nanos("4.37")
        assert nanos(data["total_usage"]) == billed
    assert flushes >= 3
    # /credits never read 0 (nor anything but the funded amount) while Redis was being flushed.
    seen = [nanos(data["total_credits"]) for status, data in watcher.answers if status == 200 and data]
    assert len(seen) > 10
    assert set(seen) == {nanos("4.37")}
    # After recovery every cached figure is the ledger's.
    monkeypatch.setenv("TOLLWAY_REDIS_URL", cluster.redis.url)
    monkeypatch.setenv("TOLLWAY_SPOOL_PATH", str(cluster.spool))
    report = run_cli("reconcile", "--json", database_url=cluster.database_url, check=False)
    assert report.returncode == 0, report.stdout


def test_grants_made_while_flushed_count_exactly_once(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    gateways = cluster.gateways
    account = gateways[0].new_account("1")
    assert gateways[1].post("/chat/completions", account.key, ECHO).status_code == 200
    # A grant through a gateway's admin API and one through the CLI (another writer), both while
    # nothing is loaded, then the first request after them reloads.
    cluster.redis.flushall()
    assert gateways[0].admin("POST", f"/accounts/{account.id}/credits", {"amount": "2"}).status_code == 201
    monkeypatch.setenv("TOLLWAY_REDIS_URL", cluster.redis.url)
    run_cli("credits", "grant", account.id, "0.5", database_url=cluster.database_url)
    time.sleep(0.4)  # the pollers see the CLI's entry while the account is not loaded
    expected = nanos("3.5")
    for gateway in gateways:
        wait_for_total_credits(gateway, account.key, expected)
    assert gateways[1].post("/chat/completions", account.key, ECHO).status_code == 200
    # And a grant right after a flush with the account loaded again on one gateway only.
    cluster.redis.flushall()
    assert gateways[1].get("/credits", account.key).status_code == 200
    assert gateways[0].admin("POST", f"/accounts/{account.id}/credits", {"amount": "0.25"}).status_code == 201
    time.sleep(0.4)
    for gateway in gateways:
        wait_for_total_credits(gateway, account.key, expected + nanos("0.25"))
        data = gateway.get("/credits", account.key).json()["data"]
        assert nanos(data["total_usage"]) == 2 * PER_REQUEST
    _entries, credits = ledger_usage(cluster.database_url, account.id)
    assert credits == expected + nanos("0.25")


def test_key_cap_keeps_binding_across_flushes(cluster: Cluster) -> None:
    gateways = cluster.gateways
    account = gateways[0].new_account("5", limit="0.001")  # a cap of 13 requests of 76 µUSD
    spent = 0
    refused = 0
    for round_index in range(4):
        results = load(gateways, account.key, 8, 4)
        spent += sum(nanos(r.json()["usage"]["cost"]) for r in results if r.status_code == 200)
        refused += sum(1 for r in results if r.status_code in (402, 403))
        assert {r.status_code for r in results} <= {200, 402, 403}
        # A refusal here is the key's cap speaking, never an emptied balance.
        assert all("cap" in r.text for r in results if r.status_code != 200)
        cluster.redis.flushall()
        if round_index == 1:
            cluster.redis.flushall()
    assert spent <= nanos("0.001")
    assert spent == (nanos("0.001") // PER_REQUEST) * PER_REQUEST  # every affordable request was served
    assert refused > 0
    key = gateways[1].get("/key", account.key).json()["data"]
    assert nanos(key["usage"]) == spent
    assert nanos(key["limit_remaining"]) == nanos("0.001") - spent


def test_redis_restart_without_persistence(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    gateways = cluster.gateways
    account = gateways[0].new_account("4.37")
    first = load(gateways, account.key, 20, 4)
    assert {r.status_code for r in first} == {200}
    cluster.redis.restart()
    during = [gateways[i % 2].post("/chat/completions", account.key, ECHO) for i in range(6)]
    assert {r.status_code for r in during} <= {200, 503}
    after = load(gateways, account.key, 20, 4)
    assert {r.status_code for r in after} == {200}
    served = [r for r in first + during + after if r.status_code == 200]
    billed = sum(nanos(r.json()["usage"]["cost"]) for r in served)
    for gateway in gateways:
        data = gateway.get("/credits", account.key).json()["data"]
        assert nanos(data["total_credits"]) == nanos("4.37")
        assert nanos(data["total_usage"]) == billed
    entries, _credits = ledger_usage(cluster.database_url, account.id)
    assert sorted(entries) == sorted(r.json()["id"] for r in served)
    assert set(entries.values()) == {1}
    monkeypatch.setenv("TOLLWAY_REDIS_URL", cluster.redis.url)
    report = run_cli("reconcile", "--json", database_url=cluster.database_url, check=False)
    assert report.returncode == 0, report.stdout


def test_start_up_warns_when_redis_may_evict_the_figures(tmp_path: Path) -> None:
    evicting = OwnRedis(tmp_path, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru").start()
    env = {"TOLLWAY_REDIS_URL": evicting.url, "TOLLWAY_SQLITE_SYNCHRONOUS": "full"}
    gateway = start_gateway(f"sqlite:///{tmp_path / 'evict.db'}", None, tmp_path, env=env)
    try:
        account = gateway.new_account("1")
        assert gateway.post("/chat/completions", account.key, ECHO).status_code == 200
        log = gateway.log_path.read_text()
        assert "maxmemory-policy noeviction" in log and '"maxmemory_policy":"allkeys-lru"' in log
    finally:
        gateway.stop()
        evicting.stop()


# Property: whatever the order of holds, commits, settlements, grants, applications and Redis flushes,
# the figures Redis ends with are the ledger's (real Redis, real SQLite ledger, the book the gateway uses).

Step = tuple[str, int]
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(0, 50_000)),
        st.tuples(
            st.sampled_from(["commit", "settle", "settle_retried", "release", "apply", "apply_again"]),
            st.integers(0, 7),
        ),
        st.tuples(st.just("grant"), st.integers(-20_000, 400_000)),
        st.tuples(st.sampled_from(["flush", "read"]), st.just(0)),
    ),
    max_size=40,
)


def key_record(account_id: str) -> KeyRecord:
    return unlimited_key(
        account_id, key_id="key-" + account_id, key_hash="h" + account_id, name="k", label="k", revision=0
    )


async def run_steps(book: RedisBook, store: LedgerStore, redis_server: OwnRedis, steps: list[Step]) -> None:
    account_id = uuid.uuid4().hex
    key = key_record(account_id)
    now = lambda: int(time.time() * 1_000_000)  # noqa: E731
    grant = LedgerEntry(account_id, EntryKind.GRANT, 10_000_000, now())
    opening = replace(grant, id=await store.append(grant, origin="prop"))
    await book.apply_local(opening)
    open_holds: list[Hold] = []
    committed: list[tuple[Hold, int, str]] = []
    unapplied: list[LedgerEntry] = []
    applied: list[LedgerEntry] = [opening]

    async def commit(hold: Hold) -> None:
        cost = hold.amount_nanos * 3 // 4
        generation_id = "gen-" + uuid.uuid4().hex
        if cost:
            entry = LedgerEntry(account_id, EntryKind.USAGE, cost, now(), key_id=key.id, generation_id=generation_id)
            await store.write_batch([entry], [], "prop")
        committed.append((hold, cost, generation_id))

    for action, value in steps:
        if action == "reserve":
            outcome = await book.try_reserve(key, value, now())
            if outcome.hold is not None:
                open_holds.append(outcome.hold)
        elif action == "commit" and open_holds:
            await commit(open_holds.pop(value % len(open_holds)))
        elif action == "settle" and committed:
            hold, cost, generation_id = committed.pop(value % len(committed))
            await book.settle(hold, cost, now(), generation_id)
        elif action == "settle_retried" and committed:
            # Redis ran the script but its reply was lost (a dropped connection): the runner sends it once more.
            hold, cost, generation_id = committed.pop(value % len(committed))
            original = book._settle

            async def twice(keys: list[object], args: list[object], script: object = original) -> object:
                await script(keys=keys, args=args)  # type: ignore[operator]
                return await script(keys=keys, args=args)  # type: ignore[operator]

            book._settle = twice
            try:
                await book.settle(hold, cost, now(), generation_id)
            finally:
                book._settle = original
        elif action == "release" and open_holds:
            await book.release(open_holds.pop(value % len(open_holds)))
        elif action == "grant":
            entry = LedgerEntry(account_id, EntryKind.GRANT, value, now())
            unapplied.append(replace(entry, id=await store.append(entry, origin="prop")))
        elif action == "apply" and unapplied:
            entry = unapplied.pop(value % len(unapplied))
            await book.apply_local(entry)
            applied.append(entry)
        elif action == "apply_again" and applied:
            await book.apply_local(applied[value % len(applied)])  # a poller reading an entry twice
        elif action == "flush":
            redis_server.flushall()
        elif action == "read":
            await book.account_snapshot(account_id)
    while open_holds:
        await commit(open_holds.pop())
    for hold, cost, generation_id in committed:
        await book.settle(hold, cost, now(), generation_id)
    for entry in unapplied + applied:
        await book.apply_local(entry)

    totals = await store.account_totals(account_id)
    figures = await book.account_snapshot(account_id)
    assert (figures.credits_nanos, figures.usage_nanos, figures.granted_nanos, figures.held_nanos) == (
        totals.credits_nanos,
        totals.usage_nanos,
        totals.granted_nanos,
        0,
    )
    key_figures = await book.key_snapshot(key, now())
    assert key_figures.usage_nanos == (await store.key_usage(key.id, now())).total_nanos
    assert key_figures.held_nanos == 0


def test_redis_figures_equal_the_ledger_whatever_redis_forgets_and_when(tmp_path: Path) -> None:
    redis_server = OwnRedis(tmp_path).start()

    async def prepare() -> tuple[AsyncEngine, LedgerStore, RedisBook]:
        engine = create_engine(f"sqlite:///{tmp_path / 'property.db'}")
        await migrate(engine)
        store = LedgerStore(engine)
        return engine, store, RedisBook(store, "prop-book", redis_server.url, hold_ttl_s=60)

    loop = asyncio.new_event_loop()
    engine, store, book = loop.run_until_complete(prepare())
    try:

        @settings(max_examples=int(os.environ.get("TOLLWAY_PROPERTY_EXAMPLES", "60")))
        @given(STEPS)
        def check(steps: list[Step]) -> None:
            loop.run_until_complete(run_steps(book, store, redis_server, steps))

        check()
    finally:
        loop.run_until_complete(book.close())
        loop.run_until_complete(engine.dispose())
        loop.close()
        redis_server.stop()


def test_a_settlement_redis_missed_is_counted_once_it_answers_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis unreachable (not flushed) when a stream settles: the ledger has the entry, and once Redis
    answers again the figures reload from it; the stuck hold ends with its TTL."""
    redis_server = OwnRedis(tmp_path).start()
    proxy = CuttableProxy("127.0.0.1", redis_server.port).start()
    url = f"redis://127.0.0.1:{proxy.port}/0"
    env = {"TOLLWAY_REDIS_URL": url, "TOLLWAY_HOLD_TTL_SECONDS": "2", "TOLLWAY_OFFLINE_STREAM_DELAY_MS": "100"}
    monkeypatch.setenv("TOLLWAY_REDIS_URL", url)
    database_url = f"sqlite:///{tmp_path / 'unreachable.db'}"
    gateway = start_gateway(database_url, None, tmp_path, env=env)
    try:
        account = gateway.new_account("1")
        warm = gateway.post("/chat/completions", account.key, ECHO)
        assert warm.status_code == 200
        body: list[bytes] = []

        def read() -> None:
            with httpx.stream(
                "POST",
                gateway.api + "/chat/completions",
                json={**ECHO, "stream": True},
                headers={"Authorization": f"Bearer {account.key}"},
                timeout=30,
            ) as response:
                body.extend(response.iter_bytes())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(0.5)
        proxy.cut()
        reader.join(15)
        text = b"".join(body).decode()
        assert "data: [DONE]" in text
        usage_line = next(line for line in text.splitlines() if '"cost"' in line)
        streamed = nanos(json.loads(usage_line.removeprefix("data: "))["usage"]["cost"])
        proxy.restore()
        billed = nanos(warm.json()["usage"]["cost"]) + streamed
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            figures = gateway.balance(account.id)
            if nanos(figures["total_usage"]) == billed and nanos(figures["held_in_flight"]) == 0:
                break
            time.sleep(0.1)
        assert nanos(figures["total_usage"]) == billed
        assert nanos(figures["held_in_flight"]) == 0
        assert nanos(gateway.get("/credits", account.key).json()["data"]["total_usage"]) == billed
        report = run_cli("reconcile", "--json", database_url=database_url, check=False)
        assert report.returncode == 0, report.stdout
    finally:
        gateway.stop()
        proxy.stop()
        redis_server.stop()


async def concurrent_round(
    book: RedisBook, store: LedgerStore, redis_server: OwnRedis, rng: random.Random
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Settlements, grants, reloads and flushes of one account, all at once; returns (Redis, ledger) figures."""
    account_id = uuid.uuid4().hex
    key = key_record(account_id)
    now = lambda: int(time.time() * 1_000_000)  # noqa: E731
    opening = LedgerEntry(account_id, EntryKind.GRANT, 50_000_000, now())
    await book.apply_local(replace(opening, id=await store.append(opening, origin="prop")))
    holds = [h for h in [(await book.try_reserve(key, rng.randint(1, 90_000), now())).hold for _ in range(30)] if h]

    async def settle(hold: Hold) -> None:
        await asyncio.sleep(rng.random() * 0.05)
        cost = hold.amount_nanos // 2
        generation_id = "gen-" + uuid.uuid4().hex
        entry = LedgerEntry(account_id, EntryKind.USAGE, cost, now(), key_id=key.id, generation_id=generation_id)
        await store.write_batch([entry], [], "prop")  # the commit, then the book: as Ledger.settle does
        await asyncio.sleep(rng.random() * 0.01)
        await book.settle(hold, cost, now(), generation_id)

    async def grant() -> None:
        await asyncio.sleep(rng.random() * 0.05)
        entry = LedgerEntry(account_id, EntryKind.GRANT, rng.randint(1, 1_000_000), now())
        stored = replace(entry, id=await store.append(entry, origin="prop"))
        await asyncio.sleep(rng.random() * 0.01)
        await book.apply_local(stored)
        await book.apply_local(stored)  # read twice by a poller

    async def read() -> None:
        await asyncio.sleep(rng.random() * 0.05)
        await book.account_snapshot(account_id)
        await book.key_snapshot(key, now())

    async def flush() -> None:
        await asyncio.sleep(rng.random() * 0.05)
        redis_server.flushall()

    tasks = [settle(h) for h in holds] + [grant() for _ in range(5)] + [read() for _ in range(8)]
    tasks += [flush() for _ in range(rng.randint(1, 3))]
    await asyncio.gather(*tasks)
    figures = await book.account_snapshot(account_id)
    totals = await store.account_totals(account_id)
    key_usage = (await book.key_snapshot(key, now())).usage_nanos
    ledger_key_usage = (await store.key_usage(key.id, now())).total_nanos
    return (
        (figures.credits_nanos, figures.usage_nanos, key_usage),
        (totals.credits_nanos, totals.usage_nanos, ledger_key_usage),
    )


def test_concurrent_reloads_settlements_and_flushes_end_equal_to_the_ledger(tmp_path: Path) -> None:
    redis_server = OwnRedis(tmp_path).start()

    async def rounds() -> None:
        engine = create_engine(f"sqlite:///{tmp_path / 'concurrent.db'}")
        await migrate(engine)
        store = LedgerStore(engine)
        books = [RedisBook(store, f"prop-{i}", redis_server.url, hold_ttl_s=60) for i in range(2)]
        try:
            for seed in range(int(os.environ.get("TOLLWAY_CONCURRENT_ROUNDS", "12"))):
                cached, ledger = await concurrent_round(books[seed % 2], store, redis_server, random.Random(seed))
                assert cached == ledger, seed
        finally:
            for book in books:
                await book.close()
            await engine.dispose()

    try:
        asyncio.run(rounds())
    finally:
        redis_server.stop()


class RacingStore(LedgerStore):
    """The real ledger store, with a hook that runs once between a load's SQL read and its Redis write."""

    race: Callable[[], Awaitable[None]] | None = None

    async def account_load(
        self,
        account_id: str,
        parked_generation_ids: list[str],
        parked_entry_ids: list[int],
        recent_credits_since_us: int,
        recent_usage_since_us: int,
    ) -> AccountLoad:
        load = await super().account_load(
            account_id, parked_generation_ids, parked_entry_ids, recent_credits_since_us, recent_usage_since_us
        )
        race, self.race = self.race, None
        if race is not None:
            await race()
        return load


def test_a_flush_during_a_reload_does_not_lose_what_was_parked_meanwhile(tmp_path: Path) -> None:
    redis_server = OwnRedis(tmp_path).start()

    async def scenario() -> None:
        engine = create_engine(f"sqlite:///{tmp_path / 'race.db'}")
        await migrate(engine)
        store = RacingStore(engine)
        book = RedisBook(store, "race", redis_server.url, hold_ttl_s=60)
        account_id = uuid.uuid4().hex
        key = key_record(account_id)
        now_us = int(time.time() * 1_000_000)
        opening = LedgerEntry(account_id, EntryKind.GRANT, 10_000_000, now_us)
        await book.apply_local(replace(opening, id=await store.append(opening, origin="race")))
        hold = (await book.try_reserve(key, 50_000, now_us)).hold
        assert hold is not None
        redis_server.flushall()

        async def settle_then_flush() -> None:
            # After the loader read the ledger: a settlement commits and, the account not being loaded,
            # parks its usage; then Redis is flushed again, parked item included.
            entry = LedgerEntry(account_id, EntryKind.USAGE, 40_000, now_us, key_id=key.id, generation_id="gen-race")
            await store.write_batch([entry], [], "race")
            await book.settle(hold, 40_000, now_us, "gen-race")
            redis_server.flushall()

        store.race = settle_then_flush
        figures = await book.account_snapshot(account_id)
        assert (figures.credits_nanos, figures.usage_nanos) == (10_000_000, 40_000)
        await book.close()
        await engine.dispose()

    try:
        asyncio.run(scenario())
    finally:
        redis_server.stop()
