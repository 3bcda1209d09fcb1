"""Alembic's environment: runs on the connection tollway.db.migrations hands over, or offline for `--sql`.

Tollway does not use alembic.ini: the configuration is built in code (tollway.db.migrations.alembic_config),
so the wheel carries everything needed to upgrade a database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from tollway.db.migrations import include_object
from tollway.db.tables import metadata


def run_offline() -> None:
    """Print the DDL for a DBA (`tollway migrate --sql`)."""
    config = context.config
    context.configure(
        dialect_name=config.get_main_option("dialect_name"),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=config.get_main_option("dialect_name") == "sqlite",
        include_object=include_object,
        transactional_ddl=True,  # one BEGIN ... COMMIT around the script, on SQLite too
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters a table by copying it
        include_object=include_object,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online(context.config.attributes["connection"])
