"""Activity queries for the dashboard: generations and daily aggregates, paginated and computed in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.db import tables
from tollway.ledger.records import GenerationRecord
from tollway.ledger.store import generation_from_row

_G = tables.generations
DAY_US = 86_400_000_000


@dataclass(frozen=True, slots=True)
class DailyRow:
    day: int  # days since the epoch (UTC)
    group: str
    requests: int
    tokens: int
    cost_nanos: int


class ActivityStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def generations(
        self, account_id: str, since_us: int, limit: int, offset: int = 0, model: str | None = None
    ) -> list[GenerationRecord]:
        query = (
            select(_G)
            .where(_G.c.account_id == account_id, _G.c.created_at_us >= since_us)
            .order_by(_G.c.created_at_us.desc(), _G.c.id)
            .limit(limit)
            .offset(offset)
        )
        if model:
            query = query.where(_G.c.model == model)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [generation_from_row(row) for row in rows]

    async def daily(self, account_id: str, since_us: int, by: str) -> list[DailyRow]:
        group_column: Any = _G.c.key_id if by == "key" else _G.c.model
        day = (_G.c.created_at_us // DAY_US).label("day")
        query = (
            select(
                day,
                group_column,
                func.count(),
                func.sum(_G.c.tokens_prompt + _G.c.tokens_completion),
                func.sum(_G.c.cost_nanos),
            )
            .where(_G.c.account_id == account_id, _G.c.created_at_us >= since_us)
            .group_by(day, group_column)
            .order_by(day.desc())
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [DailyRow(int(r[0]), str(r[1] or "-"), int(r[2]), int(r[3] or 0), int(r[4] or 0)) for r in rows]
