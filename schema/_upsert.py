"""INSERT … ON CONFLICT DO UPDATE for both backends."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


async def upsert(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]],
                 keys: tuple[str, ...], cols: tuple[str, ...]) -> None:
    """Insert `rows`, or update `cols` of rows whose `keys` already exist."""
    if not rows:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in cols})
    await conn.execute(stmt, rows)
