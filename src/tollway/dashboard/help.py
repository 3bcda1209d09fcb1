"""The Help page: the support assistant in a form that works without JavaScript, and Discord link codes.

The conversation travels in a hidden field (the asker's own earlier turns, bounded): each POST answers the
new question and re-renders the page with every turn.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from tollway.api.assistant import admit_question, assistant_of, discord_links_of
from tollway.api.context import services_of
from tollway.assistant.service import Asker, Turn, parse_turns
from tollway.clock import us_to_iso
from tollway.dashboard.web import Visitor, form, render, require_user
from tollway.errors import TollwayError

_KEPT_TURNS = 10


def _earlier_turns(raw: str) -> list[dict[str, str]]:
    """The conversation so far from the hidden field; anything malformed starts a new conversation."""
    try:
        turns = orjson.loads(raw) if raw else []
    except orjson.JSONDecodeError:
        return []
    if not isinstance(turns, list):
        return []
    kept = [
        {"role": t["role"], "content": t["content"]}
        for t in turns
        if isinstance(t, dict) and t.get("role") in ("user", "assistant") and isinstance(t.get("content"), str)
    ]
    return kept[-_KEPT_TURNS:]


async def _link(request: web.Request, account_id: str) -> dict[str, str | None]:
    code, expires_at_us = await discord_links_of(request).current_code(account_id)
    return {"code": code, "expires_at": us_to_iso(expires_at_us)}


def _page(
    request: web.Request,
    who: Visitor,
    turns: list[dict[str, str]],
    link: dict[str, str | None],
    status: int = 200,
    **context: Any,
) -> web.Response:
    """The Help page showing `turns`, which also go in the hidden field for the next question."""
    return render(
        request,
        who,
        "help.html",
        status=status,
        title="Help",
        active="/help",
        turns=turns,
        conversation=orjson.dumps(turns).decode(),
        link=link,
        **context,
    )


async def help_page(request: web.Request) -> web.Response:
    who, user = await require_user(request)
    return _page(request, who, [], await _link(request, user.account_id))


async def ask(request: web.Request) -> web.Response:
    services = services_of(request)
    who, user = await require_user(request)
    fields = await form(request, who)
    earlier = _earlier_turns(fields.get("conversation", ""))
    question = fields.get("question", "")
    settings = services.settings
    try:
        turns = parse_turns(
            {"messages": [*earlier, {"role": "user", "content": question}]},
            settings.assistant_max_message_chars,
            _KEPT_TURNS + 1,
        )
        await admit_question(services, user.account_id)
        answer = await assistant_of(request).answer(Asker(user.account_id), turns)
    except TollwayError as exc:
        return _page(
            request,
            who,
            earlier,
            await _link(request, user.account_id),
            exc.status,
            errors={"question": exc.message},
            question=question,
        )
    shown = [
        *(Turn(t["role"], t["content"]) for t in earlier),
        Turn("user", question),
        Turn("assistant", answer.answer),
    ]
    conversation = [{"role": t.role, "content": t.content} for t in shown][-_KEPT_TURNS:]
    return _page(request, who, conversation, await _link(request, user.account_id), sources=answer.sources)


async def discord_code(request: web.Request) -> web.Response:
    who, user = await require_user(request)
    await form(request, who)
    code, expires_at_us = await discord_links_of(request).new_code(user.account_id)
    return _page(request, who, [], {"code": code, "expires_at": us_to_iso(expires_at_us)})


def routes() -> list[web.RouteDef]:
    return [web.get("/help", help_page), web.post("/help", ask), web.post("/help/discord-code", discord_code)]
