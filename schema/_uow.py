"""The unit of work: the single local write path for replicated data.

Every insert, update, increment or delete of a replicated entity goes through here,
and in the same transaction the unit of work records what the sync engine needs
(sync/SPEC.md §Change capture):

* a row stamp (`sync_rows`: causal length, clock, origin, local sequence) when a row
  is created, re-created or deleted; one metadata row per data row;
* a cell override (`sync_cells`) with a fresh clock and the lineage the writer had
  seen, for each field changed later;
* per-node totals for counters (`sync_tallies`) and per-element clocks for add-wins
  sets (`sync_members`);
* the field history (old → new, who, when) for entities that keep it, and a change
  request instead of a write for HQ-authoritative fields changed away from HQ.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from crypto import is_token
from schema._classes import ClassPolicy
from schema._derive import derive
from schema._entities import BLIND_INDEXED, ENTITIES, SENSITIVE
from schema._errors import ConflictError, NotFoundError
from schema._ids import new_id
from schema._policy import Entity, Field
from schema._tables import (
    TABLES,
    node_counters,
    sync_cells,
    sync_members,
    sync_rows,
    sync_tallies,
    table_rank,
)
from schema._types import utcnow
from schema._upsert import upsert
from schema._vault import KeyMissingError, Vault
from sync import Merge, compact, extend, lineage_of, state_rank, tick
from sync import Stamp as _Stamp

CYCLE_SHIFT = 8


def jsonable(value: Any) -> Any:
    """A value as JSON-friendly builtins (dates as ISO strings, instants with Z)."""
    if isinstance(value, datetime | date):
        return value.isoformat().replace("+00:00", "Z")
    return msgspec.to_builtins(value)


def customer_of(table: str, row: dict[str, Any]) -> str | None:
    """The customer a row belongs to, which decides its replication scope."""
    if table == "customers":
        return str(row["id"])
    value = row.get("customer_id")
    return None if value is None else str(value)


class UnitOfWork:
    """One write transaction on replicated data. Obtain it from `Database.write`."""

    def __init__(self, conn: AsyncConnection, *, node_id: str, actor_id: str | None,
                 hq_authority: bool = True, vault: Vault | None = None) -> None:
        self.conn = conn
        self.node_id = node_id
        self.actor_id = actor_id
        self.hq_authority = hq_authority
        self.vault = vault
        self._clock = 0
        self.seq = 0
        self.own_writes = 0
        self._policy_checked = False
        """Rows this transaction wrote as this node's own (not merged from a peer)."""
        self._dirty = False

    async def start(self) -> None:
        query = select(node_counters.c.name, node_counters.c.value)
        if self.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        counters = {name: value for name, value in (await self.conn.execute(query)).all()}
        self._clock = int(counters.get("clock", 0))
        self.seq = int(counters.get("seq", 0)) + 1

    async def finish(self) -> None:
        if not self._dirty:
            return
        await upsert(self.conn, node_counters, [
            {"name": "clock", "value": self._clock},
            {"name": "seq", "value": self.seq},
        ], ("name",), ("value",))

    @property
    def clock(self) -> int:
        """The newest clock value this unit of work has issued or seen."""
        return self._clock

    def next_clock(self) -> int:
        """A fresh clock value, strictly after every earlier one on this node."""
        self._clock = tick(self._clock, int(time.time() * 1000))
        return self._clock

    def observe(self, clock: int) -> None:
        """Move the clock past a clock received from another node (already checked)."""
        self._clock = max(self._clock, clock)
        self._dirty = True

    def touch(self) -> None:
        """Mark that this transaction changed replicated state."""
        self._dirty = True

    async def get(self, table: str, row_id: str) -> dict[str, Any] | None:
        """Read one row inside this transaction."""
        t = TABLES[table]
        row = (await self.conn.execute(select(t).where(t.c.id == row_id))).mappings().first()
        return {str(k): v for k, v in row.items()} if row else None

    # -- inserts -------------------------------------------------------------------

    async def insert(self, table: str, values: dict[str, Any]) -> dict[str, Any]:
        """Insert a row of a replicated entity and stamp it for sync."""
        return (await self.insert_many(table, [values]))[0]

    async def insert_many(self, table: str, many: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Insert rows of one entity with a handful of statements, however many rows."""
        entity = ENTITIES[table]
        rows: list[dict[str, Any]] = []
        requests: list[tuple[dict[str, Any], str, Any]] = []
        for values in many:
            row = self._complete(entity, values)
            held = self._hold_for_hq(entity, row)
            row.update({name: None for name, _ in held})
            row.update(derive(table, row))
            requests += [(row, name, value) for name, value in held]
            rows.append(row)
        await self._seal(table, [(r["id"], customer_of(table, r), r) for r in rows])
        ids = [r["id"] for r in rows]
        previous: dict[str, int] = {}
        for i in range(0, len(ids), 500):
            previous.update({r.row_id: r.cl for r in await self.conn.execute(
                select(sync_rows.c.row_id, sync_rows.c.cl).where(
                    sync_rows.c.tbl == table, sync_rows.c.row_id.in_(ids[i:i + 500])))})
        if len(set(ids)) != len(ids) or any(cl % 2 == 1 for cl in previous.values()):
            raise ConflictError(f"{table}: a row with this id exists")
        await self.conn.execute(TABLES[table].insert(), rows)
        stamps, cells, tallies, members = [], [], [], []
        order = table_rank(table)
        for row in rows:
            clock = self.next_clock()
            row_id = row["id"]
            stamps.append({"tbl": table, "row_id": row_id, "cl": previous.get(row_id, 0) + 1,
                           "clock": clock, "origin": self.node_id, "seq": self.seq,
                           "stamp_seq": self.seq, "ord": order})
            for f in entity.fields:
                if f.merge is Merge.COUNTER and row.get(f.name):
                    tallies.append({"tbl": table, "row_id": row_id, "col": f.name,
                                    "node": self.node_id, "inc": max(0, int(row[f.name])),
                                    "dec": max(0, -int(row[f.name])), "seq": self.seq})
                elif f.merge is Merge.ADD_WINS_SET:
                    members += [{"tbl": table, "row_id": row_id, "col": f.name, "elem": e,
                                 "node": self.node_id, "added": clock, "removed": 0,
                                 "seq": self.seq} for e in sorted(set(row[f.name] or ()))]
                elif f.merge is Merge.STATE and row.get(f.name) is not None:
                    rank = state_rank(0, _position(f, row[f.name]))
                    if rank:
                        cells.append({"tbl": table, "row_id": row_id, "col": f.name,
                                      "clock": clock, "origin": self.node_id, "rank": rank,
                                      "lineage": None, "seq": self.seq})
        await upsert(self.conn, sync_rows, stamps, ("tbl", "row_id"),
                     ("cl", "clock", "origin", "seq", "stamp_seq"))
        for side, side_rows in ((sync_cells, cells), (sync_tallies, tallies),
                                (sync_members, members)):
            if side_rows:
                await self.conn.execute(side.insert(), side_rows)
        for row, name, value in requests:
            await self._request(table, row, name, value)
        self._dirty = True
        self.own_writes += 1
        return rows

    # -- updates -------------------------------------------------------------------

    async def update(self, table: str, row_id: str, changes: dict[str, Any], *,
                     new_cycle: frozenset[str] = frozenset()) -> dict[str, Any]:
        """Change fields of a row; unchanged values are not written or recorded.

        `new_cycle` names `first_write` or `state` fields whose change starts a new
        cycle (a handover, a re-opened case) instead of being refused. Returns the row
        as it is after the update. Raises `NotFoundError`, `ConflictError`.
        """
        entity = ENTITIES[table]
        if entity.append_only:
            raise ConflictError(f"{table} rows never change")
        old = await self.get(table, row_id)
        if old is None:
            raise NotFoundError(f"{table} {row_id} not found")
        changed = {k: v for k, v in changes.items() if _differs(old.get(k), v)}
        for name in changed:
            f = entity.field(name)  # unknown columns fail loudly, before anything is written
            if f.merge is Merge.COUNTER:
                raise ValueError(f"{table}.{name} is a counter; use increment()")
            if f.merge is Merge.IMMUTABLE:
                raise ConflictError(f"{name} cannot change")
        for name, value in self._hold_for_hq(entity, changed):
            await self._request(table, old, name, value)
        changed = await self._seal_changes(table, old, changed)
        if not changed:
            return old
        changed["updated_at"] = utcnow()
        new = {**old, **changed}
        changed.update({k: v for k, v in derive(table, new).items() if old.get(k) != v})
        new.update(changed)
        stamps = await self._stamps(table, row_id)
        cells: list[tuple[str, int, int, str | None]] = []
        for name in changed:
            f = entity.field(name)
            if not f.replicated:
                continue
            if f.merge is Merge.ADD_WINS_SET:
                await self._members(table, row_id, name, set(changed[name] or ()),
                                    set(old.get(name) or ()))
                continue
            current, lineage = stamps.get(name, stamps["*"])
            rank = self._rank(f, current, old.get(name), changed[name], name in new_cycle)
            clock = self.next_clock()
            cells.append((name, clock, rank, json.dumps(
                compact(_Stamp(clock, self.node_id, rank),
                        extend(lineage, self.node_id, clock)))))
        t = TABLES[table]
        await self.conn.execute(update(t).where(t.c.id == row_id).values(**changed))
        for name, clock, rank, lineage_json in cells:
            await self._cell(table, row_id, name, clock, rank,
                             None if lineage_json == "null" else lineage_json)
        await self._touch_row(table, row_id)
        if entity.keep_history:
            clocks = {name: clock for name, clock, _, _ in cells}
            await self._history(table, old, changed, entity, clocks)
        self._dirty = True
        self.own_writes += 1
        return new

    async def increment(self, table: str, row_id: str, column: str, delta: int
                        ) -> dict[str, Any]:
        """Add `delta` (may be negative) to a counter field; never lost or doubled."""
        f = ENTITIES[table].field(column)
        if f.merge is not Merge.COUNTER:
            raise ValueError(f"{table}.{column} is not a counter")
        old = await self.get(table, row_id)
        if old is None:
            raise NotFoundError(f"{table} {row_id} not found")
        await self._tally(table, row_id, column, delta)
        t = TABLES[table]
        value = int(old[column] or 0) + delta
        now = utcnow()
        await self.conn.execute(update(t).where(t.c.id == row_id).values(
            {column: value, "updated_at": now}))
        # updated_at is an lww cell like any other: stamp it, or replicas disagree on it.
        stamps = await self._stamps(table, row_id)
        _, lineage = stamps.get("updated_at", stamps["*"])
        clock = self.next_clock()
        stored = compact(_Stamp(clock, self.node_id), extend(lineage, self.node_id, clock))
        await self._cell(table, row_id, "updated_at", clock, 0,
                         None if stored is None else json.dumps(stored))
        await self._touch_row(table, row_id)
        self._dirty = True
        self.own_writes += 1
        return {**old, column: value}

    async def reseal(self, table: str, row_id: str, column: str, token: str) -> None:
        """Store `token`, the same plaintext sealed anew (under another key class), as the
        version just after the one it replaces: it supersedes that version on every
        replica, but never a real edit made concurrently, whose clock is later, so
        re-encrypting loses no one's work. No history and no `updated_at`: the value,
        to its readers, did not change."""
        stamps = await self._stamps(table, row_id)
        current, lineage = stamps.get(column, stamps["*"])
        clock = current.clock + 1
        t = TABLES[table]
        await self.conn.execute(update(t).where(t.c.id == row_id).values({column: token}))
        stored = compact(_Stamp(clock, self.node_id, current.rank),
                         extend(lineage, self.node_id, clock))
        await self._cell(table, row_id, column, clock, current.rank,
                         None if stored is None else json.dumps(stored))
        await self._touch_row(table, row_id)
        self._dirty = True
        self.own_writes += 1

    async def delete(self, table: str, row_id: str) -> None:
        """Delete a row: a tombstone (even causal length) replaces it everywhere."""
        stamp = (await self.conn.execute(select(sync_rows.c.cl).where(
            sync_rows.c.tbl == table, sync_rows.c.row_id == row_id))).scalar()
        if stamp is None or stamp % 2 == 0:
            raise NotFoundError(f"{table} {row_id} not found")
        t = TABLES[table]
        await self.conn.execute(delete(t).where(t.c.id == row_id))
        for side in (sync_cells, sync_tallies, sync_members):
            await self.conn.execute(delete(side).where(side.c.tbl == table,
                                                       side.c.row_id == row_id))
        await self.conn.execute(update(sync_rows).where(
            sync_rows.c.tbl == table, sync_rows.c.row_id == row_id).values(
            cl=stamp + 1, clock=self.next_clock(), origin=self.node_id, seq=self.seq,
            stamp_seq=self.seq))
        self._dirty = True
        self.own_writes += 1

    # -- helpers -------------------------------------------------------------------

    def _rank(self, f: Field, current: _Stamp, old: Any, new: Any, cycle: bool) -> int:
        if f.merge is Merge.FIRST_WRITE:
            if old is not None and not cycle:
                raise ConflictError(f"{f.name} was set first elsewhere; it changes only "
                                    "through a new cycle (handover)")
            # Filling an empty field is a new rank too: otherwise the empty value the row
            # was created with, being older, would win over it as the "first write".
            return current.rank + 1
        if f.merge is Merge.STATE:
            cur_cycle, cur_pos = current.rank >> CYCLE_SHIFT, current.rank & 0xFF
            position = _position(f, new)
            if cycle:
                return state_rank(cur_cycle + 1, position)
            if position < cur_pos:
                raise ConflictError(f"{f.name} cannot go back from {old!r} to {new!r} "
                                    "without re-opening")
            return state_rank(cur_cycle, position)
        return 0

    def _hold_for_hq(self, entity: Entity, values: dict[str, Any]) -> list[tuple[str, Any]]:
        """Take out HQ-authoritative values that a non-HQ node may only request."""
        if self.hq_authority or entity.table == "change_requests":
            return []
        held = []
        for f in entity.fields:
            if f.merge is Merge.HQ_AUTHORITATIVE and values.get(f.name) is not None:
                held.append((f.name, values.pop(f.name)))
        return held

    async def _request(self, table: str, row: dict[str, Any], column: str, value: Any) -> None:
        await self.insert("change_requests", {
            "table_name": table, "row_id": row["id"], "column_name": column,
            "customer_id": customer_of(table, row), "value": jsonable(value),
            "requested_by": self.actor_id, "node_id": self.node_id, "status": "pending"})

    async def _stamps(self, table: str, row_id: str) -> dict[str, tuple[_Stamp, dict[str, int]]]:
        base = (await self.conn.execute(select(sync_rows).where(
            sync_rows.c.tbl == table, sync_rows.c.row_id == row_id))).one()
        row_stamp = _Stamp(base.clock, base.origin)
        out = {"*": (row_stamp, lineage_of(row_stamp, None))}
        for c in await self.conn.execute(select(sync_cells).where(
                sync_cells.c.tbl == table, sync_cells.c.row_id == row_id)):
            stamp = _Stamp(c.clock, c.origin, c.rank)
            out[c.col] = (stamp, lineage_of(stamp, json.loads(c.lineage) if c.lineage else None))
        return out

    async def _cell(self, table: str, row_id: str, col: str, clock: int, rank: int,
                    lineage: str | None) -> None:
        await upsert(self.conn, sync_cells, [{
            "tbl": table, "row_id": row_id, "col": col, "clock": clock,
            "origin": self.node_id, "rank": rank, "lineage": lineage, "seq": self.seq,
        }], ("tbl", "row_id", "col"), ("clock", "origin", "rank", "lineage", "seq"))

    async def _touch_row(self, table: str, row_id: str) -> None:
        await self.conn.execute(update(sync_rows).where(
            sync_rows.c.tbl == table, sync_rows.c.row_id == row_id).values(seq=self.seq))

    async def _tally(self, table: str, row_id: str, col: str, delta: int) -> None:
        current = (await self.conn.execute(select(sync_tallies.c.inc, sync_tallies.c.dec).where(
            sync_tallies.c.tbl == table, sync_tallies.c.row_id == row_id,
            sync_tallies.c.col == col, sync_tallies.c.node == self.node_id))).first()
        inc, dec = (current.inc, current.dec) if current else (0, 0)
        inc, dec = (inc + delta, dec) if delta >= 0 else (inc, dec - delta)
        await upsert(self.conn, sync_tallies, [{
            "tbl": table, "row_id": row_id, "col": col, "node": self.node_id,
            "inc": inc, "dec": dec, "seq": self.seq,
        }], ("tbl", "row_id", "col", "node"), ("inc", "dec", "seq"))

    async def _members(self, table: str, row_id: str, col: str, new: set[str], old: set[str]
                       ) -> None:
        rows = []
        clock = self.next_clock() if new - old else 0
        for elem in new - old:
            rows.append({"tbl": table, "row_id": row_id, "col": col, "elem": elem,
                         "node": self.node_id, "added": clock, "removed": 0, "seq": self.seq})
        for elem in old - new:
            # A remove covers exactly the adds this node has seen, node by node.
            seen = await self.conn.execute(select(sync_members).where(
                sync_members.c.tbl == table, sync_members.c.row_id == row_id,
                sync_members.c.col == col, sync_members.c.elem == elem))
            rows.extend({"tbl": table, "row_id": row_id, "col": col, "elem": elem,
                         "node": m.node, "added": m.added, "removed": m.added,
                         "seq": self.seq} for m in seen)
        if not rows:
            return
        keys = ("tbl", "row_id", "col", "elem", "node")
        existing = {}
        for r in rows:
            existing[tuple(r[k] for k in keys)] = r
        await upsert(self.conn, sync_members, list(existing.values()), keys,
                     ("added", "removed", "seq"))

    async def _history(self, table: str, old: dict[str, Any], changed: dict[str, Any],
                       entity: Entity, clocks: dict[str, int]) -> None:
        """One history row per changed field, carrying that field's own clock (so a
        conflict can name who made each competing write)."""
        now = utcnow()
        for name, value in changed.items():
            if not entity.field(name).history:
                continue
            await self.insert("field_history", {
                "table_name": table, "row_id": old["id"], "column_name": name,
                "customer_id": customer_of(table, old),
                "old_value": jsonable(old.get(name)), "new_value": jsonable(value),
                "changed_by": self.actor_id, "changed_at": now, "node_id": self.node_id,
                "clock": clocks.get(name, self._clock),
            })

    async def _policy(self) -> ClassPolicy:
        """The class policy, checked for changes once per transaction (not per write)."""
        assert self.vault is not None
        if not self._policy_checked:
            await self.vault.refresh_policy(self.conn)
            self._policy_checked = True
        return self.vault.policy

    async def _seal(self, table: str, rows: list[tuple[str, str | None, dict[str, Any]]]
                    ) -> None:
        """Encrypt sensitive values before they are written (the only way in)."""
        columns = SENSITIVE.get(table)
        if not columns or not any(r.get(c) is not None and not is_token(r[c])
                                  for _, _, r in rows for c in columns):
            return
        if self.vault is None:
            raise KeyMissingError("this node holds no field keys: it cannot write "
                                  "confidential fields")
        if any(customer is None for _, customer, _ in rows):
            raise ValueError(f"{table}: a confidential value needs its customer")
        await self._policy()
        created = await self.vault.seal_rows(
            self.conn, table, [(i, str(c), r) for i, c, r in rows])
        if created:
            await self.insert_many("data_keys", created)

    async def _seal_changes(self, table: str, old: dict[str, Any], changed: dict[str, Any]
                            ) -> dict[str, Any]:
        """`changed` with sensitive values sealed; a value equal to the stored one (once
        decrypted) is no change."""
        columns: Mapping[str, str] | None = SENSITIVE.get(table)
        if not columns or not any(c in changed for c in columns):
            return changed
        customer = customer_of(table, old)
        if self.vault is not None and customer is not None:
            columns = (await self._policy()).columns(table)
            # A stored ciphertext written back (a conflict resolved to the losing value):
            # open it so it is sealed afresh with its mask and blind index.
            for c, cls in columns.items():
                if is_token(changed.get(c)):
                    plain = await self.vault.reveal(self.conn, table, c, old["id"], customer,
                                                    changed[c], frozenset({cls}))
                    if plain != "(encrypted)":
                        changed = {**changed, c: plain}
            plain = dict(old)
            await self.vault.open_rows(self.conn, table, [(customer, plain)],
                                       frozenset(columns.values()))
            changed = {k: v for k, v in changed.items()
                       if k not in columns or is_token(v) or _differs(plain.get(k), v)
                       or (v is not None and is_token(plain.get(k)))}
        for c in columns:
            if c in changed and changed[c] is None:
                changed[f"{c}_mask"] = None
                if c in BLIND_INDEXED.get(table, ()):
                    changed[f"{c}_bidx"] = None
        await self._seal(table, [(old["id"], customer, changed)])
        return changed

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


def _position(f: Field, state: Any) -> int:
    try:
        return f.states.index(state)
    except ValueError:
        raise ConflictError(f"{f.name} has no state {state!r}") from None


def _differs(old: Any, new: Any) -> bool:
    if isinstance(old, list) and isinstance(new, list):
        return sorted(map(str, old)) != sorted(map(str, new))
    return bool(old != new)
