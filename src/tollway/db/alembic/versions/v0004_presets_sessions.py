"""Presets; the session and preset of each generation (schema_migrations version 8).

Revision ID: 0004_presets_sessions
Revises: 0003_change_revisions
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004_presets_sessions"
down_revision: str | None = "0003_change_revisions"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "presets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "name", name="uq_presets_account_name"),
    )
    op.add_column("generations", sa.Column("session_id", sa.String(length=256), nullable=True))
    op.add_column("generations", sa.Column("preset_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("preset_id")
        batch.drop_column("session_id")
    op.drop_table("presets")
