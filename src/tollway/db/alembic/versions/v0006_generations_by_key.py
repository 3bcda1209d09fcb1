"""Generations by key and time: a key's last use and activity per key (schema_migrations version 10).

Revision ID: 0006_generations_by_key
Revises: 0005_usage_kinds
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision: str = "0006_generations_by_key"
down_revision: str | None = "0005_usage_kinds"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_generations_key_time", "generations", ["key_id", "created_at_us"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_generations_key_time", table_name="generations")
