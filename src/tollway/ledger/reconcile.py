"""`tollway reconcile`: recompute every balance from the ledger entries and compare with what is cached.

It checks that every billed generation has exactly its usage entry, and, with Redis, that each
cached account's credits, usage and held figures match the ledger and its live holds. Holds whose
expiry passed (a process died holding them) are released first, as any reservation would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.db import tables
from tollway.ledger.records import EntryKind
from tollway.ledger.redis_book import _PURGE, PREFIX, RedisBook
from tollway.ledger.store import LedgerStore
from tollway.money import nanos_to_usd

_E = tables.ledger_entries
_G = tables.generations

_PURGE_ONLY = (
    _PURGE
    + """
return purge(KEYS[1], KEYS[2], tonumber(ARGV[2]))
"""
)


@dataclass
class ReconcileReport:
    accounts_checked: int = 0
    expired_holds_released: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.mismatches

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "accounts_checked": self.accounts_checked,
            "expired_holds_released": self.expired_holds_released,
            "mismatches": self.mismatches,
        }


async def _generation_mismatches(engine: AsyncEngine) -> list[dict[str, Any]]:
    usage = select(_E.c.generation_id, _E.c.amount_nanos).where(_E.c.kind == EntryKind.USAGE.value).subquery()
    query = (
        select(_G.c.id, _G.c.account_id, _G.c.cost_nanos, usage.c.amount_nanos)
        .select_from(_G.outerjoin(usage, usage.c.generation_id == _G.c.id))
        .where(func.coalesce(usage.c.amount_nanos, 0) != _G.c.cost_nanos)
        .limit(100)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [
        {
            "kind": "generation_without_matching_usage",
            "generation_id": r[0],
            "account_id": r[1],
            "cost": nanos_to_usd(r[2]),
            "usage_entry": None if r[3] is None else nanos_to_usd(r[3]),
        }
        for r in rows
    ]


async def reconcile(engine: AsyncEngine, redis_url: str | None, now_us: int, fix: bool) -> ReconcileReport:
    report = ReconcileReport()
    report.mismatches += await _generation_mismatches(engine)
    store = LedgerStore(engine)
    async with engine.connect() as connection:
        account_ids = [row[0] for row in (await connection.execute(select(tables.accounts.c.id))).all()]
    report.accounts_checked = len(account_ids)
    if redis_url is None:
        return report
    client: redis.Redis = redis.Redis.from_url(redis_url)
    purge = client.register_script(_PURGE_ONLY)
    try:
        for account_id in account_ids:
            account_key = RedisBook.account_key(account_id)
            if not await client.hexists(account_key, "loaded"):
                continue
            holds_key = RedisBook.holds_key(account_id)
            report.expired_holds_released += int(await purge(keys=[account_key, holds_key], args=[PREFIX, now_us]))
            totals = await store.account_totals(account_id)
            cached = [int(v or 0) for v in await client.hmget(account_key, ["credits", "usage", "held"])]
            live: list[bytes] = await client.zrange(holds_key, 0, -1)  # type: ignore[assignment]
            live_held = sum(int(bytes(member).decode().split("|")[1]) for member in live)
            expected = [totals.credits_nanos, totals.usage_nanos, live_held]
            if cached != expected:
                report.mismatches.append(
                    {
                        "kind": "cached_figures_differ",
                        "account_id": account_id,
                        "cached": dict(zip(["credits", "usage", "held"], map(nanos_to_usd, cached), strict=True)),
                        "ledger": dict(zip(["credits", "usage", "held"], map(nanos_to_usd, expected), strict=True)),
                    }
                )
                if fix:
                    # Dropped figures are reloaded from the ledger on next use.
                    await client.delete(account_key, holds_key)
    finally:
        await client.aclose()
    return report
