"""Revisions of key and limit changes from one sequence (schema_migrations version 7).

Revision ID: 0003_change_revisions
Revises: 0002_invites_audit_log
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003_change_revisions"
down_revision: str | None = "0002_invites_audit_log"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "change_revisions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("changed_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # Revisions already on keys and limits stay below every new one.
    highest = (
        "(SELECT MAX(m) FROM (SELECT COALESCE(MAX(revision), 0) AS m FROM api_keys UNION ALL "
        "SELECT COALESCE(MAX(revision), 0) FROM rate_limits) AS existing)"
    )
    op.execute(
        "INSERT INTO change_revisions (id, subject, changed_at_us) "
        f"SELECT {highest}, 'migrated revisions', 0 WHERE {highest} > 0"
    )
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "SELECT setval(pg_get_serial_sequence('change_revisions', 'id'), "
            "(SELECT COALESCE(MAX(id), 0) + 1 FROM change_revisions), false)"
        )


def downgrade() -> None:
    op.drop_table("change_revisions")
