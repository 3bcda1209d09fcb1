"""`tollway limits set|show`: request, token and concurrency limits of one account or key."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tollway.cli.common import AdminContext, DatabaseUrlOption, JsonOption, emit, run_admin
from tollway.clock import SystemClock
from tollway.errors import InvalidRequest, NotFound

# Limit specs (which load the settings) and the audit log (SQLAlchemy) are imported where a command runs.

limits_app = typer.Typer(help="Set and show rate limits of an account or a key.", no_args_is_help=True)

AccountOption = Annotated[str | None, typer.Option("--account", help="Account id.")]
KeyOption = Annotated[str | None, typer.Option("--key", help="Key hash.")]


async def _subject(context: AdminContext, account: str | None, key_hash: str | None) -> tuple[str, str, dict[str, Any]]:
    if (account is None) == (key_hash is None):
        raise InvalidRequest("name exactly one of --account ID or --key HASH")
    if account is not None:
        await context.accounts.require_account(account)
        return "account", account, {"account_id": account}
    assert key_hash is not None
    record = await context.accounts.store.key_by_hash(key_hash)
    if record is None or record.deleted_at_us is not None:
        raise NotFound(f"No key with hash {key_hash}")
    return "key", record.id, {"key_hash": key_hash, "account_id": record.account_id}


async def _show(context: AdminContext, kind: str, subject_id: str, who: dict[str, Any]) -> dict[str, Any]:
    from tollway.limits.admin import spec_object
    from tollway.limits.config import LimitSpec

    own = await context.limits.get(kind, subject_id)
    default = LimitSpec.from_defaults(context.settings.key_limits if kind == "key" else context.settings.account_limits)
    return {**who, "limits": spec_object(own), "effective": spec_object(own.merged_over(default))}


def _text(result: dict[str, Any]) -> str:
    own, effective = result["limits"], result["effective"]

    def line(spec: dict[str, Any]) -> str:
        parts = []
        if spec["requests"]:
            parts.append(f"{spec['requests']} requests per {spec['per']}")
        if spec["tokens_per_minute"]:
            parts.append(f"{spec['tokens_per_minute']} tokens per minute")
        if spec["concurrency"]:
            parts.append(f"{spec['concurrency']} in flight")
        return ", ".join(parts) or "none"

    return f"own limits: {line(own)}\neffective:  {line(effective)}"


@limits_app.command("set")
def limits_set(
    account: AccountOption = None,
    key: KeyOption = None,
    requests: Annotated[int | None, typer.Option("--requests", help="Requests per --per.")] = None,
    per: Annotated[str | None, typer.Option("--per", help="second, minute, hour or day (UTC).")] = None,
    tokens_per_minute: Annotated[int | None, typer.Option("--tokens-per-minute")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", help="Requests in flight at once.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Drop the limits not named in this command.")] = False,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set the named limits of an account or key, keeping the others (running servers apply them within a second)."""
    from tollway.audit import CLI, AuditLog, limit_state
    from tollway.limits.admin import parse_limit_spec, spec_object

    async def action(context: AdminContext) -> dict[str, Any]:
        kind, subject_id, who = await _subject(context, account, key)
        before = await context.limits.get(kind, subject_id)
        named = {"requests": requests, "per": per, "tokens_per_minute": tokens_per_minute, "concurrency": concurrency}
        kept = {} if clear else {name: value for name, value in spec_object(before).items() if name != "interval"}
        spec = parse_limit_spec({**kept, **{name: value for name, value in named.items() if value is not None}})
        await context.limits.set(kind, subject_id, spec, SystemClock().now_us())
        await AuditLog(context.accounts.store.engine).record(
            CLI, "limits.update", who["account_id"], key or account, limit_state(before), limit_state(spec)
        )
        return await _show(context, kind, subject_id, who)

    result = run_admin(database_url, as_json, action)
    emit(result, as_json, _text(result))


@limits_app.command("show")
def limits_show(
    account: AccountOption = None,
    key: KeyOption = None,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the limits of an account or key: its own, and the effective ones with config defaults."""

    async def action(context: AdminContext) -> dict[str, Any]:
        kind, subject_id, who = await _subject(context, account, key)
        return await _show(context, kind, subject_id, who)

    result = run_admin(database_url, as_json, action)
    emit(result, as_json, _text(result))
