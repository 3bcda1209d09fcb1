"""The `tollway` command: serve, migrate, demo, and the admin commands.

Every run imports this module and through it every module of the CLI (typer needs all commands to parse one), so
each command imports what it uses when it runs: the database, migrations, services, the server. A module-level
import in src/tollway/cli is paid by `--help` and by every other command, and the test suite starts the CLI hundreds
of times; tests/integration/test_cli_imports.py checks that help and admin commands stay light.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tollway.cli import admin
from tollway.cli.ask import ask
from tollway.cli.audit import audit
from tollway.cli.common import (
    AdminContext,
    DatabaseUrlOption,
    JsonOption,
    database_problem,
    emit,
    fail,
    refuse_unconfigured_database,
    run_admin,
    unconfigured_database,
)
from tollway.cli.demo import demo
from tollway.cli.discord import discord_app
from tollway.cli.limits import limits_app
from tollway.cli.payments import auto_app, payments_app
from tollway.cli.users import users_app

if TYPE_CHECKING:
    from tollway.settings import Settings

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
app.command("demo")(demo)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Listen address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Listen port (default 8080).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file of providers, models, settings.")] = None,
    database_url: DatabaseUrlOption = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Worker processes (needs Redis).")] = None,
) -> None:
    """Serve the gateway's HTTP API."""
    import asyncio

    from sqlalchemy.exc import DBAPIError

    from tollway.db.migrations import SchemaMismatch
    from tollway.payments.model import fee_rules
    from tollway.server import run
    from tollway.settings import SettingsError, load_settings

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
    try:
        refuse_unconfigured_database(settings)
        # A schema ahead of or behind the code is refused here, in words; the server creates or upgrades it.
        asyncio.run(_verified(settings))
    except (SettingsError, SchemaMismatch) as exc:
        fail(str(exc), False, code=2)
    except (OSError, DBAPIError) as exc:
        fail(database_problem(exc), False, code=2)
    try:
        _try_listen(settings.host, settings.port)  # before start-up work, so a taken port is all the output
        run(settings)
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise
        fail(_listen_problem(settings.host, settings.port, exc.errno), False, code=2)


def _try_listen(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def _listen_problem(host: str, port: int, code: int | None) -> str:
    where = f"{host}:{port}"
    change = "choose another with --port N, TOLLWAY_PORT=N or `port: N` in the config file"
    if code == errno.EADDRINUSE:
        return f"cannot listen on {where}: the port is taken (another Tollway, or another program); {change}"
    if code == errno.EACCES:
        return f"cannot listen on {where}: ports below 1024 need privileges; {change}"
    return (
        f"cannot listen on {where}: {host} is not an address of this machine; choose another with --host, "
        "TOLLWAY_HOST or `host:` in the config file"
    )


async def _upgraded(url: str) -> list[str]:
    from tollway.db.engine import create_engine
    from tollway.db.migrations import migrate as apply_migrations

    engine = create_engine(url)
    try:
        return await apply_migrations(engine)
    finally:
        await engine.dispose()


async def _verified(settings: Settings) -> None:
    from tollway.db.engine import create_engine
    from tollway.db.migrations import verify_schema

    engine = create_engine(settings.database_url)
    try:
        await verify_schema(engine, settings.auto_migrate)
    finally:
        await engine.dispose()


@app.command()
def init(database_url: DatabaseUrlOption = None, as_json: JsonOption = False) -> None:
    """Create the database (default ./tollway.db, or --database-url) with the current schema, and say where."""
    import asyncio

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from tollway.db.engine import DatabaseUrlError
    from tollway.db.migrations import SchemaMismatch, head_revision
    from tollway.settings import SettingsError, load_settings

    try:
        settings = load_settings(database_url=database_url)
        where = unconfigured_database(settings)
        applied = asyncio.run(_upgraded(settings.database_url))
    except (SettingsError, DatabaseUrlError, SchemaMismatch) as exc:
        fail(str(exc), as_json, code=2)
        return
    except (OSError, DBAPIError) as exc:
        fail(database_problem(exc), as_json, code=2)
        return
    parsed = make_url(settings.database_url)
    sqlite_file = parsed.database if parsed.get_backend_name() == "sqlite" and parsed.database else None
    shown = str(Path(sqlite_file).resolve()) if sqlite_file else parsed.render_as_string(hide_password=True)
    text = f"database ready: {shown}" + (f" (applied {', '.join(applied)})" if applied else " (already up to date)")
    if where is not None:
        text += f"\nother commands find it when run from this folder, or with --database-url sqlite:///{where}"
    emit({"database": shown, "applied": applied, "revision": head_revision()}, as_json, text)


async def _pending_sql(settings: Settings, dialect: str, new_database: bool) -> str:
    from sqlalchemy.exc import DBAPIError

    from tollway.db.engine import create_engine
    from tollway.db.migrations import migration_sql, pending_sql

    if new_database:
        return migration_sql(dialect, None)
    engine = create_engine(settings.database_url)
    try:
        return await pending_sql(engine)
    except (OSError, DBAPIError) as exc:
        typer.echo(f"note: {database_problem(exc)}; the DDL below starts from an empty database", err=True)
        return migration_sql(dialect, None)
    finally:
        await engine.dispose()


@app.command()
def migrate(
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the DDL from the database's revision to head; run nothing.")
    ] = False,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upgrade a configured database to this version's schema (back it up first); `tollway init` creates one."""
    import asyncio

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from tollway.db.engine import DatabaseUrlError
    from tollway.db.migrations import SchemaMismatch, head_revision
    from tollway.settings import SettingsError, load_settings

    try:
        settings = load_settings(database_url=database_url)
        if sql:
            parsed = make_url(settings.database_url)
            dialect = "postgresql" if parsed.get_backend_name() in ("postgresql", "postgres") else "sqlite"
            new_sqlite = dialect == "sqlite" and (not parsed.database or not Path(parsed.database).exists())
            typer.echo(asyncio.run(_pending_sql(settings, dialect, new_sqlite)), nl=False)
            return
        refuse_unconfigured_database(settings)
        applied = asyncio.run(_upgraded(settings.database_url))
    except (SettingsError, DatabaseUrlError, SchemaMismatch) as exc:
        fail(str(exc), as_json, code=2)
        return
    except (OSError, DBAPIError) as exc:
        fail(database_problem(exc), as_json, code=2)
        return
    head = head_revision()
    text = f"upgraded to {head}: applied {', '.join(applied)}" if applied else f"schema is up to date ({head})"
    emit({"applied": applied, "revision": head}, as_json, text)


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
    if report["hold_overruns"]:
        text += "\nsettlements above their hold (billed as reported; the balance may dip below zero by this much):"
        text += "".join(
            f"\n  account {o['account_id']}: {o['generations']} generation(s), {o['overrun']:.9f} USD"
            for o in report["hold_overruns"]
        )
    emit(report, as_json, text)
    if not report["clean"]:
        raise typer.Exit(1)


def main() -> None:
    app()
