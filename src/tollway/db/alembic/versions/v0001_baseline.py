"""Baseline: the tables of the release before Alembic (schema_migrations versions 1 to 5).

Revision ID: 0001_baseline
Revises:
Create Date: 2026-12-01

A table that already exists is left as it is: a database made by a release older than the baseline (fewer
tables) gains the missing ones here, and one made by the baseline release is stamped at this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision: str = "0001_baseline"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _missing(table: str) -> bool:
    if context.is_offline_mode():
        return True
    return not sa.inspect(op.get_bind()).has_table(table)


def upgrade() -> None:
    if _missing("accounts"):
        op.create_table(
            "accounts",
            sa.Column("id", sa.String(length=40), nullable=False),
            sa.Column("email", sa.String(length=320), nullable=False),
            sa.Column("created_at_us", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_accounts_email", "accounts", ["email"], unique=False)
    if _missing("api_keys"):
        op.create_table(
            "api_keys",
            sa.Column("id", sa.String(length=40), nullable=False),
            sa.Column("hash", sa.String(length=64), nullable=False),
            sa.Column("account_id", sa.String(length=40), nullable=False),
            sa.Column("name", sa.String(length=200), nullable=False),
            sa.Column("label", sa.String(length=40), nullable=False),
            sa.Column("is_management", sa.Boolean(), nullable=False),
            sa.Column("disabled", sa.Boolean(), nullable=False),
            sa.Column("limit_nanos", sa.BigInteger(), nullable=True),
            sa.Column("limit_reset", sa.String(length=10), nullable=True),
            sa.Column("include_byok_in_limit", sa.Boolean(), nullable=False),
            sa.Column("creator_user_id", sa.String(length=64), nullable=True),
            sa.Column("created_at_us", sa.BigInteger(), nullable=False),
            sa.Column("updated_at_us", sa.BigInteger(), nullable=True),
            sa.Column("expires_at_us", sa.BigInteger(), nullable=True),
            sa.Column("deleted_at_us", sa.BigInteger(), nullable=True),
            sa.Column("revision", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("hash"),
        )
        op.create_index("ix_api_keys_account", "api_keys", ["account_id"], unique=False)
        op.create_index("ix_api_keys_revision", "api_keys", ["revision"], unique=False)
    if _missing("auto_recharge"):
        op.create_table(
            "auto_recharge",
            sa.Column("account_id", sa.String(length=40), nullable=False),
            sa.Column("enabled", sa.Boolean(), nullable=False),
            sa.Column("threshold_nanos", sa.BigInteger(), nullable=False),
            sa.Column("amount_nanos", sa.BigInteger(), nullable=False),
            sa.Column("customer_id", sa.String(length=128), nullable=True),
            sa.Column("payment_method_id", sa.String(length=128), nullable=True),
            sa.Column("disabled_reason", sa.Text(), nullable=True),
            sa.Column("in_flight_payment_id", sa.String(length=40), nullable=True),
            sa.Column("last_charge_at_us", sa.BigInteger(), nullable=True),
            sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("account_id"),
        )
    if _missing("generations"):
        op.create_table(
            "generations",
            sa.Column("id", sa.String(length=64), nullable=False),
            sa.Column("account_id", sa.String(length=40), nullable=False),
            sa.Column("key_id", sa.String(length=40), nullable=True),
            sa.Column("model", sa.String(length=200), nullable=False),
            sa.Column("provider_name", sa.String(length=200), nullable=True),
            sa.Column("upstream_id", sa.String(length=200), nullable=True),
            sa.Column("created_at_us", sa.BigInteger(), nullable=False),
            sa.Column("tokens_prompt", sa.Integer(), nullable=False),
            sa.Column("tokens_completion", sa.Integer(), nullable=False),
            sa.Column("tokens_reasoning", sa.Integer(), nullable=False),
            sa.Column("tokens_cached", sa.Integer(), nullable=False),
            sa.Column("cost_nanos", sa.BigInteger(), nullable=False),
            sa.Column("latency_ms", sa.Integer(), nullable=True),
            sa.Column("generation_time_ms", sa.Integer(), nullable=True),
            sa.Column("streamed", sa.Boolean(), nullable=False),
            sa.Column("cancelled", sa.Boolean(), nullable=False),
            sa.Column("finish_reason", sa.String(length=32), nullable=True),
            sa.Column("native_finish_reason", sa.String(length=64), nullable=True),
            sa.Column("status", sa.Integer(), nullable=False),
            sa.Column("api_type", sa.String(length=16), nullable=False),
            sa.Column("external_user", sa.String(length=256), nullable=True),
            sa.Column("user_agent", sa.String(length=512), nullable=True),
            sa.Column("http_referer", sa.String(length=512), nullable=True),
            sa.Column("max_tokens_capped", sa.Integer(), nullable=True),
            sa.Column("provider_responses", sa.Text(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_generations_account_time", "generations", ["account_id", "created_at_us"], unique=False)
    if _missing("ledger_entries"):
        op.create_table(
            "ledger_entries",
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
            sa.Column("account_id", sa.String(length=40), nullable=False),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("amount_nanos", sa.BigInteger(), nullable=False),
            sa.Column("key_id", sa.String(length=40), nullable=True),
            sa.Column("generation_id", sa.String(length=64), nullable=True),
            sa.Column("reference", sa.String(length=128), nullable=True),
            sa.Column("reason", sa.Text(), nullable=True),
            sa.Column("origin", sa.String(length=40), nullable=True),
            sa.Column("created_at_us", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("generation_id", name="uq_ledger_generation"),
            sa.UniqueConstraint("kind", "reference", name="uq_ledger_kind_reference"),
        )
        op.create_index("ix_ledger_account", "ledger_entries", ["account_id", "id"], unique=False)
        op.create_index("ix_ledger_key_time", "ledger_entries", ["key_id", "created_at_us"], unique=False)
    if _missing("payment_events"):
        op.create_table(
            "payment_events",
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
            sa.Column("provider", sa.String(length=16), nullable=False),
            sa.Column("event_id", sa.String(length=128), nullable=False),
            sa.Column("type", sa.String(length=64), nullable=False),
            sa.Column("payment_id", sa.String(length=40), nullable=True),
            sa.Column("outcome", sa.String(length=32), nullable=False),
            sa.Column("reason", sa.Text(), nullable=True),
            sa.Column("received_at_us", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("provider", "event_id", name="uq_payment_event"),
        )
    if _missing("payments"):
        op.create_table(
            "payments",
            sa.Column("id", sa.String(length=40), nullable=False),
            sa.Column("account_id", sa.String(length=40), nullable=False),
            sa.Column("provider", sa.String(length=16), nullable=False),
            sa.Column("method", sa.String(length=16), nullable=False),
            sa.Column("external_id", sa.String(length=128), nullable=True),
            sa.Column("payment_intent", sa.String(length=128), nullable=True),
            sa.Column("amount_nanos", sa.BigInteger(), nullable=False),
            sa.Column("fee_nanos", sa.BigInteger(), nullable=False),
            sa.Column("total_cents", sa.BigInteger(), nullable=False),
            sa.Column("currency", sa.String(length=8), nullable=False),
            sa.Column("status", sa.String(length=24), nullable=False),
            sa.Column("refunded_cents", sa.BigInteger(), nullable=False),
            sa.Column("disputed", sa.Boolean(), nullable=False),
            sa.Column("note", sa.Text(), nullable=True),
            sa.Column("checkout_url", sa.Text(), nullable=True),
            sa.Column("created_at_us", sa.BigInteger(), nullable=False),
            sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
            sa.Column("credited_at_us", sa.BigInteger(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("external_id"),
        )
        op.create_index("ix_payments_account", "payments", ["account_id", "created_at_us"], unique=False)
        op.create_index("ix_payments_intent", "payments", ["payment_intent"], unique=False)
    if _missing("rate_limits"):
        op.create_table(
            "rate_limits",
            sa.Column("subject_kind", sa.String(length=8), nullable=False),
            sa.Column("subject_id", sa.String(length=40), nullable=False),
            sa.Column("requests", sa.Integer(), nullable=True),
            sa.Column("period", sa.String(length=8), nullable=True),
            sa.Column("tokens_per_minute", sa.Integer(), nullable=True),
            sa.Column("concurrency", sa.Integer(), nullable=True),
            sa.Column("revision", sa.BigInteger(), nullable=False),
            sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("subject_kind", "subject_id"),
        )
    if _missing("refusals"):
        op.create_table(
            "refusals",
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
            sa.Column("account_id", sa.String(length=40), nullable=False),
            sa.Column("key_id", sa.String(length=40), nullable=True),
            sa.Column("at_us", sa.BigInteger(), nullable=False),
            sa.Column("status", sa.Integer(), nullable=False),
            sa.Column("code", sa.String(length=40), nullable=False),
            sa.Column("message", sa.Text(), nullable=False),
            sa.Column("request_id", sa.String(length=64), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_refusals_account_time", "refusals", ["account_id", "at_us"], unique=False)
    if _missing("schema_migrations"):
        op.create_table(
            "schema_migrations",
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("applied_at_us", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("version"),
        )
    if _missing("settings_store"):
        op.create_table(
            "settings_store",
            sa.Column("name", sa.String(length=64), nullable=False),
            sa.Column("value", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("name"),
        )
    if _missing("users"):
        op.create_table(
            "users",
            sa.Column("id", sa.String(length=40), nullable=False),
            sa.Column("email", sa.String(length=320), nullable=False),
            sa.Column("password_hash", sa.Text(), nullable=False),
            sa.Column("account_id", sa.String(length=40), nullable=False),
            sa.Column("role", sa.String(length=8), nullable=False),
            sa.Column("is_admin", sa.Boolean(), nullable=False),
            sa.Column("created_at_us", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("email"),
        )
    if _missing("web_sessions"):
        op.create_table(
            "web_sessions",
            sa.Column("id", sa.String(length=64), nullable=False),
            sa.Column("user_id", sa.String(length=40), nullable=False),
            sa.Column("created_at_us", sa.BigInteger(), nullable=False),
            sa.Column("expires_at_us", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )


def downgrade() -> None:
    for table in (
        "web_sessions",
        "users",
        "settings_store",
        "schema_migrations",
        "refusals",
        "rate_limits",
        "payments",
        "payment_events",
        "ledger_entries",
        "generations",
        "auto_recharge",
        "api_keys",
        "accounts",
    ):
        op.drop_table(table)
