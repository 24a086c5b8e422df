"""The unit of work: the single write path for replicated data.

Every insert or update of a replicated entity goes through here, and in the same
transaction the unit of work

* stamps each changed cell with a fresh hybrid-logical-clock value, this node as
  origin and this transaction's local sequence number (`sync_cells`), which is what
  the sync engine reads to tell a peer what it has not seen;
* keeps the field history (old → new, who, when) for entities that ask for it;
* recomputes columns derived locally from others (search keys).
"""

from __future__ import annotations

import time
from datetime import date, datetime
from typing import Any

import msgspec
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from schema._derive import derive
from schema._entities import ENTITIES
from schema._errors import NotFoundError
from schema._ids import new_id
from schema._policy import Entity
from schema._tables import TABLES, field_history, node_counters, sync_cells
from schema._types import utcnow
from sync import tick

APPEND_ONLY = frozenset({"field_history"})
"""Entities whose rows never change after insert: one cell (`*`) stands for the row."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat().replace("+00:00", "Z")
    return msgspec.to_builtins(value)


class UnitOfWork:
    """One write transaction on replicated data. Obtain it from `Database.write`."""

    def __init__(self, conn: AsyncConnection, *, node_id: str, actor_id: str | None) -> None:
        self.conn = conn
        self.node_id = node_id
        self.actor_id = actor_id
        self._clock = 0
        self._seq = 0
        self._dirty = False

    async def start(self) -> None:
        query = select(node_counters.c.name, node_counters.c.value)
        if self.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        counters = dict((await self.conn.execute(query)).all())
        self._clock = int(counters.get("clock", 0))
        self._seq = int(counters.get("seq", 0)) + 1

    async def finish(self) -> None:
        if not self._dirty:
            return
        await self._upsert(node_counters, [
            {"name": "clock", "value": self._clock},
            {"name": "seq", "value": self._seq},
        ], ("name",), ("value",))

    def next_clock(self) -> int:
        """A fresh clock value, strictly after every earlier one on this node."""
        self._clock = tick(self._clock, int(time.time() * 1000))
        return self._clock

    async def get(self, table: str, row_id: str) -> dict[str, Any] | None:
        """Read one row inside this transaction."""
        t = TABLES[table]
        row = (await self.conn.execute(select(t).where(t.c.id == row_id))).mappings().first()
        return dict(row) if row else None

    async def insert(self, table: str, values: dict[str, Any]) -> dict[str, Any]:
        """Insert a row of a replicated entity and record every cell for sync."""
        entity = ENTITIES[table]
        row = self._complete(entity, values)
        row.update(derive(table, row))
        await self.conn.execute(TABLES[table].insert(), [row])
        clock = self.next_clock()
        cols = ("*",) if table in APPEND_ONLY else entity.replicated_columns
        await self._upsert(sync_cells, [
            {"tbl": table, "row_id": row["id"], "col": c, "clock": clock,
             "origin": self.node_id, "seq": self._seq} for c in cols
        ], ("tbl", "row_id", "col"), ("clock", "origin", "seq"))
        self._dirty = True
        return row

    async def update(self, table: str, row_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change fields of a row; unchanged values are not written or recorded.

        Returns the row as it is after the update. Raises `NotFoundError`.
        """
        entity = ENTITIES[table]
        if table in APPEND_ONLY:
            raise ValueError(f"{table} rows never change")
        old = await self.get(table, row_id)
        if old is None:
            raise NotFoundError(f"{table} {row_id} not found")
        changed = {k: v for k, v in changes.items() if old.get(k) != v}
        for name in changed:
            entity.field(name)  # unknown columns fail loudly, before anything is written
        if not changed:
            return old
        changed["updated_at"] = utcnow()
        new = {**old, **changed}
        changed.update({k: v for k, v in derive(table, new).items() if old.get(k) != v})
        new.update(changed)
        t = TABLES[table]
        await self.conn.execute(update(t).where(t.c.id == row_id).values(**changed))
        cells = []
        for name in changed:
            f = entity.field(name)
            if f.replicated:
                cells.append({"tbl": table, "row_id": row_id, "col": name,
                              "clock": self.next_clock(), "origin": self.node_id,
                              "seq": self._seq})
        await self._upsert(sync_cells, cells, ("tbl", "row_id", "col"),
                           ("clock", "origin", "seq"))
        if entity.keep_history:
            await self._history(table, row_id, old, changed, entity)
        self._dirty = True
        return new

    async def _history(self, table: str, row_id: str, old: dict[str, Any],
                       changed: dict[str, Any], entity: Entity) -> None:
        now = utcnow()
        for name, value in changed.items():
            if not entity.field(name).history:
                continue
            await self.insert(field_history.name, {
                "table_name": table, "row_id": row_id, "column_name": name,
                "old_value": _jsonable(old.get(name)), "new_value": _jsonable(value),
                "changed_by": self.actor_id, "changed_at": now, "node_id": self.node_id,
                "clock": self._clock,
            })

    def _complete(self, entity: Entity, values: dict[str, Any]) -> dict[str, Any]:
        row = dict(values)
        row.setdefault("id", new_id())
        names = {f.name for f in entity.fields}
        unknown = set(row) - names
        if unknown:
            raise ValueError(f"unknown columns for {entity.table}: {sorted(unknown)}")
        now = utcnow()
        if "created_at" in names:
            row.setdefault("created_at", now)
            row.setdefault("updated_at", now)
        for f in entity.fields:
            default = f.column.default
            if f.name not in row and default is not None:
                arg: Any = getattr(default, "arg", None)
                row[f.name] = arg(None) if getattr(default, "is_callable", False) else arg
            row.setdefault(f.name, None)
        return row

    async def _upsert(self, table: Any, rows: list[dict[str, Any]], keys: tuple[str, ...],
                      cols: tuple[str, ...]) -> None:
        if not rows:
            return
        insert = postgresql.insert if self.conn.dialect.name == "postgresql" else sqlite.insert
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys), set_={c: stmt.excluded[c] for c in cols}
        )
        await self.conn.execute(stmt, rows)
