"""`tollway demo`: a demo account with 10 USD, a dashboard user on it and an API key, made once and shown each run.

For trying Tollway out on one machine: the demo key and password are kept in the database's `settings_store`
so the next `make run` prints the same ones instead of adding a key each time (a real user's key is shown once
and only its hash is stored). Do not run it on a server others can reach.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tollway.auth.keys import hash_key
from tollway.cli.common import AdminContext, DatabaseUrlOption, JsonOption, emit, run_admin
from tollway.clock import SystemClock

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from tollway.audit import AuditLog
    from tollway.settings import Settings

# SQLAlchemy, the tables and the stores are imported where `demo` runs: `tollway --help` loads this module too.

DEMO_EMAIL = "demo@tollway.local"
DEMO_CREDITS_USD = "10"
_KEY_NAME = "demo_api_key"
_PASSWORD_NAME = "demo_password"


async def _stored(engine: AsyncEngine, name: str) -> str | None:
    from sqlalchemy import select

    from tollway.db.tables import settings_store

    async with engine.connect() as connection:
        value = await connection.scalar(select(settings_store.c.value).where(settings_store.c.name == name))
    return None if value is None else str(value)


async def _store(engine: AsyncEngine, name: str, value: str) -> None:
    from sqlalchemy import delete

    from tollway.db.tables import settings_store

    async with engine.begin() as connection:
        await connection.execute(delete(settings_store).where(settings_store.c.name == name))
        await connection.execute(settings_store.insert().values(name=name, value=value))


async def _demo_key(context: AdminContext, account_id: str, audit: AuditLog, new_key: bool) -> tuple[str, bool]:
    """The demo key made before if it still works, else a new one; and whether it is new."""
    from tollway.audit import CLI, key_state

    engine = context.accounts.store.engine
    kept = None if new_key else await _stored(engine, _KEY_NAME)
    if kept is not None:
        record = await context.accounts.store.key_by_hash(hash_key(kept))
        if record is not None and record.account_id == account_id and record.usable_at(SystemClock().now_us()):
            return kept, False
    key = await context.accounts.create_key(account_id, name="demo key")
    await audit.record(CLI, "key.create", account_id, key.record.hash, None, key_state(key.record))
    await _store(engine, _KEY_NAME, key.plain)
    return key.plain, True


async def _demo_password(context: AdminContext, account_id: str, audit: AuditLog) -> str | None:
    """The demo user's password (the user is made with the account's first demo run); None if set elsewhere."""
    from tollway.audit import CLI
    from tollway.dashboard.users import UserStore

    engine = context.accounts.store.engine
    users = UserStore(engine)
    if await users.by_email(DEMO_EMAIL) is not None:
        return await _stored(engine, _PASSWORD_NAME)
    password = secrets.token_urlsafe(12)
    user = await users.create(DEMO_EMAIL, password, account_id, "owner", False, SystemClock().now_us())
    await audit.record(CLI, "user.create", account_id, user.id, None, {"email": user.email, "role": user.role})
    await _store(engine, _PASSWORD_NAME, password)
    return password


def dashboard_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}"


def demo(
    new_key: Annotated[
        bool, typer.Option("--new-key", help="Make a new demo key instead of showing the last one.")
    ] = False,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make the demo account (10 USD of demo credits), its dashboard user and API key once; show them each run."""
    from tollway.audit import CLI, AuditLog, entry_state
    from tollway.presenters import account_object

    async def action(context: AdminContext) -> dict[str, Any]:
        existing = await context.accounts.store.accounts(email=DEMO_EMAIL)
        created_now = not existing
        account = existing[0] if existing else await context.accounts.create_account(DEMO_EMAIL)
        audit = AuditLog(context.accounts.store.engine)
        if created_now:
            await audit.record(CLI, "account.create", account.id, account.id, None, {"email": account.email})
            entry = await context.accounts.grant(account.id, DEMO_CREDITS_USD, "demo credits")
            await audit.record(CLI, "credits.grant", account.id, account.id, None, entry_state(entry))
        key, key_is_new = await _demo_key(context, account.id, audit, new_key)
        password = await _demo_password(context, account.id, audit)
        figures = await context.ledger.account_figures(account.id)
        return {
            "account": account_object(account),
            "created": created_now,
            "key": key,
            "key_created": key_is_new,
            "balance": figures.balance_nanos / 1_000_000_000,
            "dashboard_url": dashboard_url(context.settings),
            "sign_in": {"email": DEMO_EMAIL, "password": password},
        }

    result = run_admin(database_url, as_json, action, create_database=True)
    url = result["dashboard_url"]
    password = result["sign_in"]["password"] or "(the password you set for this user)"
    text = (
        f"demo account {result['account']['id']} ({DEMO_EMAIL}), balance {result['balance']:.2f} USD\n"
        f"dashboard:  {url}/login  (sign in as {DEMO_EMAIL}, password {password})\n"
        f"demo API key: {result['key']}\n"
        f"try: curl {url}/api/v1/chat/completions "
        f"-H 'Authorization: Bearer {result['key']}' -H 'Content-Type: application/json' "
        '-d \'{"model":"tollway/offline-small","messages":[{"role":"user","content":"Hello"}]}\''
    )
    emit(result, as_json, text)
