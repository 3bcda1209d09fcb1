"""Admin commands: accounts, credits, keys, balance. Each takes --json and --database-url."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tollway.auth.expiry import parse_expires_at
from tollway.cli.common import AdminContext, DatabaseUrlOption, JsonOption, emit, fail, run_admin
from tollway.clock import SystemClock
from tollway.errors import InvalidRequest
from tollway.money import format_usd

if TYPE_CHECKING:
    from tollway.audit import AuditLog

# The ledger, stores and presenters are imported inside the commands: `tollway --help` loads this module too.

accounts_app = typer.Typer(help="Create and list accounts.", no_args_is_help=True)
credits_app = typer.Typer(help="Grant credits.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list, update, disable and delete API keys.", no_args_is_help=True)


@accounts_app.command("create")
def accounts_create(
    email: Annotated[str, typer.Option("--email", help="The account owner's email.")],
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an account; prints its id."""
    from tollway.audit import CLI
    from tollway.presenters import account_object

    async def action(context: AdminContext) -> dict[str, Any]:
        account = await context.accounts.create_account(email)
        await _audit(context).record(CLI, "account.create", account.id, account.id, None, {"email": account.email})
        return account_object(account)

    account = run_admin(database_url, as_json, action)
    emit(account, as_json, account["id"])


