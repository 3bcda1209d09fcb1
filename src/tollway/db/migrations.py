"""Schema migrations: Alembic revisions (tollway/db/alembic/versions), one per schema change.

`migrate` upgrades a database to the code's head revision: once, under an advisory lock on PostgreSQL and
SQLite's write lock, so concurrent starters never race. A database made before Alembic (its steps recorded in
`schema_migrations`) is stamped at the revision its last step matches, then upgraded. `check_schema` is what
`serve` and the admin commands run: a new, empty database is created; one behind the code is upgraded only with
`auto_migrate`, else refused with the command to run; one ahead of the code (a newer Tollway migrated it) is
always refused.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

_ADVISORY_LOCK_ID = 0x7011A7
_SCRIPTS = Path(__file__).resolve().parent / "alembic"
_LEGACY_TABLE = "schema_migrations"
# The last step a database recorded in schema_migrations before Alembic -> the revision equal to it. Steps 1-5
# are the baseline release; a database with fewer gains the missing tables from the baseline revision.
LEGACY_REVISIONS = {
    5: "0001_baseline",
    6: "0002_invites_audit_log",
    7: "0003_change_revisions",
    8: "0004_presets_sessions",
    9: "0005_usage_kinds",
    10: "0006_generations_by_key",
}
# Tables of the database that are not the schema's: Alembic's own and the SQLite start-up lock.
_NOT_OURS = frozenset({"alembic_version", "_migration_lock"})

State = Literal["empty", "behind", "current", "ahead"]
T = TypeVar("T")


class SchemaMismatch(RuntimeError):
    """The database's schema and this code disagree; the message says which command fixes it."""


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    state: State
    current: str | None  # the database's revision (None: empty, or made before Alembic and not stamped yet)
    head: str
    legacy_version: int | None = None  # the last schema_migrations step of a database made before Alembic

    def describe(self) -> str:
        if self.current is not None:
            return f"revision {self.current}"
        if self.legacy_version is not None:
            return f"pre-Alembic step {self.legacy_version}"
        return "no schema"


def include_object(_object: object, name: str | None, kind: str, _reflected: bool, _compare_to: object) -> bool:
    """What Alembic compares and autogenerates: the schema's tables, not Alembic's own nor the lock."""
    return not (kind == "table" and name in _NOT_OURS)


def alembic_config(*, dialect_name: str | None = None, output: io.StringIO | None = None) -> Config:
    """Alembic's configuration, built in code: the scripts travel inside the package (no alembic.ini)."""
    # Its INFO lines ("Context impl SQLiteImpl.") are noise in Tollway's logs; callers log what was applied.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    config = Config(output_buffer=output) if output is not None else Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    if dialect_name is not None:
        config.set_main_option("dialect_name", dialect_name)
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the package carries its revisions"
    return head


def _known(revision: str) -> bool:
    return any(script.revision == revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions())


def _status(connection: Connection) -> SchemaStatus:
    head = head_revision()
    current = MigrationContext.configure(connection).get_current_revision()
    if current is not None:
        if current == head:
            return SchemaStatus("current", current, head)
        return SchemaStatus("behind" if _known(current) else "ahead", current, head)
    tables = set(inspect(connection).get_table_names()) - _NOT_OURS
    if not tables:
        return SchemaStatus("empty", None, head)
    legacy = None
    if _LEGACY_TABLE in tables:
        legacy = connection.scalar(text(f"SELECT MAX(version) FROM {_LEGACY_TABLE}"))
    if legacy is not None and int(legacy) > max(LEGACY_REVISIONS):
        return SchemaStatus("ahead", None, head, int(legacy))
    return SchemaStatus("behind", None, head, int(legacy) if legacy is not None else None)


def _lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK_ID})"))
    else:
        # Take SQLite's write lock first so two starting processes do not both create tables.
        connection.execute(text("CREATE TABLE IF NOT EXISTS _migration_lock (id INTEGER)"))


def _upgrade(connection: Connection) -> list[str]:
    """Stamp a pre-Alembic database, upgrade to head; the revisions applied now, oldest first."""
    _lock(connection)
    status = _status(connection)
    if status.state == "ahead":
        raise SchemaMismatch(_ahead_message(status))
    config = alembic_config()
    config.attributes["connection"] = connection
    if status.current is None and status.legacy_version is not None and status.legacy_version in LEGACY_REVISIONS:
        command.stamp(config, LEGACY_REVISIONS[status.legacy_version])
    before = MigrationContext.configure(connection).get_current_revision()
    command.upgrade(config, "head")
    scripts = ScriptDirectory.from_config(config)
    applied = [script.revision for script in scripts.iterate_revisions("head", before or "base")]
    return list(reversed(applied))


async def _run(engine: AsyncEngine, step: Callable[[Connection], T]) -> T:
    async with engine.begin() as connection:
        return await connection.run_sync(step)


async def migrate(engine: AsyncEngine) -> list[str]:
    """Upgrade the database to this code's head revision; returns the revisions applied now."""
    return await _run(engine, _upgrade)


async def schema_status(engine: AsyncEngine) -> SchemaStatus:
    async with engine.connect() as connection:
        return await connection.run_sync(_status)


def _ahead_message(status: SchemaStatus) -> str:
    return (
        f"the database schema ({status.describe()}) is newer than this Tollway (head {status.head}): a newer "
        "Tollway migrated it. Run that version, or restore the backup taken before the upgrade."
    )


def _refusal(status: SchemaStatus, auto_migrate: bool) -> SchemaMismatch | None:
    if status.state == "ahead":
        return SchemaMismatch(_ahead_message(status))
    if status.state == "behind" and not auto_migrate:
        return SchemaMismatch(
            f"the database schema ({status.describe()}) is behind this Tollway (head {status.head}): back it up, "
            "then run `tollway migrate` (or set auto_migrate: true / TOLLWAY_AUTO_MIGRATE=1 to upgrade at start)"
        )
    return None


async def verify_schema(engine: AsyncEngine, auto_migrate: bool) -> SchemaStatus:
    """Raise SchemaMismatch where `check_schema` would refuse; change nothing."""
    status = await schema_status(engine)
    refusal = _refusal(status, auto_migrate)
    if refusal is not None:
        raise refusal
    return status


async def check_schema(engine: AsyncEngine, auto_migrate: bool) -> list[str]:
    """Before serving: create a new database, refuse one ahead of the code, and one behind unless auto_migrate."""
    status = await verify_schema(engine, auto_migrate)
    if status.state == "current":
        return []
    return await migrate(engine)


def migration_sql(dialect_name: str, from_revision: str | None) -> str:
    """The DDL that upgrades a database at `from_revision` (None: an empty one) to head, for a DBA to run."""
    output = io.StringIO()
    config = alembic_config(dialect_name=dialect_name, output=output)
    command.upgrade(config, f"{from_revision}:head" if from_revision else "head", sql=True)
    return output.getvalue()


async def pending_sql(engine: AsyncEngine) -> str:
    """`tollway migrate --sql`: the DDL from this database's revision to head (nothing runs)."""
    status = await schema_status(engine)
    if status.state == "ahead":
        raise SchemaMismatch(_ahead_message(status))
    start = status.current
    if start is None and status.legacy_version is not None:
        start = LEGACY_REVISIONS.get(status.legacy_version)
    if start == status.head:
        return ""
    return migration_sql(engine.dialect.name, start)
