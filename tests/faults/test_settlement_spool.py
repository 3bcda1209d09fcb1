"""A response the client sees is billed, durably: a settlement the database does not confirm in time
is fsynced to the spool before the answer, and replayed exactly once (at the next start, or by
`tollway reconcile --fix`) after the process died with it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import make_database_url
from tests.fakes.tcp_proxy import CuttableProxy
from tests.faults.own_redis import OwnRedis
from tests.support import GatewayServer, nanos, run_cli, start_gateway
from tollway.db.engine import create_engine
from tollway.db.migrations import migrate
from tollway.ledger.records import EntryKind, GenerationRecord, LedgerEntry
from tollway.ledger.spool import Spool, replay
from tollway.ledger.store import LedgerStore

pytestmark = pytest.mark.slow

ECHO = {
    "model": "tollway/offline-small",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "/echo " + " ".join(f"w{i}" for i in range(30))}],
}


def gateway_for(database_path: Path, spool: Path, directory: Path) -> GatewayServer:
    env = {"TOLLWAY_SPOOL_PATH": str(spool), "TOLLWAY_LEDGER_FLUSH_TIMEOUT_SECONDS": "0.5"}
    return start_gateway(f"sqlite:///{database_path}", None, directory, env=env)


@contextmanager
def database_locked(database_path: Path) -> Iterator[None]:
    """Another process holds the write lock: commits wait and time out (readers go on)."""
    connection = sqlite3.connect(database_path, isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


def usage_entries(database_path: Path, generation_id: str) -> int:
    with sqlite3.connect(database_path) as connection:
        row = connection.execute(
            "SELECT count(*) FROM ledger_entries WHERE generation_id = ? AND kind = 'usage'", (generation_id,)
        ).fetchone()
    return int(row[0])


def postgres_usage_entries(database_url: str, generation_id: str) -> int:
    async def count() -> int:
        connection = await asyncpg.connect(database_url)
        try:
            query = "SELECT count(*) FROM ledger_entries WHERE generation_id = $1 AND kind = 'usage'"
            return int(await connection.fetchval(query, generation_id))
        finally:
            await connection.close()

    return asyncio.run(count())


def answered_then_killed(database_path: Path, spool: Path, directory: Path) -> tuple[str, str, str, int]:
    """Serve one request while the database cannot commit, then kill -9 the gateway before it can."""
    gateway = gateway_for(database_path, spool, directory)
    account = gateway.new_account("1")
    warm = gateway.post("/chat/completions", account.key, ECHO)
    assert warm.status_code == 200
    with database_locked(database_path):
        started = time.monotonic()
        response = gateway.post("/chat/completions", account.key, ECHO)
        waited_s = time.monotonic() - started
        assert response.status_code == 200, response.text
        assert waited_s < 5  # bounded by the flush timeout, not by the database
        generation_id = response.json()["id"]
        # Durable before the answer: the spool file holds the settlement.
        lines = [json.loads(line) for f in spool.glob("*.spool") for line in f.read_text().splitlines()]
        assert [line["generation"]["id"] for line in lines] == [generation_id]
        assert lines[0]["entry"]["amount_nanos"] == nanos(response.json()["usage"]["cost"])
        os.kill(gateway.process.pid, signal.SIGKILL)
        gateway.process.wait(10)
    assert usage_entries(database_path, generation_id) == 0  # the database never got it
    cost = nanos(response.json()["usage"]["cost"]) + nanos(warm.json()["usage"]["cost"])
    return account.id, account.key, generation_id, cost


def test_a_dead_process_spool_is_replayed_once_at_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database_path, spool = tmp_path / "spool.db", tmp_path / "spool"
    monkeypatch.setenv("TOLLWAY_SPOOL_PATH", str(spool))
    account_id, key, generation_id, billed = answered_then_killed(database_path, spool, tmp_path)
    report = run_cli("reconcile", "--json", database_url=f"sqlite:///{database_path}", check=False)
    assert report.returncode == 1
    assert "spooled_settlement_not_in_ledger" in report.stdout
    for _ in range(2):  # a second start finds nothing left to replay
        gateway = gateway_for(database_path, spool, tmp_path)
        try:
            assert usage_entries(database_path, generation_id) == 1
            assert list(spool.glob("*.spool")) == []
            figures = gateway.get("/credits", key).json()["data"]
            assert nanos(figures["total_usage"]) == billed
            assert gateway.balance(account_id)["total_usage"] == figures["total_usage"]
        finally:
            gateway.stop()
    report = run_cli("reconcile", database_url=f"sqlite:///{database_path}", check=False)
    assert report.returncode == 0, report.stdout


def test_reconcile_fix_replays_the_spool_exactly_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database_path, spool = tmp_path / "fix.db", tmp_path / "spool"
    monkeypatch.setenv("TOLLWAY_SPOOL_PATH", str(spool))
    _account_id, key, generation_id, billed = answered_then_killed(database_path, spool, tmp_path)
    url = f"sqlite:///{database_path}"
    assert run_cli("reconcile", database_url=url, check=False).returncode == 1
    fixed = run_cli("reconcile", "--fix", "--json", database_url=url, check=False)
    assert json.loads(fixed.stdout)["spool_replayed"] == 1
    assert usage_entries(database_path, generation_id) == 1
    assert run_cli("reconcile", database_url=url, check=False).returncode == 0
    gateway = gateway_for(database_path, spool, tmp_path)
    try:
        assert usage_entries(database_path, generation_id) == 1
        assert nanos(gateway.get("/credits", key).json()["data"]["total_usage"]) == billed
    finally:
        gateway.stop()


def test_a_clean_shutdown_leaves_no_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database_path, spool = tmp_path / "clean.db", tmp_path / "spool"
    monkeypatch.setenv("TOLLWAY_SPOOL_PATH", str(spool))
    gateway = gateway_for(database_path, spool, tmp_path)
    account = gateway.new_account("1")
    with database_locked(database_path):
        assert gateway.post("/chat/completions", account.key, ECHO).status_code == 200
        assert len(list(spool.glob("*.spool"))) == 1
    # The database is back: the writer commits the queued settlement and empties the spool.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(f.stat().st_size for f in spool.glob("*.spool")):
        time.sleep(0.1)
    assert all(f.stat().st_size == 0 for f in spool.glob("*.spool"))
    gateway.stop()
    assert list(spool.glob("*.spool")) == []
    assert run_cli("reconcile", database_url=f"sqlite:///{database_path}", check=False).returncode == 0


def test_a_failed_postgres_commit_is_spooled_and_replayed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database connection breaks (not just slow): the answer still waits for the fsynced spool line."""
    urls = make_database_url("postgres", tmp_path)
    direct_url = next(urls)
    proxy = CuttableProxy("127.0.0.1", 5432).start()
    spool = tmp_path / "spool"
    monkeypatch.setenv("TOLLWAY_SPOOL_PATH", str(spool))
    env = {"TOLLWAY_SPOOL_PATH": str(spool), "TOLLWAY_LEDGER_FLUSH_TIMEOUT_SECONDS": "0.5"}
    proxied_url = direct_url.replace(":5432/", f":{proxy.port}/")
    try:
        gateway = start_gateway(proxied_url, None, tmp_path, env=env)
        account = gateway.new_account("1")
        warm = gateway.post("/chat/completions", account.key, ECHO)
        assert warm.status_code == 200
        proxy.cut()
        response = gateway.post("/chat/completions", account.key, ECHO)
        assert response.status_code == 200, response.text
        generation_id = response.json()["id"]
        lines = [json.loads(line) for f in spool.glob("*.spool") for line in f.read_text().splitlines()]
        assert [line["generation"]["id"] for line in lines] == [generation_id]
        os.kill(gateway.process.pid, signal.SIGKILL)
        gateway.process.wait(10)
        proxy.restore()
        assert run_cli("reconcile", database_url=direct_url, check=False).returncode == 1
        for _ in range(2):
            restarted = start_gateway(direct_url, None, tmp_path, env=env)
            try:
                figures = restarted.get("/credits", account.key).json()["data"]
                billed = nanos(warm.json()["usage"]["cost"]) + nanos(response.json()["usage"]["cost"])
                assert nanos(figures["total_usage"]) == billed
            finally:
                restarted.stop()
        assert postgres_usage_entries(direct_url, generation_id) == 1
        report = run_cli("reconcile", "--json", database_url=direct_url, check=False)
        assert report.returncode == 0, report.stdout
        assert list(spool.glob("*.spool")) == []
    finally:
        proxy.stop()
        for _ in urls:
            pass


