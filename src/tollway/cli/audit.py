"""`tollway audit ACCOUNT`: the account's audit log, newest first."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer

from tollway.cli.common import AdminContext, DatabaseUrlOption, JsonOption, emit, run_admin

# tollway.audit's page size, repeated so that help need not import the audit log (and SQLAlchemy) to show
# --limit's bounds; tests/integration/test_cli_imports.py keeps the two equal.
MAX_PAGE = 200


def _who(actor: dict[str, Any]) -> str:
    detail = actor.get("email") or actor.get("id")
    return f"{actor['type']}:{detail}" if detail else str(actor["type"])


def _state(value: dict[str, Any] | None) -> str:
    return "-" if value is None else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def audit(
    account_id: str,
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_PAGE, help="At most this many entries.")] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many of the newest.")] = 0,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Who changed what in an account (keys, caps, limits, auto-recharge, cards, grants, refunds, users)."""
    from tollway.audit import AuditLog

    async def action(context: AdminContext) -> list[dict[str, Any]]:
        await context.accounts.require_account(account_id)
        entries = await AuditLog(context.accounts.store.engine).entries(account_id, limit, offset)
        return [entry.as_dict() for entry in entries]

    rows = run_admin(database_url, as_json, action)
    lines = [
        f"{r['at']}  {_who(r['actor'])}  {r['action']}  {r['target'] or '-'}  "
        f"{_state(r['before'])} -> {_state(r['after'])}"
        for r in rows
    ]
    emit({"data": rows}, as_json, "\n".join(lines) or "no changes recorded")
