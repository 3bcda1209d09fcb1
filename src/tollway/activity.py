"""What an account did, day by day: requests, tokens and spend per model and key, and its balance over time.

Read-only sums over the generations and ledger entries the ledger wrote; days are UTC. The API's
/activity, the dashboard's Activity and Credits charts and the key list's `last_used_at` read here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.db import tables
from tollway.ledger.records import EntryKind

_G = tables.generations
_E = tables.ledger_entries
_K = tables.api_keys
US_PER_DAY = 86_400 * 1_000_000
ACTIVITY_DAYS = 30


@dataclass(frozen=True, slots=True)
class ActivityRow:
    """One UTC day's figures for one model, provider and key."""

    day: date
    model: str
    provider_name: str
    key_id: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cached_tokens: int
    spend_nanos: int


@dataclass(frozen=True, slots=True)
class BalancePoint:
    day: date
    balance_nanos: int  # at the end of that UTC day


def day_of(epoch_us: int) -> date:
    return datetime.fromtimestamp(epoch_us // 1_000_000, tz=UTC).date()


def day_start_us(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000


def window(now_us: int, days: int = ACTIVITY_DAYS) -> tuple[date, date]:
    """The first and last UTC day of the `days` days ending today."""
    today = day_of(now_us)
    return today - timedelta(days=days - 1), today


class AccountActivity:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def rows(self, account_id: str, first: date, last: date, *, key_id: str | None = None) -> list[ActivityRow]:
        """Sums per day, model, provider and key of the account's generations from `first` to `last`."""
        day = (_G.c.created_at_us // US_PER_DAY).label("day")
        conditions = [
            _G.c.account_id == account_id,
            _G.c.created_at_us >= day_start_us(first),
            _G.c.created_at_us < day_start_us(last + timedelta(days=1)),
        ]
        if key_id is not None:
            conditions.append(_G.c.key_id == key_id)
        query = (
            select(
                day,
                _G.c.model,
                _G.c.provider_name,
                _G.c.key_id,
                func.count(),
                func.sum(_G.c.tokens_prompt),
                func.sum(_G.c.tokens_completion),
                func.sum(_G.c.tokens_reasoning),
                func.sum(_G.c.tokens_cached),
                func.sum(_G.c.cost_nanos),
            )
            .where(and_(*conditions))
            .group_by(day, _G.c.model, _G.c.provider_name, _G.c.key_id)
            .order_by(day, _G.c.model, _G.c.provider_name, _G.c.key_id)
        )
        async with self._engine.connect() as connection:
            found = (await connection.execute(query)).all()
        return [
            ActivityRow(
                day=date(1970, 1, 1) + timedelta(days=int(row[0])),
                model=row[1],
                provider_name=row[2] or "",
                key_id=row[3],
                requests=int(row[4]),
                prompt_tokens=int(row[5] or 0),
                completion_tokens=int(row[6] or 0),
                reasoning_tokens=int(row[7] or 0),
                cached_tokens=int(row[8] or 0),
                spend_nanos=int(row[9] or 0),
            )
            for row in found
        ]

    async def key_names(self, account_id: str) -> dict[str, tuple[str, str]]:
        """Every key the account ever had, deleted ones too: id -> (hash, name)."""
        query = select(_K.c.id, _K.c.hash, _K.c.name).where(_K.c.account_id == account_id)
        async with self._engine.connect() as connection:
            found = (await connection.execute(query)).all()
        return {row[0]: (row[1], row[2]) for row in found}

    async def last_used(self, key_ids: list[str]) -> dict[str, int]:
        """When each key last made a request (epoch µs); keys never used are absent."""
        if not key_ids:
            return {}
        query = select(_G.c.key_id, func.max(_G.c.created_at_us)).where(_G.c.key_id.in_(key_ids)).group_by(_G.c.key_id)
        async with self._engine.connect() as connection:
            found = (await connection.execute(query)).all()
        return {row[0]: int(row[1]) for row in found}

    async def balances(self, account_id: str, first: date, last: date) -> list[BalancePoint]:
        """The account's balance at the end of each UTC day from `first` to `last`, from its ledger entries."""
        signed = func.sum(case((_E.c.kind == EntryKind.USAGE.value, -_E.c.amount_nanos), else_=_E.c.amount_nanos))
        start_us = day_start_us(first)
        day = (_E.c.created_at_us // US_PER_DAY).label("day")
        async with self._engine.connect() as connection:
            opening = await connection.scalar(
                select(func.coalesce(signed, 0)).where(_E.c.account_id == account_id, _E.c.created_at_us < start_us)
            )
            moves = (
                await connection.execute(
                    select(day, func.coalesce(signed, 0))
                    .where(
                        _E.c.account_id == account_id,
                        _E.c.created_at_us >= start_us,
                        _E.c.created_at_us < day_start_us(last + timedelta(days=1)),
                    )
                    .group_by(day)
                )
            ).all()
        by_day = {date(1970, 1, 1) + timedelta(days=int(row[0])): int(row[1] or 0) for row in moves}
        balance = int(opening or 0)
        points = []
        current = first
        while current <= last:
            balance += by_day.get(current, 0)
            points.append(BalancePoint(current, balance))
            current += timedelta(days=1)
        return points
