"""Alembic owns the schema: a database of the previous release upgrades in place with its ledger intact; the head
revision equals the tables the code declares; `serve` refuses a database ahead of or behind the code.

The previous release is the baseline revision's code, taken from git (commit db1f817) and run as it was: it
creates its database and serves the requests that fill it; the current code then upgrades and reconciles it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from tests.conftest import make_database_url
from tests.support import free_port, run_cli
from tollway.db.engine import create_engine
from tollway.db.migrations import LEGACY_REVISIONS, head_revision, include_object, migrate, schema_status
from tollway.db.tables import metadata

ROOT = Path(__file__).resolve().parents[2]
BASELINE_RELEASE = "db1f817"


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source of the release the baseline revision describes."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git history to run the previous release")
    target = tmp_path_factory.mktemp("previous-release")
    archive = subprocess.run(["git", "archive", BASELINE_RELEASE, "src"], cwd=ROOT, capture_output=True, check=False)
    if archive.returncode != 0:
        pytest.skip(f"commit {BASELINE_RELEASE} is not in this clone")
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target / "src"


def _old(source: Path, *args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(source)}
    return subprocess.run(
        [sys.executable, "-m", "tollway", *args, "--database-url", database_url],
        env=env,
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def _fill_through_the_old_api(source: Path, database_url: str, workdir: Path) -> dict[str, float]:
    """Serve the old release, then grant, spend and refuse through its HTTP API; the balances it reports."""
    port = free_port()
    token = "old-admin-token"
    env = {**os.environ, "PYTHONPATH": str(source), "TOLLWAY_ADMIN_TOKEN": token}
    log = (workdir / "old-serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tollway", "serve", "--port", str(port), "--database-url", database_url],
        env=env,
        cwd=source,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    admin = {"Authorization": f"Bearer {token}"}
    balances: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (workdir / "old-serve.log").read_text()
            time.sleep(0.1)
        for index, credits in enumerate(("10", "0.5", "3")):
            account = httpx.post(f"{base}/admin/accounts", json={"email": f"old{index}@example.com"}, headers=admin)
            account_id = account.json()["data"]["id"]
            httpx.post(f"{base}/admin/accounts/{account_id}/credits", json={"amount": credits}, headers=admin)
            key = httpx.post(
                f"{base}/admin/accounts/{account_id}/keys", json={"name": "old", "limit": "2"}, headers=admin
            ).json()["key"]
            for _ in range(3):
                reply = httpx.post(
                    f"{base}/chat/completions",
                    json={"model": "tollway/offline-small", "messages": [{"role": "user", "content": "/echo a b c"}]},
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=30,
                )
                assert reply.status_code == 200, reply.text
            balance = httpx.get(f"{base}/admin/accounts/{account_id}/balance", headers=admin).json()["data"]
            balances[account_id] = balance["balance"]
    finally:
        process.terminate()
        process.wait(20)
        log.close()
    return balances


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_database_of_the_previous_release_upgrades_with_its_ledger_intact(
    kind: str, previous_release: Path, tmp_path: Path
) -> None:
    for url in make_database_url(kind, tmp_path):
        balances = _fill_through_the_old_api(previous_release, url, tmp_path)
        assert len(balances) == 3
        status = asyncio.run(_status(url))
        assert status.state == "behind" and status.legacy_version == 5

        refused = run_cli("accounts", "list", database_url=url, check=False)
        assert refused.returncode == 2 and "tollway migrate" in refused.stderr

        upgraded = json.loads(run_cli("migrate", "--json", database_url=url).stdout)
        assert upgraded["applied"][0] == "0002_invites_audit_log"
        assert upgraded["revision"] == head_revision()
        assert json.loads(run_cli("migrate", "--json", database_url=url).stdout)["applied"] == []

        report = json.loads(run_cli("reconcile", "--json", database_url=url).stdout)
        assert report["clean"] is True and report["accounts_checked"] >= 3
        for account_id, before in balances.items():
            after = json.loads(run_cli("balance", account_id, "--json", database_url=url).stdout)["balance"]
            assert after == pytest.approx(before, abs=1e-9)
        assert asyncio.run(_differences(url)) == []


async def _status(url: str):  # type: ignore[no-untyped-def]
    engine = create_engine(url)
    try:
        return await schema_status(engine)
    finally:
        await engine.dispose()


async def _differences(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True, "include_object": include_object}),
                    metadata,
                )
            )
    finally:
        await engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_head_revision_is_the_declared_tables(kind: str, tmp_path: Path) -> None:
    """A schema change without its revision fails here: add one in src/tollway/db/alembic/versions."""
    for url in make_database_url(kind, tmp_path):
        engine = create_engine(url)
        applied = asyncio.run(migrate(engine))
        asyncio.run(engine.dispose())
        assert applied[0] == "0001_baseline" and applied[-1] == head_revision()
        assert asyncio.run(_differences(url)) == []


async def _set_revision(url: str, revision: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        await engine.dispose()


@pytest.fixture
def migrated_sqlite(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'tollway.db'}"
    run_cli("init", database_url=url)
    return url


def _serve(url: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tollway", "serve", "--port", str(free_port()), "--database-url", url, *extra],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_refuses_a_database_ahead_of_the_code(migrated_sqlite: str) -> None:
    asyncio.run(_set_revision(migrated_sqlite, "9999_from_the_future"))
    result = _serve(migrated_sqlite, env={"TOLLWAY_AUTO_MIGRATE": "true"})
    assert result.returncode == 2
    assert "9999_from_the_future" in result.stderr and "newer than this Tollway" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_database_behind_the_code_and_names_the_command(migrated_sqlite: str) -> None:
    previous = LEGACY_REVISIONS[max(LEGACY_REVISIONS) - 1]
    asyncio.run(_set_revision(migrated_sqlite, previous))
    result = _serve(migrated_sqlite)
    assert result.returncode == 2
    assert previous in result.stderr and "tollway migrate" in result.stderr and "auto_migrate" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_sql_prints_the_ddl_without_running_it(migrated_sqlite: str) -> None:
    previous = LEGACY_REVISIONS[max(LEGACY_REVISIONS) - 1]
    asyncio.run(_set_revision(migrated_sqlite, previous))
    ddl = run_cli("migrate", "--sql", database_url=migrated_sqlite).stdout
    assert "CREATE INDEX ix_generations_key_time" in ddl and "UPDATE alembic_version" in ddl
    assert asyncio.run(_status(migrated_sqlite)).current == previous  # nothing ran
    fresh = run_cli("migrate", "--sql", database_url="postgresql://nobody@127.0.0.1:1/none", check=False)
    assert fresh.returncode == 0, fresh.stderr
    assert "CREATE TABLE accounts" in fresh.stdout and "RULE audit_log_no_UPDATE" in fresh.stdout
    assert "ck_ledger_usage_not_negative" in fresh.stdout
