"""What every admin command shares: settings from flags and env, a database at the code's schema, output.

Every `tollway` command imports this module, `--help` included, so it imports only typer and orjson at the top;
the database, the services and the settings come in with the first command that opens a database.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import orjson
import typer

if TYPE_CHECKING:
    from tollway.accounts import AccountsService
    from tollway.ledger.direct import DirectLedger
    from tollway.limits.store import LimitStore
    from tollway.settings import Settings

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


def unconfigured_database(settings: Settings) -> Path | None:
    """The SQLite file the default URL would create, when no flag, variable or config file named a database."""
    from sqlalchemy.engine import make_url

    if "database_url" in settings.model_fields_set:
        return None
    name = make_url(settings.database_url).database
    path = Path(name).expanduser().resolve() if name and name != ":memory:" else None
    return path if path is not None and not path.exists() else None


def refuse_unconfigured_database(settings: Settings) -> None:
    """Never create a database silently in whatever folder the command runs from."""
    from tollway.settings import SettingsError

    path = unconfigured_database(settings)
    if path is not None:
        raise SettingsError(
            f"no database configured, and none at {path}: run `tollway init` to create one there, or name yours "
            "with --database-url (or TOLLWAY_DATABASE_URL, or database_url in the --config file), e.g. "
            "--database-url sqlite:///./tollway.db or postgresql://user@host/tollway"
        )


@asynccontextmanager
async def admin_context(database_url: str | None, create_database: bool = False) -> AsyncIterator[AdminContext]:
    from tollway.accounts import AccountsService
    from tollway.auth.store import AccountStore
    from tollway.clock import SystemClock
    from tollway.db.engine import create_engine
    from tollway.db.migrations import check_schema
    from tollway.ledger.direct import DirectLedger
    from tollway.ledger.store import LedgerStore
    from tollway.limits.store import LimitStore
    from tollway.settings import load_settings

    settings = load_settings(database_url=database_url)
    if not create_database:
        refuse_unconfigured_database(settings)
    engine = create_engine(settings.database_url)
    try:
        await check_schema(engine, settings.auto_migrate)
        clock = SystemClock()
        ledger = DirectLedger(LedgerStore(engine), clock, settings.redis_url)
        yield AdminContext(AccountsService(AccountStore(engine), ledger, clock), ledger, LimitStore(engine), settings)
    finally:
        await engine.dispose()


def database_problem(exc: Exception) -> str:
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return (
        f"cannot use the database ({type(exc).__name__}: {first_line}); check database_url / "
        "TOLLWAY_DATABASE_URL and that the database server runs"
    )


def fail(message: str, as_json: bool, code: int = 1) -> None:
    if as_json:
        typer.echo(orjson.dumps({"error": {"message": message}}).decode(), err=True)
    else:
        typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def run_admin(
    database_url: str | None,
    as_json: bool,
    action: Callable[[AdminContext], Awaitable[T]],
    create_database: bool = False,
) -> T:
    """Run one admin action; user errors print a clear message and exit 1, never a traceback.

    Only commands meant to start a database (`init`, `demo`) may create the default ./tollway.db.
    """
    import asyncio

    from sqlalchemy.exc import DBAPIError

    from tollway.db.engine import DatabaseUrlError
    from tollway.db.migrations import SchemaMismatch
    from tollway.errors import TollwayError
    from tollway.settings import SettingsError

    async def main() -> T:
        async with admin_context(database_url, create_database) as context:
            return await action(context)

    try:
        return asyncio.run(main())
    except TollwayError as exc:
        fail(exc.message, as_json)
    except (SettingsError, DatabaseUrlError, SchemaMismatch) as exc:
        fail(str(exc), as_json, code=2)
    except (OSError, DBAPIError) as exc:  # the server is down or refuses us: a sentence, as `serve` says it
        fail(database_problem(exc), as_json, code=2)
    raise AssertionError("unreachable")


def emit(payload: Any, as_json: bool, text: str) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        typer.echo(text)
