"""The admin CLI: every command with --json, clear errors for bad input, same figures as the API."""

from __future__ import annotations

import json

import pytest

from tests.support import GatewayServer, nanos, run_cli


def test_cli_account_credit_key_balance_flow(gateway: GatewayServer) -> None:
    url = gateway.database_url
    account = json.loads(run_cli("accounts", "create", "--email", "cli@example.com", "--json", database_url=url).stdout)
    account_id = account["id"]
    assert account_id.startswith("acct_")
    plain_id = run_cli("accounts", "create", "--email", "cli2@example.com", database_url=url).stdout.strip()
    assert plain_id.startswith("acct_")

    run_cli("credits", "grant", account_id, "2.5", "--reason", "welcome", database_url=url)
    created = json.loads(
        run_cli(
            "keys",
            "create",
            account_id,
            "--name",
            "ci",
            "--limit",
            "1",
            "--limit-reset",
            "daily",
            "--json",
            database_url=url,
        ).stdout
    )
    key = created["key"]
    assert created["data"]["limit"] == 1 and created["data"]["limit_reset"] == "daily"

    response = gateway.post(
        "/chat/completions",
        key,
        {"model": "tollway/offline-small", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200, response.text
    cost = nanos(response.json()["usage"]["cost"])

    balance = json.loads(run_cli("balance", account_id, "--json", database_url=url).stdout)
    assert nanos(balance["total_credits"]) == 2_500_000_000
    assert nanos(balance["total_usage"]) == cost
    assert nanos(balance["balance"]) == 2_500_000_000 - cost
    assert balance["held_in_flight"] == 0
    text = run_cli("balance", account_id, database_url=url).stdout
    assert "balance:" in text and "held in flight:" in text

    listed = json.loads(run_cli("accounts", "list", "--email", "cli@example.com", "--json", database_url=url).stdout)
    assert [a["id"] for a in listed] == [account_id]


@pytest.mark.parametrize("amount", ["-1", "abc", "0", "1e400"])
def test_cli_refuses_bad_amounts_without_touching_the_ledger(gateway: GatewayServer, amount: str) -> None:
    account = gateway.new_account(None)
    result = run_cli("credits", "grant", account.id, amount, database_url=gateway.database_url, check=False)
    # "-1" reads as an unknown option to the argument parser (exit 2); the rest are refused by Tollway (exit 1).
    assert result.returncode == (2 if amount.startswith("-") else 1)
    assert "error" in result.stderr.lower() and "Traceback" not in result.stderr
    assert nanos(gateway.balance(account.id)["total_credits"]) == 0


def test_cli_unknown_account_and_bad_reset_are_clear_errors(gateway: GatewayServer) -> None:
    missing = run_cli("credits", "grant", "acct_missing", "1", database_url=gateway.database_url, check=False)
    assert missing.returncode == 1 and "No account" in missing.stderr
    account = gateway.new_account(None)
    bad = run_cli(
        "keys",
        "create",
        account.id,
        "--name",
        "k",
        "--limit-reset",
        "hourly",
        database_url=gateway.database_url,
        check=False,
    )
    assert bad.returncode == 1 and "limit_reset" in bad.stderr


def test_cli_disable_is_enforced_by_the_running_server_within_a_second(gateway: GatewayServer) -> None:
    import time

    account = gateway.new_account("1")
    body = {"model": "tollway/offline-small", "messages": [{"role": "user", "content": "hi"}]}
    assert gateway.post("/chat/completions", account.key, body).status_code == 200
    run_cli("keys", "disable", account.key_hash, database_url=gateway.database_url)
    disabled_at = time.monotonic()
    status = 200
    while status == 200 and time.monotonic() - disabled_at < 1.0:
        status = gateway.post("/chat/completions", account.key, body).status_code
    assert status == 401


@pytest.mark.parametrize(
    "args",
    [
        ("accounts", "create", "--email", "down@example.com"),
        ("balance", "acct_missing", "--json"),
        ("keys", "list", "x"),
    ],
)
def test_admin_commands_say_in_words_when_the_database_server_is_down(args: tuple[str, ...]) -> None:
    from tests.support import free_port

    down = f"postgresql://postgres@127.0.0.1:{free_port()}/tollway"  # nothing listens there
    result = run_cli(*args, database_url=down, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "cannot use the database" in result.stderr and "database server runs" in result.stderr
    if "--json" in args:
        assert json.loads(result.stderr)["error"]["message"].startswith("cannot use the database")
