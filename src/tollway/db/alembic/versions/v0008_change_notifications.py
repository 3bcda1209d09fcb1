"""PostgreSQL tells running processes what changed: a NOTIFY in the transaction of each change they follow.

Revision ID: 0008_change_notifications
Revises: 0007_money_checks
Create Date: 2026-12-01

Each process polled every 0.25 s for what other writers changed; now it listens on one connection and reads only
after a notification (`tollway.changes.notifications`), with a slow safety poll. A trigger sends the notification,
so every writer (this code, an older process, the CLI, a DBA's SQL) is covered, and PostgreSQL delivers it only
once the change committed. Payloads name the topic: `ledger` (entries other than usage: settlements are not
followed with Redis, and notifying each would wake every process per batch), `revision` (keys and rate limits,
which all take a revision from `change_revisions`), `auto_recharge`. Within a transaction PostgreSQL sends one
notification per distinct payload. SQLite has no notifications and keeps its `data_version` check.
"""

from __future__ import annotations

from alembic import op

revision: str = "0008_change_notifications"
down_revision: str | None = "0007_money_checks"
branch_labels: str | None = None
depends_on: str | None = None

CHANNEL = "tollway_changes"
FUNCTION = "tollway_notify_change"
# trigger name -> (table, events, granularity and condition, topic)
TRIGGERS: dict[str, tuple[str, str, str, str]] = {
    "ledger_entries_notify": ("ledger_entries", "INSERT", "FOR EACH ROW WHEN (NEW.kind <> 'usage')", "ledger"),
    "change_revisions_notify": ("change_revisions", "INSERT", "FOR EACH STATEMENT", "revision"),
    "auto_recharge_notify": ("auto_recharge", "INSERT OR UPDATE OR DELETE", "FOR EACH STATEMENT", "auto_recharge"),
}


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(
        f"CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN PERFORM pg_notify('{CHANNEL}', TG_ARGV[0]); RETURN NULL; END $$"
    )
    for name, (table, events, granularity, topic) in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} AFTER {events} ON {table} {granularity} EXECUTE FUNCTION {FUNCTION}('{topic}')"
        )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for name, (table, _events, _granularity, _topic) in TRIGGERS.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    op.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
