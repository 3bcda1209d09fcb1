"""The Activity page and its CSV exports: 30 days of spend by model or key, and the generations table."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from typing import Any

from aiohttp import web
from markupsafe import Markup

from tollway.activity import AccountActivity, window
from tollway.api.context import services_of
from tollway.clock import us_to_iso
from tollway.dashboard.activity import DAY_US
from tollway.dashboard.charts import Segment, stacked_bars
from tollway.dashboard.web import has_control_characters, render, require_user
from tollway.money import femtos_to_price_string, format_usd
from tollway.services import Services

_THIRTY_DAYS_US = 30 * DAY_US
_PAGE = 50


def _daily_rows(rows: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "date": (us_to_iso(r.day * DAY_US) or "")[:10],
            "group": r.group,
            "requests": r.requests,
            "tokens": r.tokens,
            "cost": format_usd(r.cost_nanos),
        }
        for r in rows
    ]


async def spend_chart(services: Services, account_id: str, by: str) -> Markup:
    """Spend per UTC day of the last 30, stacked by model or by key (the same sums as GET /api/v1/activity)."""
    store = AccountActivity(services.engine)
    first, last = window(services.clock.now_us())
    keys = await store.key_names(account_id) if by == "key" else {}
    names = [name for _hash, name in keys.values()]
    labels = {  # a key's name, told apart by its hash where two keys share one
        key_id: name if names.count(name) == 1 else f"{name} ({key_hash[:8]})"
        for key_id, (key_hash, name) in keys.items()
    }
    bars: dict[date, list[Segment]] = {}
    merged: dict[tuple[date, str], list[int]] = {}
    for row in await store.rows(account_id, first, last):
        series = row.model if by == "model" else labels.get(row.key_id or "", "(no key)")
        figures = merged.setdefault((row.day, series), [0, 0])
        figures[0] += row.spend_nanos
        figures[1] += row.requests
    for (day, series), (spend_nanos, requests) in merged.items():
        bars.setdefault(day, []).append(Segment(series, spend_nanos, f"{requests} requests"))
    days = [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
    return stacked_bars(days, bars, f"Spend per UTC day by {by}, last 30 days")


async def activity_page(request: web.Request) -> web.Response:
    services = services_of(request)
    who, user = await require_user(request)
    since = services.clock.now_us() - _THIRTY_DAYS_US
    by = "key" if request.query.get("by") == "key" else "model"
    model = request.query.get("model") or None
    if model is not None and has_control_characters(model):
        model = None
    try:
        offset = max(0, int(request.query.get("offset", "0")))
    except ValueError:
        offset = 0
    generations = await services.activity.generations(user.account_id, since, _PAGE + 1, offset, model)
    daily = await services.activity.daily(user.account_id, since, by)
    chart = await spend_chart(services, user.account_id, by)
    return render(
        request,
        who,
        "activity.html",
        title="Activity",
        active="/activity",
        by=by,
        model=model,
        daily=_daily_rows(daily),
        chart=chart,
        generations=generations[:_PAGE],
        next_offset=offset + _PAGE if len(generations) > _PAGE else None,
    )


def _csv(rows: list[list[Any]], filename: str) -> web.Response:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return web.Response(
        text=buffer.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _femtos_as_usd(femtos: int) -> str:
    sign = "-" if femtos < 0 else ""
    return sign + femtos_to_price_string(abs(femtos))


async def generations_csv(request: web.Request) -> web.Response:
    services = services_of(request)
    _who, user = await require_user(request)
    since = services.clock.now_us() - _THIRTY_DAYS_US
    records = await services.activity.generations(user.account_id, since, 100_000)
    rows: list[list[Any]] = [
        [
            "id",
            "created_at",
            "model",
            "provider",
            "tokens_prompt",
            "tokens_completion",
            "tokens_cached",
            "tokens_cache_write",
            "tokens_reasoning",
            "images",
            "cost",
            "cache_discount",
            "usage_estimated",
            "latency_ms",
            "status",
        ]
    ]
    rows += [
        [
            g.id,
            us_to_iso(g.created_at_us),
            g.model,
            g.provider_name,
            g.tokens_prompt,
            g.tokens_completion,
            g.tokens_cached,
            g.tokens_cache_write,
            g.tokens_reasoning,
            g.images,
            format(g.cost_nanos / 1_000_000_000, ".9f").rstrip("0").rstrip(".") if g.cost_nanos else "0",
            _femtos_as_usd(g.cost_details.get("cache_discount", 0)),
            "true" if g.usage_estimated else "false",
            g.latency_ms,
            g.status,
        ]
        for g in records
    ]
    return _csv(rows, "generations.csv")


async def daily_csv(request: web.Request) -> web.Response:
    services = services_of(request)
    _who, user = await require_user(request)
    by = "key" if request.query.get("by") == "key" else "model"
    daily = await services.activity.daily(user.account_id, services.clock.now_us() - _THIRTY_DAYS_US, by)
    rows: list[list[Any]] = [["date", by, "requests", "tokens", "cost"]]
    rows += [[r["date"], r["group"], r["requests"], r["tokens"], r["cost"]] for r in _daily_rows(daily)]
    return _csv(rows, "daily.csv")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/activity", activity_page),
        web.get("/activity/generations.csv", generations_csv),
        web.get("/activity/daily.csv", daily_csv),
    ]