@accounts_app.command("list")
def accounts_list(
    email: Annotated[str | None, typer.Option("--email", help="Only the account with this email.")] = None,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """List accounts (id, email, created_at)."""
    from tollway.presenters import account_object

    async def action(context: AdminContext) -> list[dict[str, Any]]:
        return [account_object(a) for a in await context.accounts.store.accounts(email=email)]

    rows = run_admin(database_url, as_json, action)
    emit(rows, as_json, "\n".join(f"{r['id']}  {r['email']}  {r['created_at']}" for r in rows))


@credits_app.command("grant")
def credits_grant(
    account_id: str,
    amount_usd: str,
    reason: Annotated[str | None, typer.Option("--reason", help="Why, for the ledger.")] = None,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Grant AMOUNT_USD of credits to an account (an admin grant entry in the ledger)."""
    from tollway.audit import CLI, entry_state
    from tollway.presenters import entry_object

    async def action(context: AdminContext) -> dict[str, Any]:
        entry = await context.accounts.grant(account_id, amount_usd, reason)
        await _audit(context).record(CLI, "credits.grant", account_id, account_id, None, entry_state(entry))
        return entry_object(entry)

    entry = run_admin(database_url, as_json, action)
    emit(entry, as_json, f"granted {amount_usd} USD to {account_id} (entry {entry['id']})")


@keys_app.command("create")
def keys_create(
    account_id: str,
    name: Annotated[str, typer.Option("--name", help="A name to recognise the key by.")],
    limit: Annotated[str | None, typer.Option("--limit", help="Spending cap in USD.")] = None,
    limit_reset: Annotated[
        str | None, typer.Option("--limit-reset", help="daily, weekly or monthly (UTC); none = total cap.")
    ] = None,
    management: Annotated[bool, typer.Option("--management", help="A management key (key API only).")] = False,
    expires_at: Annotated[
        str | None,
        typer.Option("--expires-at", help="When the key stops working (ISO-8601 UTC)."),
    ] = None,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key; prints the key once, and its hash."""
    from tollway.audit import CLI, key_state
    from tollway.presenters import key_object

    async def action(context: AdminContext) -> dict[str, Any]:
        created = await context.accounts.create_key(
            account_id,
            name=name,
            limit=limit,
            limit_reset=limit_reset,
            management=management,
            expires_at_us=parse_expires_at(expires_at, SystemClock().now_us()),
        )
        record = created.record
        await _audit(context).record(CLI, "key.create", account_id, record.hash, None, key_state(record))
        figures = await context.ledger.key_figures(record)
        return {"key": created.plain, "data": key_object(record, figures)}

    result = run_admin(database_url, as_json, action)
    emit(
        result,
        as_json,
        f"key:  {result['key']}\nhash: {result['data']['hash']}\n(the key is shown only once; store it now)",
    )


@keys_app.command("list")
def keys_list(account_id: str, database_url: DatabaseUrlOption = None, as_json: JsonOption = False) -> None:
    """List an account's keys with their caps and usage."""
    from tollway.presenters import key_object

    async def action(context: AdminContext) -> list[dict[str, Any]]:
        await context.accounts.require_account(account_id)
        records = await context.accounts.store.keys_for_account(account_id)
        return [key_object(r, await context.ledger.key_figures(r)) for r in records]

    rows = run_admin(database_url, as_json, action)
    lines = [
        f"{r['hash']}  {r['label']}  {r['name']}  limit={r['limit']}  usage={r['usage']}"
        + (f"  expires={r['expires_at']}" if r["expires_at"] else "")
        + ("  disabled" if r["disabled"] else "")
        for r in rows
    ]
    emit(rows, as_json, "\n".join(lines))


def _set_disabled(key_hash: str, disabled: bool, database_url: str | None, as_json: bool) -> None:
    from tollway.audit import CLI, key_state
    from tollway.auth.store import KeyChanges
    from tollway.presenters import key_object

    async def action(context: AdminContext) -> dict[str, Any]:
        before = await context.accounts.store.key_by_hash(key_hash)
        record = await context.accounts.update_key(key_hash, KeyChanges(disabled=disabled))
        action = "key.disable" if disabled else "key.enable"
        await _audit(context).record(CLI, action, record.account_id, key_hash, key_state(before), key_state(record))
        return key_object(record, await context.ledger.key_figures(record))

    row = run_admin(database_url, as_json, action)
    emit(row, as_json, f"{key_hash} {'disabled' if disabled else 'enabled'}")


@keys_app.command("disable")
def keys_disable(key_hash: str, database_url: DatabaseUrlOption = None, as_json: JsonOption = False) -> None:
    """Disable a key (running servers refuse it within a second)."""
    _set_disabled(key_hash, True, database_url, as_json)


@keys_app.command("enable")
def keys_enable(key_hash: str, database_url: DatabaseUrlOption = None, as_json: JsonOption = False) -> None:
    """Enable a disabled key."""
    _set_disabled(key_hash, False, database_url, as_json)


@keys_app.command("expire")
def keys_expire(
    key_hash: str,
    at: Annotated[str, typer.Option("--at", help="ISO-8601 UTC time such as 2027-01-01T00:00:00Z, or 'never'.")],
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set when a key stops working (401 key_expired from then on), or 'never'."""
    from tollway.audit import CLI, key_state
    from tollway.auth.store import KeyChanges
    from tollway.presenters import key_object

    async def action(context: AdminContext) -> dict[str, Any]:
        expires_at_us = None if at.strip().lower() == "never" else parse_expires_at(at, SystemClock().now_us())
        before = await context.accounts.store.key_by_hash(key_hash)
        record = await context.accounts.update_key(key_hash, KeyChanges(expires_at_us=expires_at_us))
        await _audit(context).record(
            CLI, "key.update", record.account_id, key_hash, key_state(before), key_state(record)
        )
        return key_object(record, await context.ledger.key_figures(record))

    row = run_admin(database_url, as_json, action)
    emit(row, as_json, f"{key_hash} expires {row['expires_at'] or 'never'}")


@keys_app.command("update")
def keys_update(
    key_hash: str,
    name: Annotated[str | None, typer.Option("--name", help="A new name.")] = None,
    limit: Annotated[str | None, typer.Option("--limit", help="Spending cap in USD, or 'none' for no cap.")] = None,
    limit_reset: Annotated[
        str | None, typer.Option("--limit-reset", help="daily, weekly or monthly (UTC), or 'none' for a total cap.")
    ] = None,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a key's name, spending cap or cap window; what is not given stays as it is."""
    if name is None and limit is None and limit_reset is None:
        fail("nothing to change: give --name, --limit or --limit-reset", as_json, code=2)

    from tollway.accounts import parse_reset, parse_usd
    from tollway.audit import CLI, key_state
    from tollway.auth.store import KeyChanges
    from tollway.presenters import key_object

    async def action(context: AdminContext) -> dict[str, Any]:
        changes = KeyChanges()
        if name is not None:
            if not name.strip():
                raise InvalidRequest("--name must not be blank")
            changes = replace(changes, name=name.strip())
        if limit is not None:
            cap = None if limit.strip().lower() == "none" else parse_usd(limit, "limit")
            changes = replace(changes, limit_nanos=cap)
        if limit_reset is not None:
            window = None if limit_reset.strip().lower() == "none" else parse_reset(limit_reset)
            changes = replace(changes, limit_reset=window)
        before = await context.accounts.store.key_by_hash(key_hash)
        record = await context.accounts.update_key(key_hash, changes)
        await _audit(context).record(
            CLI, "key.update", record.account_id, key_hash, key_state(before), key_state(record)
        )
        return key_object(record, await context.ledger.key_figures(record))

    row = run_admin(database_url, as_json, action)
    reset = f" ({row['limit_reset']})" if row.get("limit_reset") else ""
    cap = "no cap" if row["limit"] is None else f"cap {row['limit']} USD{reset}"
    emit(row, as_json, f"{key_hash} {row['name']}: {cap}, used {row['usage']} USD")


@keys_app.command("delete")
def keys_delete(key_hash: str, database_url: DatabaseUrlOption = None, as_json: JsonOption = False) -> None:
    """Delete a key; its usage stays in the ledger."""
    from tollway.audit import CLI, key_state

    async def action(context: AdminContext) -> dict[str, Any]:
        before = await context.accounts.store.key_by_hash(key_hash)
        await context.accounts.delete_key(key_hash)
        after = await context.accounts.store.key_by_hash(key_hash)
        account_id = before.account_id if before is not None else None
        await _audit(context).record(CLI, "key.delete", account_id, key_hash, key_state(before), key_state(after))
        return {"deleted": True}

    emit(run_admin(database_url, as_json, action), as_json, f"{key_hash} deleted")


def balance(
    account_id: str,
    explain: Annotated[bool, typer.Option("--explain", help="Say, per key, what limits it now.")] = False,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Total credits, total usage, held in flight and balance of an account."""
    from tollway.cli.explain import account_reports, report_text
    from tollway.presenters import balance_figures

    async def action(context: AdminContext) -> dict[str, Any]:
        account = await context.accounts.require_account(account_id)
        figures = balance_figures(account, await context.ledger.account_figures(account_id))
        if explain:
            figures["keys"] = await account_reports(context, account_id)
        return figures

    figures = run_admin(database_url, as_json, action)
    if explain and as_json:
        emit(figures["keys"], True, "")
        return
    text = (
        f"account:        {figures['account_id']} ({figures['email']})\n"
        f"total credits:  {_usd(figures['total_credits'])} USD\n"
        f"total usage:    {_usd(figures['total_usage'])} USD\n"
        f"held in flight: {_usd(figures['held_in_flight'])} USD\n"
        f"balance:        {_usd(figures['balance'])} USD"
    )
    if explain:
        text += "\n" + "\n".join(report_text(report) for report in figures["keys"])
    emit(figures, as_json, text)


def whoami(
    key: Annotated[str, typer.Option("--key", help="The plain API key (sk-tw-...).")],
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """What a key is, whose it is, and what limits it now (the same answer as GET /api/v1/balance)."""
    from tollway.cli.explain import report_text, whoami_report

    async def action(context: AdminContext) -> dict[str, Any]:
        return await whoami_report(context, key)

    report = run_admin(database_url, as_json, action)
    emit(report, as_json, f"account {report['account_id']} ({report['email']})\n" + report_text(report))


def _audit(context: AdminContext) -> AuditLog:
    from tollway.audit import AuditLog

    return AuditLog(context.accounts.store.engine)


def _usd(value: float) -> str:
    return format_usd(round(value * 1_000_000_000))
