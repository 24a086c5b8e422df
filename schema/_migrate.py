"""Running Alembic migrations on an open connection (no alembic.ini needed)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at our migrations, bound to `connection` if given."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


@cache
def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade(connection: Connection) -> None:
    """Upgrade the database behind `connection` to the newest revision. A database
    already there is left alone without running Alembic's machinery (every node start
    and every command opens the database)."""
    if MigrationContext.configure(connection).get_current_revision() == _head():
        return
    command.upgrade(alembic_config(connection), "head")
