"""What every admin command shares: settings from flags and env, a migrated database, output."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import orjson
import typer

from tollway.accounts import AccountsService
from tollway.auth.store import AccountStore
from tollway.clock import SystemClock
from tollway.db.engine import DatabaseUrlError, create_engine
from tollway.db.migrations import migrate
from tollway.errors import TollwayError
from tollway.ledger.direct import DirectLedger
from tollway.ledger.store import LedgerStore
from tollway.limits.store import LimitStore
from tollway.settings import Settings, SettingsError, load_settings

T = TypeVar("T")

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option("--database-url", envvar="TOLLWAY_DATABASE_URL", help="sqlite:///FILE or postgresql://..."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@dataclass
class AdminContext:
    accounts: AccountsService
    ledger: DirectLedger
    limits: LimitStore
    settings: Settings


@asynccontextmanager
async def admin_context(database_url: str | None) -> AsyncIterator[AdminContext]:
    settings = load_settings(database_url=database_url)
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        clock = SystemClock()
        ledger = DirectLedger(LedgerStore(engine), clock, settings.redis_url)
        yield AdminContext(AccountsService(AccountStore(engine), ledger, clock), ledger, LimitStore(engine), settings)
    finally:
        await engine.dispose()


def fail(message: str, as_json: bool, code: int = 1) -> None:
    if as_json:
        typer.echo(orjson.dumps({"error": {"message": message}}).decode(), err=True)
    else:
        typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def run_admin(database_url: str | None, as_json: bool, action: Callable[[AdminContext], Awaitable[T]]) -> T:
    """Run one admin action; user errors print a clear message and exit 1, never a traceback."""

    async def main() -> T:
        async with admin_context(database_url) as context:
            return await action(context)

    try:
        return asyncio.run(main())
    except TollwayError as exc:
        fail(exc.message, as_json)
    except (SettingsError, DatabaseUrlError) as exc:
        fail(str(exc), as_json, code=2)
    raise AssertionError("unreachable")


def emit(payload: Any, as_json: bool, text: str) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        typer.echo(text)
