"""A database made before a migration that adds columns upgrades in place, its rows intact."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from tests.conftest import make_database_url
from tollway.db import tables
from tollway.db.engine import create_engine
from tollway.db.migrations import MIGRATIONS, migrate

NEW_COLUMNS = ("tokens_cache_write", "tokens_cache_write_1h", "images", "web_searches", "usage_estimated", "hold_nanos")


async def _downgrade_then_upgrade(url: str) -> tuple[set[str], int]:
    engine = create_engine(url)
    try:
        await migrate(engine)
        version = next(v for v, _, step in MIGRATIONS if step.__name__ == "_usage_kinds")
        async with engine.begin() as connection:
            # What a database of the release before looked like: the columns missing, the step not recorded.
            for name in (*NEW_COLUMNS, "hold_overrun_nanos", "cost_details"):
                await connection.execute(text(f"ALTER TABLE generations DROP COLUMN {name}"))
            await connection.execute(text("DELETE FROM schema_migrations WHERE version = :v"), {"v": version})
            await connection.execute(
                text(
                    "INSERT INTO generations (id, account_id, model, created_at_us, tokens_prompt, tokens_completion,"
                    " tokens_reasoning, tokens_cached, cost_nanos, streamed, cancelled, status, api_type)"
                    " VALUES ('gen-old', 'acct', 'm', 1, 10, 5, 0, 0, 42, false, false, 200, 'completions')"
                )
            )
        applied = await migrate(engine)
        assert applied == [version]
        async with engine.connect() as connection:
            columns = await connection.run_sync(
                lambda sync: {c["name"] for c in inspect(sync).get_columns(tables.generations.name)}
            )
            row = (await connection.execute(text("SELECT cost_nanos, images FROM generations"))).one()
        return columns, int(row[0]) * 1000 + int(row[1])
    finally:
        await engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_generations_gain_the_usage_kind_columns_and_keep_their_rows(kind: str, tmp_path: Path) -> None:
    for url in make_database_url(kind, tmp_path):
        columns, figures = asyncio.run(_downgrade_then_upgrade(url))
        assert set(NEW_COLUMNS) <= columns
        assert figures == 42 * 1000 + 0  # the old row kept its cost and reads 0 images
