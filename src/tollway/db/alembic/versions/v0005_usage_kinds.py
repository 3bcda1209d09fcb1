"""Every usage kind of a generation: cache writes, images, searches, estimated usage, hold and cost split
(schema_migrations version 9).

Revision ID: 0005_usage_kinds
Revises: 0004_presets_sessions
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005_usage_kinds"
down_revision: str | None = "0004_presets_sessions"
branch_labels: str | None = None
depends_on: str | None = None

_COUNTS = ("tokens_cache_write", "tokens_cache_write_1h", "images", "web_searches")
_NANOS = ("hold_nanos", "hold_overrun_nanos")


def upgrade() -> None:
    # Rows of earlier generations read 0 (server defaults), as the code reads a missing figure. A plain ADD
    # COLUMN on both databases: no table copy, and the DDL prints with `tollway migrate --sql`.
    for name in _COUNTS:
        op.add_column("generations", sa.Column(name, sa.Integer(), nullable=False, server_default=sa.text("0")))
    op.add_column(
        "generations", sa.Column("usage_estimated", sa.Boolean(), nullable=False, server_default=sa.text("false"))
    )
    for name in _NANOS:
        op.add_column("generations", sa.Column(name, sa.BigInteger(), nullable=False, server_default=sa.text("0")))
    op.add_column("generations", sa.Column("cost_details", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        for name in ("cost_details", *_NANOS, "usage_estimated", *_COUNTS):
            batch.drop_column(name)
