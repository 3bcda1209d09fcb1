"""Invites, the append-only audit log, hashed session ids (schema_migrations version 6).

Revision ID: 0002_invites_audit_log
Revises: 0001_baseline
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002_invites_audit_log"
down_revision: str | None = "0001_baseline"
branch_labels: str | None = None
depends_on: str | None = None

Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_APPEND_ONLY_SQLITE = (
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_{verb} BEFORE {verb} ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
)
_APPEND_ONLY_POSTGRES = "CREATE OR REPLACE RULE audit_log_no_{verb} AS ON {verb} TO audit_log DO INSTEAD NOTHING"


def upgrade() -> None:
    op.create_table(
        "invites",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_us", sa.BigInteger(), nullable=False),
        sa.Column("used_at_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", Serial, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=True),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=128), nullable=True),
        sa.Column("actor_email", sa.String(length=320), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=True),
        sa.Column("before_json", sa.Text(), nullable=True),
        sa.Column("after_json", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_account", "audit_log", ["account_id", "id"], unique=False)
    # Session ids are now stored hashed: sessions kept in clear are dropped (their users sign in again).
    op.execute("DELETE FROM web_sessions")
    template = _APPEND_ONLY_POSTGRES if op.get_context().dialect.name == "postgresql" else _APPEND_ONLY_SQLITE
    for verb in ("UPDATE", "DELETE"):
        op.execute(template.format(verb=verb))


def downgrade() -> None:
    op.drop_index("ix_audit_account", table_name="audit_log")
    op.drop_table("audit_log")  # its triggers or rules go with it
    op.drop_table("invites")
