"""The dashboard's routes, one module per page group: sign-in, credits, keys, activity and models, admin.

Pages are server-rendered over the same services the API uses.
"""

from __future__ import annotations

from aiohttp import web

from tollway.dashboard import admin, credits, keys, models, signin, usage
from tollway.dashboard.web import see_other, visitor


async def root(request: web.Request) -> web.Response:
    who = await visitor(request)
    raise see_other("/credits" if who.user else "/login")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/", root),
        *signin.routes(),
        *credits.routes(),
        *keys.routes(),
        *usage.routes(),
        *models.routes(),
        *admin.routes(),
    ]
