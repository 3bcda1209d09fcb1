"""SQL for per-account and per-key limits, with a revision (db/revisions.py) so running servers pick up changes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.db import tables
from tollway.db.revisions import next_revision
from tollway.db.upsert import insert_ignoring_duplicates
from tollway.limits.config import LimitSpec, Period

_L = tables.rate_limits


def _spec(row: Any) -> LimitSpec:
    return LimitSpec(
        requests=row.requests,
        period=Period(row.period) if row.period else None,
        tokens_per_minute=row.tokens_per_minute,
        concurrency=row.concurrency,
    )


class LimitStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def set(self, subject_kind: str, subject_id: str, spec: LimitSpec, now_us: int) -> None:
        async with self._engine.begin() as connection:
            revision = await next_revision(connection, f"limit:{subject_kind}:{subject_id}", now_us)
            await connection.execute(delete(_L).where(_L.c.subject_kind == subject_kind, _L.c.subject_id == subject_id))
            await connection.execute(
                insert_ignoring_duplicates(_L, connection.dialect.name),
                [
                    {
                        "subject_kind": subject_kind,
                        "subject_id": subject_id,
                        "requests": spec.requests,
                        "period": spec.period.value if spec.period else None,
                        "tokens_per_minute": spec.tokens_per_minute,
                        "concurrency": spec.concurrency,
                        "revision": revision,
                        "updated_at_us": now_us,
                    }
                ],
            )

    async def get(self, subject_kind: str, subject_id: str) -> LimitSpec:
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    select(_L).where(_L.c.subject_kind == subject_kind, _L.c.subject_id == subject_id)
                )
            ).first()
        return LimitSpec() if row is None else _spec(row)

    async def all_after(self, revision: int) -> list[tuple[str, str, LimitSpec, int]]:
        async with self._engine.connect() as connection:
            rows = (await connection.execute(select(_L).where(_L.c.revision > revision))).all()
        return [(row.subject_kind, row.subject_id, _spec(row), row.revision) for row in rows]
