"""CHECK constraints where the money rules allow: entry kinds from the fixed set, usage and costs never negative.

Revision ID: 0007_money_checks
Revises: 0006_generations_by_key
Create Date: 2026-12-01

Grants, refunds and adjustments may be negative (they remove credits); usage, a generation's cost, hold and token
counts, and a payment's amounts may not. SQLite adds a CHECK by copying the table (batch mode); PostgreSQL checks
the existing rows when the constraint is added. A row that breaks a rule stops the upgrade, naming the constraint.
"""

from __future__ import annotations

from alembic import context, op

revision: str = "0007_money_checks"
down_revision: str | None = "0006_generations_by_key"
branch_labels: str | None = None
depends_on: str | None = None

KINDS = ("grant", "purchase", "usage", "refund", "adjustment")
CHECKS: dict[str, dict[str, str]] = {
    "ledger_entries": {
        "ck_ledger_kind": "kind IN (" + ", ".join(f"'{kind}'" for kind in KINDS) + ")",
        "ck_ledger_usage_not_negative": "kind <> 'usage' OR amount_nanos >= 0",
    },
    "generations": {
        "ck_generations_cost_not_negative": "cost_nanos >= 0 AND hold_nanos >= 0 AND hold_overrun_nanos >= 0",
        "ck_generations_tokens_not_negative": (
            "tokens_prompt >= 0 AND tokens_completion >= 0 AND tokens_reasoning >= 0 AND tokens_cached >= 0"
        ),
    },
    "payments": {
        "ck_payments_amounts_not_negative": (
            "amount_nanos >= 0 AND fee_nanos >= 0 AND total_cents >= 0 AND refunded_cents >= 0"
        ),
    },
}


def upgrade() -> None:
    if context.is_offline_mode() and op.get_context().dialect.name == "sqlite":
        # SQLite adds a CHECK by copying the table, which needs the live schema: printed SQL cannot do it.
        op.execute("-- SQLite: the CHECK constraints of 0007_money_checks are added by `tollway migrate` only")
        return
    for table, checks in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            for name, condition in checks.items():
                batch.create_check_constraint(name, condition)


def downgrade() -> None:
    for table, checks in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            for name in checks:
                batch.drop_constraint(name, type_="check")