def test_a_late_commit_after_redis_lost_its_figures_is_still_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis counted a settlement whose commit was late, then lost its figures and reloaded them from a
    ledger without it: once the commit lands, the figures reload again and include it."""
    redis_server = OwnRedis(tmp_path).start()
    database_path, spool = tmp_path / "late.db", tmp_path / "spool"
    env = {
        "TOLLWAY_SPOOL_PATH": str(spool),
        "TOLLWAY_LEDGER_FLUSH_TIMEOUT_SECONDS": "0.5",
        "TOLLWAY_REDIS_URL": redis_server.url,
    }
    monkeypatch.setenv("TOLLWAY_REDIS_URL", redis_server.url)
    monkeypatch.setenv("TOLLWAY_SPOOL_PATH", str(spool))
    gateway = start_gateway(f"sqlite:///{database_path}", None, tmp_path, env=env)
    try:
        account = gateway.new_account("1")
        warm = gateway.post("/chat/completions", account.key, ECHO)
        with database_locked(database_path):
            late = gateway.post("/chat/completions", account.key, ECHO)
            assert late.status_code == 200
            redis_server.flushall()
            reloaded = gateway.get("/credits", account.key).json()["data"]
            assert nanos(reloaded["total_usage"]) == nanos(warm.json()["usage"]["cost"])  # the ledger, for now
        billed = nanos(warm.json()["usage"]["cost"]) + nanos(late.json()["usage"]["cost"])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if nanos(gateway.get("/credits", account.key).json()["data"]["total_usage"]) == billed:
                break
            time.sleep(0.1)
        assert nanos(gateway.get("/credits", account.key).json()["data"]["total_usage"]) == billed
        assert nanos(gateway.get("/key", account.key).json()["data"]["usage"]) == billed
        assert usage_entries(database_path, late.json()["id"]) == 1
        report = run_cli("reconcile", "--json", database_url=f"sqlite:///{database_path}", check=False)
        assert report.returncode == 0, report.stdout
    finally:
        gateway.stop()
        redis_server.stop()


def test_replay_skips_a_torn_line_and_fills_columns_an_older_version_did_not_spool(tmp_path: Path) -> None:
    async def scenario() -> None:
        engine = create_engine(f"sqlite:///{tmp_path / 'replay.db'}")
        await migrate(engine)
        store = LedgerStore(engine)
        directory = tmp_path / "spool"
        spool = Spool(directory, "dead-process", await store.identity())
        for index in range(2):
            generation = GenerationRecord(
                id=f"gen-replay-{index}",
                account_id="acct",
                key_id="key",
                model="tollway/offline-small",
                provider_name="offline",
                created_at_us=1_000 + index,
                cost_nanos=76_000,
            )
            entry = LedgerEntry(
                "acct", EntryKind.USAGE, 76_000, 1_000 + index, key_id="key", generation_id=generation.id
            )
            spool.append(generation, entry)
        spool.close()
        path = spool.path
        lines = path.read_bytes().splitlines()
        older = json.loads(lines[1])
        for newer_column in ("session_id", "preset_id", "cost_details", "hold_nanos", "hold_overrun_nanos"):
            older["generation"].pop(newer_column, None)
        poisoned = json.loads(lines[0])
        poisoned["generation"]["id"] = "gen-poisoned"
        poisoned["generation"]["account_id"] = None  # a row the database refuses (NOT NULL)
        poisoned["entry"]["generation_id"] = "gen-poisoned"
        body = [lines[0], json.dumps(poisoned).encode(), json.dumps(older).encode(), lines[0][: len(lines[0]) // 2]]
        path.write_bytes(b"\n".join(body))
        first = await replay(directory, store)  # one refused row holds neither the others nor a start back
        assert (first.settlements, first.written) == (3, 2)
        assert [s.generation["id"] for s in first.refused] == ["gen-poisoned"]
        assert not path.exists()
        assert [p.name for p in directory.iterdir()] == [path.name + ".refused"]
        again = await replay(directory, store)
        assert again.written == 0 and len(again.refused) == 1  # kept aside for an operator, not retried
        totals = await store.account_totals("acct")
        assert totals.usage_nanos == 2 * 76_000
        await engine.dispose()

    asyncio.run(scenario())
