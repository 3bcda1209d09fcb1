"""A newcomer's first run: the demo sign-in and key, kept across runs; the CLI's refusals; key and limit edits."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_dashboard_http import signed_in
from tests.support import GatewayServer, run_cli, start_gateway


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayServer, dict[str, object]]]:
    directory = tmp_path_factory.mktemp("first-run")
    database = f"sqlite:///{directory / 'tollway.db'}"
    first = json.loads(run_cli("demo", "--json", database_url=database).stdout)
    server = start_gateway(database, None, directory)
    yield server, first
    server.stop()


def _bare_tollway(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`tollway ARGS` run in `folder` with no TOLLWAY_ setting in its environment and no --database-url."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TOLLWAY_")}
    command = [sys.executable, "-m", "tollway", *args]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_demo_shows_the_same_key_and_sign_in_each_run(demo_run: tuple[GatewayServer, dict[str, object]]) -> None:
    server, first = demo_run
    again = json.loads(run_cli("demo", "--json", database_url=server.database_url).stdout)
    assert first["key_created"] is True and again["key_created"] is False
    assert again["key"] == first["key"]
    assert again["sign_in"] == first["sign_in"]
    assert again["dashboard_url"] == "http://127.0.0.1:8080"
    account_id = again["account"]["id"]  # type: ignore[index]
    keys = json.loads(run_cli("keys", "list", account_id, "--json", database_url=server.database_url).stdout)
    assert len(keys) == 1
    text = run_cli("demo", database_url=server.database_url).stdout
    assert "http://127.0.0.1:8080/login" in text and "demo@tollway.local" in text and str(first["key"]) in text


def test_the_demo_user_sees_the_demo_credits(demo_run: tuple[GatewayServer, dict[str, object]]) -> None:
    server, first = demo_run
    sign_in = first["sign_in"]
    assert isinstance(sign_in, dict)
    client = signed_in(server, sign_in["email"], sign_in["password"])
    page = client.get("/credits")
    assert page.status_code == 200
    assert "10.00" in page.text
    reply = server.post(
        "/chat/completions",
        str(first["key"]),
        {"model": "tollway/offline-small", "messages": [{"role": "user", "content": "/echo hi"}]},
    )
    assert reply.status_code == 200, reply.text


def test_api_v1_health_answers_like_health(demo_run: tuple[GatewayServer, dict[str, object]]) -> None:
    server, _ = demo_run
    plain = httpx.get(server.base_url + "/health", timeout=10)
    under_api = httpx.get(server.base_url + "/api/v1/health", timeout=10)
    assert under_api.status_code == plain.status_code == 200
    assert under_api.json().keys() == plain.json().keys()


def test_keys_update_raises_a_cap_and_sets_its_window(demo_run: tuple[GatewayServer, dict[str, object]]) -> None:
    server, first = demo_run
    db = server.database_url
    account_id = first["account"]["id"]  # type: ignore[index]
    created = json.loads(
        run_cli("keys", "create", account_id, "--name", "capped", "--limit", "1", "--json", database_url=db).stdout
    )
    key_hash = created["data"]["hash"]
    raised = json.loads(
        run_cli("keys", "update", key_hash, "--limit", "5", "--limit-reset", "daily", "--json", database_url=db).stdout
    )
    assert (raised["limit"], raised["limit_reset"], raised["name"]) == (5, "daily", "capped")
    renamed = json.loads(run_cli("keys", "update", key_hash, "--name", "team", "--json", database_url=db).stdout)
    assert (renamed["limit"], renamed["limit_reset"], renamed["name"]) == (5, "daily", "team")
    uncapped = json.loads(
        run_cli(
            "keys", "update", key_hash, "--limit", "none", "--limit-reset", "none", "--json", database_url=db
        ).stdout
    )
    assert (uncapped["limit"], uncapped["limit_reset"]) == (None, None)
    nothing = run_cli("keys", "update", key_hash, database_url=db, check=False)
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr
    bad = run_cli("keys", "update", key_hash, "--limit-reset", "yearly", database_url=db, check=False)
    assert bad.returncode == 1 and "daily, weekly, monthly" in bad.stderr
    audit = run_cli("audit", account_id, "--json", database_url=db, check=False)
    assert audit.returncode == 0 and "key.update" in audit.stdout


def test_limits_set_changes_only_the_named_limits(demo_run: tuple[GatewayServer, dict[str, object]]) -> None:
    server, first = demo_run
    db = server.database_url
    account_id = str(first["account"]["id"])  # type: ignore[index]

    def limits(*args: str) -> dict[str, object]:
        out = run_cli("limits", "set", "--account", account_id, *args, "--json", database_url=db).stdout
        return json.loads(out)["limits"]  # type: ignore[no-any-return]

    limits("--requests", "60", "--per", "minute")
    after = limits("--concurrency", "3")
    assert (after["requests"], after["per"], after["concurrency"]) == (60, "minute", 3)
    after = limits("--per", "hour")
    assert (after["requests"], after["per"], after["concurrency"]) == (60, "hour", 3)
    after = limits("--clear", "--tokens-per-minute", "1000")
    assert (after["requests"], after["concurrency"], after["tokens_per_minute"]) == (None, None, 1000)


def test_no_database_is_created_silently_in_the_current_folder(tmp_path: Path) -> None:
    refused = _bare_tollway(tmp_path, "accounts", "list")
    assert refused.returncode == 2
    assert str(tmp_path / "tollway.db") in refused.stderr and "tollway init" in refused.stderr
    assert "--database-url" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "tollway.db").exists()
    serve = _bare_tollway(tmp_path, "serve")
    assert serve.returncode == 2 and "tollway init" in serve.stderr
    assert not (tmp_path / "tollway.db").exists()
    init = _bare_tollway(tmp_path, "init")
    assert init.returncode == 0 and str(tmp_path / "tollway.db") in init.stdout
    listed = _bare_tollway(tmp_path, "accounts", "list")
    assert listed.returncode == 0, listed.stderr


def test_a_taken_port_names_the_setting_that_changes_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), database_url=f"sqlite:///{tmp_path / 'x.db'}", check=False)
    assert result.returncode == 2
    assert f"127.0.0.1:{port}" in result.stderr and "the port is taken" in result.stderr
    assert "--port" in result.stderr and "TOLLWAY_PORT" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
