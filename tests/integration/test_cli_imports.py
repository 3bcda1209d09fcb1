"""The CLI starts fast: each command imports what it uses, and help no database, web framework or server.

Counted in modules imported, not seconds, so a busy machine cannot make it flaky.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tollway import audit
from tollway.cli import audit as audit_command

# What only a command that opens a database or serves needs; a top-level import of one of them in src/tollway/cli
# makes every `tollway` command pay for it (about a second for all of them).
HEAVY = (
    "sqlalchemy",
    "alembic",
    "aiohttp",
    "asyncpg",
    "aiosqlite",
    "redis",
    "stripe",
    "pydantic_settings",  # pydantic itself is typer's: it converts the options of the command that runs
    "yaml",
    "tollway.settings",
    "tollway.services",
    "tollway.app",
    "tollway.server",
    "tollway.ledger",
    "tollway.payments",
    "tollway.assistant",
    "tollway.dashboard",
)


def imported_modules(*args: str) -> tuple[str, set[str]]:
    """The output of `python -m tollway ARGS` and the modules it imported, from -X importtime's report (stderr)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tollway", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = [line for line in result.stderr.splitlines() if line.startswith("import time:") and "|" in line]
    assert result.returncode == 0, "\n".join(line for line in result.stderr.splitlines() if line not in report)
    modules = {line.rsplit("|", 1)[1].strip() for line in report}
    assert "tollway.cli.main" in modules  # the report is read right
    return result.stdout, modules


def among(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """The modules that are one of the named packages or inside one."""
    return sorted(m for m in modules if m in names or m.startswith(tuple(f"{name}." for name in names)))


@pytest.mark.parametrize("args", [["--help"], ["accounts", "create", "--help"], ["serve", "--help"]])
def test_help_imports_no_database_web_or_server_module(args: list[str]) -> None:
    output, modules = imported_modules(*args)
    assert "Usage:" in output
    heavy = among(modules, HEAVY)
    assert not heavy, f"`tollway {' '.join(args)}` imports {heavy}; import them inside the command that uses them"


def test_admin_command_imports_no_server(tmp_path: Path) -> None:
    # An admin command opens the database; the server's composition (services, app, payments, assistant) is not
    # its to build.
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    output, modules = imported_modules("accounts", "create", "--email", "fast@example.com", "--database-url", url)
    assert output.startswith("acct_")
    server = among(modules, ("aiohttp", "stripe", "tollway.services", "tollway.app", "tollway.server"))
    server += among(modules, ("tollway.payments", "tollway.assistant", "tollway.gateway", "tollway.dashboard.web"))
    assert not server, f"`tollway accounts create` imports {server}"


def test_audit_page_bound_is_the_audit_logs() -> None:
    # The CLI repeats tollway.audit's page size so that --help does not import the audit log.
    assert audit_command.MAX_PAGE == audit.MAX_PAGE
