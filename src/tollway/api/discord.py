"""POST /integrations/discord/interactions: /balance, /ask, /link and /unlink from Discord, answered privately.

Unsigned or badly signed requests get 401 (Discord itself checks this when the URL is saved). A Discord user
sees figures only after linking their Tollway account with a one-time code from the dashboard's Help page.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from tollway.api.assistant import admit_question, assistant_of, discord_links_of
from tollway.api.context import services_of
from tollway.api.http import json_response
from tollway.assistant import discord
from tollway.assistant.service import Asker, Turn
from tollway.errors import AuthenticationFailed, InvalidRequest, NotImplementedYet, TollwayError
from tollway.limits.rules import LimitCheck, LimitKind

_MINUTE_US = 60_000_000
_LINK_ATTEMPTS_PER_MINUTE = 5
_MAX_BODY_BYTES = 64 * 1024
# Discord drops an interaction not answered within 3 s: a slower model answer gives way to the grounded one.
_DISCORD_MODEL_TIMEOUT_S = 2.0


async def interactions(request: web.Request) -> web.Response:
    services = services_of(request)
    public_key = services.settings.discord_public_key
    if not public_key:
        raise NotImplementedYet("Discord is not configured on this gateway: set TOLLWAY_DISCORD_PUBLIC_KEY.")
    raw = await request.content.read(_MAX_BODY_BYTES + 1)
    signature = request.headers.get("X-Signature-Ed25519", "")
    timestamp = request.headers.get("X-Signature-Timestamp", "")
    if len(raw) > _MAX_BODY_BYTES or not discord.verify(public_key, signature, timestamp, raw):
        raise AuthenticationFailed("invalid request signature")
    try:
        interaction = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest("The interaction is not valid JSON") from exc
    if not isinstance(interaction, dict):
        raise InvalidRequest("The interaction must be a JSON object")
    if interaction.get("type") == discord.PING:
        return json_response({"type": discord.PONG})
    if interaction.get("type") != discord.APPLICATION_COMMAND:
        raise InvalidRequest("Only PING and application commands are handled")
    return json_response(await _command(request, interaction))


async def _command(request: web.Request, interaction: dict[str, Any]) -> dict[str, Any]:
    services = services_of(request)
    links = discord_links_of(request)
    user = discord.user_id(interaction)
    name = discord.command_name(interaction)
    if user is None:
        return discord.reply("I could not tell who sent this command.")
    if name == "link":
        return discord.reply(await _link(request, user, discord.option(interaction, "code") or ""))
    if name == "unlink":
        unlinked = await links.unlink(user)
        return discord.reply("Unlinked." if unlinked else "This Discord account was not linked.")
    if name not in ("balance", "ask"):
        return discord.reply("Unknown command: use /balance, /ask, /link or /unlink.")
    account_id = await links.account_for(user)
    if account_id is None:
        return discord.reply(discord.NOT_LINKED)
    question = "do I have a balance?" if name == "balance" else (discord.option(interaction, "question") or "")
    if not question.strip() or len(question) > services.settings.assistant_max_message_chars:
        return discord.reply(
            f"Ask a question of 1 to {services.settings.assistant_max_message_chars} characters, "
            "e.g. /ask question:do I have a balance?"
        )
    try:
        await admit_question(services, account_id)
    except TollwayError as exc:
        return discord.reply(exc.message)
    answer = await assistant_of(request).answer(
        Asker(account_id), [Turn("user", question)], model_timeout_s=_DISCORD_MODEL_TIMEOUT_S
    )
    return discord.reply(answer.answer)


async def _link(request: web.Request, user: str, code: str) -> str:
    services = services_of(request)
    check = LimitCheck("discord-link", LimitKind.GCRA, f"discord-link:{user}", _LINK_ATTEMPTS_PER_MINUTE, _MINUTE_US)
    try:
        ticket = await services.limiter.admit([check])
        await services.limiter.finish(ticket, 0)
    except TollwayError:
        return "Too many link attempts: wait a minute, then try again with a fresh code."
    account_id = await discord_links_of(request).redeem(code, user)
    if account_id is None:
        minutes = max(1, services.settings.discord_link_code_ttl_seconds // 60)
        return (
            "That code is unknown, already used or expired. Get a new one on the dashboard's Help page "
            f"(a code works once, for {minutes} minutes)."
        )
    return "Linked: this Discord account now reads your Tollway account. Try /balance or /ask."
