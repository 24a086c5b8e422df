"""Running Alembic migrations on an open connection (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0003"
"""The newest revision in `migrations/versions` (a test checks it against Alembic's
own reading of the scripts): a database already there is recognised without
importing Alembic, which every command that opens a node would otherwise pay
(about 0.3 s)."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at our migrations, bound to `connection` if given."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def script_head() -> str | None:
    """The newest revision as Alembic reads it from the scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision the database behind `connection` is at (None: never migrated)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if revision is None else str(revision)


def upgrade(connection: Connection) -> None:
    """Upgrade the database behind `connection` to the newest revision. A database
    already there is left alone without running (or importing) Alembic's machinery:
    every node start and every command opens the database."""
    if current_revision(connection) == HEAD:
        return
    from alembic import command

    command.upgrade(alembic_config(connection), "head")
