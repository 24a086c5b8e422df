"""Many-row INSERT (or upsert) with the statement compiled once per table and dialect.

SQLAlchemy's executemany turns every row dict into parameters through its compiled
statement, per row and per column; for a page of thousands of new rows that costs more
than SQLite's own work. Here the statement is compiled once, the rows arrive as tuples
and only the columns whose type converts values (instants, JSON, dates) are processed.
PostgreSQL keeps the ordinary path: asyncpg's executemany is already prepared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from schema._types import UtcDateTime


def _sqlite_instant(value: Any) -> str | None:
    """What `UtcDateTime` stores on SQLite (naive UTC, always with microseconds, as
    SQLAlchemy's DATETIME writes it), without two layers of processors per value."""
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError("instants must be timezone-aware datetimes")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return str(value.replace(tzinfo=None).isoformat(" ", "microseconds"))


@dataclass(frozen=True)
class _Compiled:
    sql: str
    order: tuple[int, ...]
    """For each statement parameter, its index in the caller's column tuple."""
    convert: tuple[tuple[int, Callable[[Any], Any]], ...]


_CACHE: dict[tuple[str, str, tuple[str, ...], tuple[str, ...], tuple[str, ...]],
             _Compiled] = {}


def _compile(dialect: Dialect, table: Table, columns: tuple[str, ...],
             keys: tuple[str, ...], update: tuple[str, ...]) -> _Compiled:
    cache_key = (dialect.name, table.name, columns, keys, update)
    found = _CACHE.get(cache_key)
    if found is not None:
        return found
    stmt: Any = sqlite.insert(table)
    if keys:
        stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                          set_={c: stmt.excluded[c] for c in update})
    compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
    names = compiled.positiontup or []
    order = tuple(columns.index(n) for n in names)
    convert = []
    for position, name in enumerate(names):
        kind = table.c[name].type
        process = (_sqlite_instant if isinstance(kind, UtcDateTime)
                   else kind.dialect_impl(dialect).bind_processor(dialect))
        if process is not None:
            convert.append((position, process))
    found = _Compiled(compiled.string, order, tuple(convert))
    _CACHE[cache_key] = found
    return found


async def insert_rows(conn: AsyncConnection, table: Table, columns: tuple[str, ...],
                      rows: Sequence[Sequence[Any]], *, keys: tuple[str, ...] = (),
                      update: tuple[str, ...] = ()) -> None:
    """INSERT `rows` (tuples in `columns` order) into `table`; with `keys`, rows whose
    keys exist update the `update` columns instead."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        make = postgresql.insert(table)
        stmt: Any = make
        if keys:
            stmt = make.on_conflict_do_update(index_elements=list(keys),
                                              set_={c: make.excluded[c] for c in update})
        await conn.execute(stmt, [dict(zip(columns, r, strict=True)) for r in rows])
        return
    c = _compile(conn.dialect, table, columns, keys, update)
    order, convert = c.order, c.convert
    params: list[Any]
    if convert:
        params = []
        for r in rows:
            p = [r[i] for i in order]
            for position, process in convert:
                p[position] = process(p[position])
            params.append(tuple(p))
    elif order == tuple(range(len(columns))):
        params = [tuple(r) for r in rows]
    else:
        params = [tuple(r[i] for i in order) for r in rows]
    # Straight to the driver: SQLAlchemy's execution context would walk every row again.
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    await driver.executemany(c.sql, params)
