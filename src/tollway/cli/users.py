"""`tollway users create|promote`: dashboard users (admins are made here and nowhere else)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tollway.cli.common import AdminContext, DatabaseUrlOption, JsonOption, emit, run_admin
from tollway.clock import SystemClock
from tollway.dashboard.users import UserExists, UserStore
from tollway.errors import InvalidRequest, NotFound

users_app = typer.Typer(help="Dashboard users.", no_args_is_help=True)


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option("--email")],
    password: Annotated[str, typer.Option("--password", help="At least 8 characters.")],
    admin: Annotated[bool, typer.Option("--admin", help="May see every account and grant credits.")] = False,
    account_id: Annotated[str | None, typer.Option("--account", help="Join this account (default: a new one).")] = None,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a dashboard user: the owner of a new account, or a member of an existing one."""

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

    async def action(context: AdminContext) -> dict[str, Any]:
        if not await UserStore(context.accounts.store.engine).promote(email):
            raise NotFound(f"No user with email {email}")
        return {"email": email, "is_admin": True}

    emit(run_admin(database_url, as_json, action), as_json, f"{email} is now an admin")
