"""Revision numbers for key and rate-limit changes: unique, and committed in the order they are handed out.

Every change appends a row to `change_revisions`; its auto-incremented id is the change's revision,
shared by keys and limits. Two edits can never share a number (the old `max(revision) + 1` could).
A follower reads `revision > last seen`, which is only safe if no smaller revision can commit after a
larger one became visible: PostgreSQL hands out sequence values before commit, so each change first
takes a transaction-scoped advisory lock, held until it commits; SQLite's single writer lock (taken
by the insert, the transaction's first statement) does the same. Key and limit edits are rare and
short, so serialising them costs nothing that matters.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.db import tables

_REVISION_LOCK_ID = 0x7011A8


async def next_revision(connection: AsyncConnection, subject: str, now_us: int) -> int:
    """Call first in the change's transaction; the number is final when the transaction commits."""
    if connection.dialect.name == "postgresql":
        await connection.execute(text(f"SELECT pg_advisory_xact_lock({_REVISION_LOCK_ID})"))
    inserted = await connection.execute(
        tables.change_revisions.insert()
        .values(subject=subject[:80], changed_at_us=now_us)
        .returning(tables.change_revisions.c.id)
    )
    return int(inserted.scalar_one())
