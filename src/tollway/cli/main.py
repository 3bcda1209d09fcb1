"""The `tollway` command: serve, migrate, demo, and the admin commands."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from tollway.audit import CLI, AuditLog, entry_state, key_state
from tollway.cli import admin
from tollway.cli.ask import ask
from tollway.cli.audit import audit
from tollway.cli.common import AdminContext, DatabaseUrlOption, JsonOption, emit, fail, run_admin
from tollway.cli.discord import discord_app
from tollway.cli.limits import limits_app
from tollway.cli.payments import auto_app, payments_app
from tollway.cli.users import users_app
from tollway.db.engine import create_engine
from tollway.db.migrations import migrate as apply_migrations
from tollway.payments.model import fee_rules
from tollway.presenters import account_object
from tollway.settings import SettingsError, load_settings

app = typer.Typer(
    help="Tollway: a self-hosted, OpenRouter-compatible LLM gateway with exact credits.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(admin.accounts_app, name="accounts")
app.add_typer(admin.credits_app, name="credits")
app.add_typer(admin.keys_app, name="keys")
app.add_typer(limits_app, name="limits")
app.add_typer(payments_app, name="payments")
app.add_typer(auto_app, name="auto-recharge")
app.add_typer(users_app, name="users")
app.command("balance")(admin.balance)
app.command("whoami")(admin.whoami)
app.command("ask")(ask)
app.add_typer(discord_app, name="discord")
app.command("audit")(audit)

DEMO_EMAIL = "demo@tollway.local"
DEMO_CREDITS_USD = "10"


@app.command()
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Listen address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Listen port (default 8080).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file of providers, models, settings.")] = None,
    database_url: DatabaseUrlOption = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Worker processes (needs Redis).")] = None,
) -> None:
    """Serve the gateway's HTTP API."""
    from tollway.server import run

    try:
        settings = load_settings(host=host, port=port, config=config, database_url=database_url, workers=workers)
    except SettingsError as exc:
        fail(str(exc), False, code=2)
        return
    try:
        fee_rules(settings)
    except ValueError as exc:
        fail(str(exc), False, code=2)
        return
    if settings.workers > 1 and not settings.redis_url:
        fail(
            "--workers above 1 needs TOLLWAY_REDIS_URL: processes must share holds and limits through Redis",
            False,
            code=2,
        )
    run(settings)


@app.command()
def migrate(database_url: DatabaseUrlOption = None, as_json: JsonOption = False) -> None:
    """Create or upgrade the database schema (every command also does this when needed)."""

    async def main() -> list[int]:
        engine = create_engine(load_settings(database_url=database_url).database_url)
        try:
            return await apply_migrations(engine)
        finally:
            await engine.dispose()

    applied = asyncio.run(main())
    emit({"applied": applied}, as_json, f"applied migrations: {applied}" if applied else "schema is up to date")


@app.command()
def demo(database_url: DatabaseUrlOption = None, as_json: JsonOption = False) -> None:
    """Create the demo account (10 USD of demo credits) once, and a new demo API key every time."""

    async def action(context: AdminContext) -> dict[str, Any]:
        existing = await context.accounts.store.accounts(email=DEMO_EMAIL)
        created_now = not existing
        account = existing[0] if existing else await context.accounts.create_account(DEMO_EMAIL)
        audit = AuditLog(context.accounts.store.engine)
        if created_now:
            await audit.record(CLI, "account.create", account.id, account.id, None, {"email": account.email})
            entry = await context.accounts.grant(account.id, DEMO_CREDITS_USD, "demo credits")
            await audit.record(CLI, "credits.grant", account.id, account.id, None, entry_state(entry))
        key = await context.accounts.create_key(account.id, name="demo key")
        await audit.record(CLI, "key.create", account.id, key.record.hash, None, key_state(key.record))
        figures = await context.ledger.account_figures(account.id)
        return {
            "account": account_object(account),
            "created": created_now,
            "key": key.plain,
            "balance": figures.balance_nanos / 1_000_000_000,
        }

    result = run_admin(database_url, as_json, action)
    text = (
        f"demo account {result['account']['id']} ({DEMO_EMAIL}), balance {result['balance']:.2f} USD\n"
        f"demo API key (shown once): {result['key']}\n"
        "try: curl http://127.0.0.1:8080/api/v1/chat/completions "
        f"-H 'Authorization: Bearer {result['key']}' -H 'Content-Type: application/json' "
        '-d \'{"model":"tollway/offline-small","messages":[{"role":"user","content":"Hello"}]}\''
    )
    emit(result, as_json, text)


@app.command()
def reconcile(
    fix: Annotated[
        bool, typer.Option("--fix", help="Repair: write spooled settlements, reload differing cached figures.")
    ] = False,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Compare cached figures (balances, key usage, holds) and the spool with the ledger; exit 1 on a difference."""
    from tollway.clock import SystemClock
    from tollway.ledger.reconcile import reconcile as run_reconcile
    from tollway.ledger.spool import default_spool_dir

    async def action(context: AdminContext) -> dict[str, Any]:
        settings = context.settings
        report = await run_reconcile(
            context.accounts.store.engine,
            settings.redis_url,
            SystemClock().now_us(),
            fix,
            settings.spool_path or default_spool_dir(settings.database_url),
        )
        return report.as_dict()

    report = run_admin(database_url, as_json, action)
    text = (
        f"accounts checked: {report['accounts_checked']}, keys checked: {report['keys_checked']}, "
        f"expired holds released: {report['expired_holds_released']}, spooled settlements written: "
        f"{report['spool_replayed']}, figures reloaded: {report['reloaded']}, "
        f"mismatches: {len(report['mismatches'])}"
    )
    text += "".join(f"\n  {m}" for m in report["mismatches"])
    emit(report, as_json, text)
    if not report["clean"]:
        raise typer.Exit(1)


def main() -> None:
    app()
