"""`tollway discord register`: create or update the slash commands of the Discord application."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from tollway.cli.common import DatabaseUrlOption, JsonOption, emit, fail

if TYPE_CHECKING:
    import aiohttp

# aiohttp, the commands and the settings are imported where `register` runs: `tollway --help` loads this module.

discord_app = typer.Typer(
    help="The Discord integration (POST /integrations/discord/interactions).", no_args_is_help=True
)


async def _send(session: aiohttp.ClientSession, method: str, url: str, payload: Any, token: str) -> tuple[int, Any]:
    async with session.request(method, url, json=payload, headers={"Authorization": f"Bot {token}"}) as response:
        try:
            body = await response.json(content_type=None)
        except ValueError:
            body = (await response.text())[:500]
        return response.status, body


async def _put_commands(api_base: str, application_id: str, bot_token: str) -> tuple[int, Any]:
    """Overwrite the application's global commands in one PUT; where that is not offered, create each one."""
    import aiohttp

    from tollway.assistant.discord import COMMANDS

    url = f"{api_base.rstrip('/')}/applications/{application_id}/commands"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        status, body = await _send(session, "PUT", url, COMMANDS, bot_token)
        if status not in (404, 405):
            return status, body
        created = []
        for command in COMMANDS:
            status, body = await _send(session, "POST", url, command, bot_token)
            if status >= 300:
                return status, body
            created.append(body)
        return 200, created


@discord_app.command("register")
def register(
    application_id: Annotated[
        str | None, typer.Option("--application-id", help="Default: TOLLWAY_DISCORD_APPLICATION_ID.")
    ] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", help="Default: TOLLWAY_DISCORD_API_BASE.")] = None,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register /balance, /ask, /link and /unlink (the bot token is read from TOLLWAY_DISCORD_BOT_TOKEN)."""
    import asyncio

    import aiohttp

    from tollway.assistant.discord import COMMANDS
    from tollway.settings import SettingsError, load_settings

    try:
        settings = load_settings(database_url=database_url)  # accepted like every command; unused
    except SettingsError as exc:
        fail(str(exc), as_json, code=2)
        return
    application = application_id or settings.discord_application_id
    token = settings.discord_bot_token
    if not application or token is None:
        fail("set TOLLWAY_DISCORD_APPLICATION_ID (or --application-id) and TOLLWAY_DISCORD_BOT_TOKEN", as_json, code=2)
        return
    base = api_base or settings.discord_api_base
    try:
        status, body = asyncio.run(_put_commands(base, application, token.get_secret_value()))
    except (aiohttp.ClientError, TimeoutError) as exc:
        fail(f"could not reach Discord at {base}: {type(exc).__name__}: {exc}", as_json)
        return
    if status >= 300:
        fail(f"Discord refused the commands ({status}): {body}", as_json)
        return
    names = [c["name"] for c in COMMANDS]
    emit({"registered": names}, as_json, "registered: " + ", ".join(f"/{n}" for n in names))
