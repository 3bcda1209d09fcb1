"""`tollway users create|promote|invite`: dashboard users (admins are made here and nowhere else).

Passwords are read from a hidden prompt or, with --password-stdin, from standard input: never from the command
line, where every user of the machine could read them in the process list.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from tollway.cli.common import AdminContext, DatabaseUrlOption, JsonOption, emit, fail, run_admin
from tollway.clock import SystemClock
from tollway.errors import InvalidRequest, NotFound

# The user store and audit log (SQLAlchemy) are imported where a command runs: `tollway --help` loads this module.

users_app = typer.Typer(help="Dashboard users.", no_args_is_help=True)


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option("--email")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password (first line) from standard input.")
    ] = False,
    admin: Annotated[bool, typer.Option("--admin", help="May see every account and grant credits.")] = False,
    account_id: Annotated[str | None, typer.Option("--account", help="Join this account (default: a new one).")] = None,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a dashboard user: the owner of a new account, or a member of an existing one.

    The password (at least 8 characters) is asked for at a hidden prompt, or read from stdin with --password-stdin.
    """
    from tollway.audit import CLI, AuditLog
    from tollway.dashboard.users import UserExists, UserStore

    password = _read_password(password_stdin, as_json)

    async def action(context: AdminContext) -> dict[str, Any]:
        users = UserStore(context.accounts.store.engine)
        if account_id is not None:
            account = await context.accounts.require_account(account_id)
            role = "member"
        else:
            account = await context.accounts.create_account(email)
            role = "owner"
        try:
            user = await users.create(email, password, account.id, role, admin, SystemClock().now_us())
        except (UserExists, ValueError) as exc:
            raise InvalidRequest(str(exc)) from exc
        state = {"email": user.email, "role": user.role, "is_admin": user.is_admin}
        await AuditLog(users.engine).record(CLI, "user.create", user.account_id, user.id, None, state)
        return {
            "id": user.id,
            "email": user.email,
            "account_id": user.account_id,
            "role": user.role,
            "is_admin": user.is_admin,
        }

    result = run_admin(database_url, as_json, action)
    emit(
        result,
        as_json,
        f"user {result['email']} ({result['role']} of {result['account_id']})"
        + (", admin" if result["is_admin"] else ""),
    )


@users_app.command("promote")
def users_promote(email: str, database_url: DatabaseUrlOption = None, as_json: JsonOption = False) -> None:
    """Make a user an admin."""
    from tollway.audit import CLI, AuditLog
    from tollway.dashboard.users import UserStore

    async def action(context: AdminContext) -> dict[str, Any]:
        users = UserStore(context.accounts.store.engine)
        user = await users.by_email(email)
        if user is None or not await users.promote(email):
            raise NotFound(f"No user with email {email}")
        await AuditLog(users.engine).record(
            CLI, "user.promote", user.account_id, user.id, {"is_admin": user.is_admin}, {"is_admin": True}
        )
        return {"email": email, "is_admin": True}

    emit(run_admin(database_url, as_json, action), as_json, f"{email} is now an admin")


def _read_password(from_stdin: bool, as_json: bool) -> str:
    from tollway.dashboard.users import MIN_PASSWORD

    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD:
        fail(f"the password must have at least {MIN_PASSWORD} characters", as_json)
    return password


@users_app.command("invite")
def users_invite(
    email: str,
    hours: Annotated[
        float | None, typer.Option("--hours", help="Valid this long (default: invite_ttl_hours, 72).")
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="The dashboard's public address, for the link (default: host and port)."),
    ] = None,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make a single-use sign-up invitation for EMAIL (needed when signup_mode is invite); prints the link once."""
    from tollway.accounts import check_email
    from tollway.audit import CLI, AuditLog
    from tollway.dashboard.users import UserStore

    async def action(context: AdminContext) -> dict[str, Any]:
        check_email(email)
        ttl_hours = hours if hours is not None else context.settings.invite_ttl_hours
        if not 0 < ttl_hours <= 24 * 365:
            raise InvalidRequest("--hours must be above 0 and at most a year")
        users = UserStore(context.accounts.store.engine)
        now_us = SystemClock().now_us()
        token = await users.create_invite(email, "cli", now_us, int(ttl_hours * 3600 * 1_000_000))
        await AuditLog(users.engine).record(CLI, "user.invite", None, email.lower(), None, {"email": email.lower()})
        host = "127.0.0.1" if context.settings.host in ("0.0.0.0", "::") else context.settings.host
        base = base_url or f"http://{host}:{context.settings.port}"
        url = f"{base.rstrip('/')}/signup?invite={token}"
        return {"email": email.lower(), "token": token, "url": url, "signup_mode": context.settings.signup_mode}

    result = run_admin(database_url, as_json, action)
    text = f"invitation for {result['email']} (single use, shown once):\n{result['url']}"
    if result["signup_mode"] == "closed":
        text += "\nnote: signup_mode is closed, so no sign-up works; set it to invite for this link to work"
    emit(result, as_json, text)
