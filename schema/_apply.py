"""Applying a peer's batch: the receiving half of sync (sync/SPEC.md §Apply).

The whole batch is merged inside one unit of work. Local state for every row in the
batch is read with a handful of set-based queries; each cell is decided in Python
by the pure rules of `sync`; winners, stamps and conflicts are written back. A change
that cannot be applied (clock too far ahead, outside what the sender may write,
unknown to this schema, a partial row for a row we never had) is quarantined with
its reason and never blocks the rest.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from schema._bulk import among, insert_rows, records
from schema._derive import derive
from schema._detected import DetectedConflicts
from schema._entities import ENTITIES
from schema._fresh import NewRows
from schema._ids import new_id
from schema._plan import PLANS, coerce
from schema._policy import Entity
from schema._scope import BY_BRANCH, CHILDREN, HQ_ONLY_WRITES, customer_branches
from schema._tables import (
    TABLES,
    sync_cells,
    sync_members,
    sync_quarantine,
    sync_rows,
    sync_tallies,
    table_rank,
)
from schema._types import utcnow
from schema._uow import UnitOfWork
from schema._upsert import upsert
from sync import (
    Batch,
    Merge,
    Quarantined,
    Row,
    Stamp,
    collector_paused,
    compact,
    counter_value,
    decide,
    lineage_of,
    millis_of,
    pack,
    set_members,
)

_ABSENT = object()
_row_encoder = msgspec.msgpack.Encoder()
STAMP_COLUMNS = ("tbl", "row_id", "cl", "clock", "origin", "seq", "stamp_seq", "ord")
SIDE_TABLES = {
    "sync_cells": (sync_cells, ("tbl", "row_id", "col", "clock", "origin", "rank", "lineage",
                                "seq")),
    "sync_tallies": (sync_tallies, ("tbl", "row_id", "col", "node", "inc", "dec", "seq")),
    "sync_members": (sync_members, ("tbl", "row_id", "col", "elem", "node", "added",
                                    "removed", "seq")),
}


@dataclass
class ApplyResult:
    """What applying one batch did."""

    applied: int = 0
    conflicts: int = 0
    evicted: int = 0
    quarantined: list[Quarantined] = field(default_factory=list)
    offered: int = 0
    """Customers offered back whole to the sender (they re-entered our scope)."""


class Applier:
    """Merges one batch into the local database through a unit of work."""

    def __init__(self, uow: UnitOfWork, batch: Batch, *, hq_node: str,
                 writer_branch: str | None, max_skew_ms: int, peer: str) -> None:
        self.uow = uow
        self.conn: AsyncConnection = uow.conn
        self.batch = batch
        self.hq_node = hq_node
        self.writer_branch = writer_branch
        """Set when the sender is a branch: it may write only its own customers."""
        self.max_skew_ms = max_skew_ms
        self.peer = peer
        self.result = ApplyResult()
        self._new_customers: dict[str, str | None] = {}
        self._entered = frozenset(batch.entered)
        self._buffer: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self._new: NewRows | None = None
        """The current table's rows new here (`_unique` sets it)."""
        self._detected = DetectedConflicts(uow.node_id)

    async def _flush(self) -> None:
        """Write buffered new rows: one statement per table."""
        buffer, self._buffer = self._buffer, defaultdict(list)
        stamps = buffer.pop("sync_rows", [])
        for name, rows in buffer.items():
            if name in SIDE_TABLES:
                table, columns = SIDE_TABLES[name]
                await insert_rows(self.conn, table, columns, rows)
            else:  # new rows, finished by `NewRows.add`
                await insert_rows(self.conn, TABLES[name], PLANS[name].columns, rows,
                                  finished=True)
        # A row re-created after a delete already has a stamp: upsert.
        await insert_rows(self.conn, sync_rows, STAMP_COLUMNS, stamps, keys=("tbl", "row_id"),
                          update=("cl", "clock", "origin", "seq", "stamp_seq"))

    async def run(self) -> ApplyResult:
        groups: dict[str, list[Row]] = defaultdict(list)
        for row in self.batch.rows:
            groups[row.tbl].append(row)
        # Parents first, so a branch's new customer and its contacts in one batch pass
        # the scope check; nothing else depends on order (no foreign keys).
        for tbl in sorted(groups, key=lambda t: (table_rank(t), t)):
            await self._table(tbl, groups[tbl])
        self.result.conflicts += await self._detected.write(self.uow)
        for tbl, row_id in self.batch.evictions:
            await self._evict(tbl, row_id)
        return self.result

    async def _quarantine(self, row: Row, reason: str) -> None:
        payload = _row_encoder.encode({"nodes": self.batch.nodes,
                                       "columns": self.batch.columns.get(row.tbl, []),
                                       "row": row})
        await self.conn.execute(sync_quarantine.insert(), [{
            "id": new_id(), "peer_id": self.peer, "tbl": row.tbl[:64], "row_id": row.id[:64],
            "reason": reason, "payload": payload, "received_at": utcnow()}])
        self.result.quarantined.append(Quarantined(row.tbl, row.id, reason))

    async def _table(self, tbl: str, rows: list[Row]) -> None:
        # A row named twice in one batch is merged in a second pass, after the first
        # pass's buffered inserts are written.
        seen: set[str] = set()
        first: list[Row] = []
        again: list[Row] = []
        for row in rows:
            (again if row.id in seen else first).append(row)
            seen.add(row.id)
        await self._unique(tbl, first)
        await self._flush()
        if again:
            await self._table(tbl, again)

    async def _unique(self, tbl: str, rows: list[Row]) -> None:
        entity = ENTITIES.get(tbl)
        if entity is None:
            for row in rows:
                await self._quarantine(row, f"unknown table {tbl!r} (newer schema?)")
            return
        columns = self.batch.columns.get(tbl, [])
        known = {f.name for f in entity.fields if f.replicated and f.name != "id"}
        unknown = [c for c in columns if c not in known]
        local = {r.row_id: r for r in await self._select(sync_rows, tbl,
                                                           [r.id for r in rows])}
        # Values, cells, tallies and members exist only for rows that have a stamp:
        # new rows (a bootstrap, a push of new work) need no more reads.
        ids = list(local)
        data = await self._data(tbl, ids) if ids else {}
        cells: dict[str, dict[str, Any]] = defaultdict(dict)
        tallies: dict[str, dict[tuple[str, str], Any]] = defaultdict(dict)
        members: dict[str, dict[tuple[str, str, str], Any]] = defaultdict(dict)
        if ids:
            for c in await self._select(sync_cells, tbl, ids):
                cells[c.row_id][c.col] = c
            merges = {f.merge for f in entity.fields}
            if Merge.COUNTER in merges:
                for t in await self._select(sync_tallies, tbl, ids):
                    tallies[t.row_id][(t.col, t.node)] = t
            if Merge.ADD_WINS_SET in merges:
                for m in await self._select(sync_members, tbl, ids):
                    members[m.row_id][(m.col, m.elem, m.node)] = m
        owners = await self._owners(tbl, rows, data, columns)
        new = self._new = NewRows(tbl, columns, self.batch.nodes, self.hq_node, self.uow.seq,
                                  self.conn.dialect, self._buffer, self._new_customers)
        at = {c: i for i, c in enumerate(columns)}
        nodes, width = len(self.batch.nodes), len(columns)
        # The first clock too far ahead: one comparison per row instead of a split.
        wall = int(time.time() * 1000)
        too_far = pack(wall + self.max_skew_ms + 1)
        top = seen = applied = 0
        writer = self.writer_branch
        for row in rows:
            extra = row.cells or row.tallies or row.members
            if (not 0 <= row.origin < nodes
                    or (row.values is not None and len(row.values) != width)
                    or (extra and _bad_nodes(row, nodes))):
                await self._quarantine(row, "malformed row")
                continue
            newest = row.clock
            if row.cells or row.members:
                newest = max([newest, *(c.clock for c in row.cells),
                              *(m.added for m in row.members),
                              *(m.removed for m in row.members)])
            if newest >= too_far:
                await self._quarantine(row, f"clock {millis_of(newest) - wall} ms ahead of "
                                            f"this node (limit {self.max_skew_ms} ms)")
                continue
            if writer is not None:
                reason = self._forbidden(tbl, row, data.get(row.id), at, owners)
                if reason:
                    await self._quarantine(row, reason)
                    continue
            if unknown or (extra and (any(c.col not in known for c in row.cells)
                                      or any(t.col not in known for t in row.tallies)
                                      or any(m.col not in known for m in row.members))):
                parked = sorted({*(unknown if row.values is not None else ()),
                                 *(c.col for c in row.cells if c.col not in known),
                                 *(t.col for t in row.tallies if t.col not in known),
                                 *(m.col for m in row.members if m.col not in known)})
                await self._quarantine(row, f"columns {parked} unknown to this schema; "
                                            "parked until upgrade")
            # The clock moves past every change taken (once, after the loop: nothing in
            # it issues a clock).
            seen = 1
            if newest > top:
                top = newest
            here = local.get(row.id)
            try:
                if here is None and row.cl % 2 == 1 and row.values is not None:
                    new.add(row)  # new here: nothing to merge
                else:
                    await self._row(entity, row, columns, here, data.get(row.id),
                                    cells.get(row.id, {}), tallies.get(row.id, {}),
                                    members.get(row.id, {}))
            except (ValueError, TypeError, KeyError) as exc:
                await self._quarantine(row, f"unappliable: {type(exc).__name__}: {exc}")
                continue
            applied += 1
        self.result.applied += applied
        if seen:
            self.uow.observe(top)

    async def _select(self, table: Any, tbl: str, ids: list[str]) -> list[Any]:
        out: list[Any] = []
        for listed in among(self.conn.dialect, table.c.row_id, ids):
            out += records(await self.conn.execute(select(table).where(
                table.c.tbl == tbl, listed)))
        return out

    async def _data(self, tbl: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        t = TABLES[tbl]
        out: dict[str, dict[str, Any]] = {}
        for listed in among(self.conn.dialect, t.c.id, ids):
            for r in (await self.conn.execute(select(t).where(listed))).mappings():
                out[r["id"]] = {str(k): v for k, v in r.items()}
        return out

    async def _owners(self, tbl: str, rows: list[Row], data: dict[str, dict[str, Any]],
                      columns: list[str]) -> dict[str, str | None]:
        if self.writer_branch is None or tbl not in CHILDREN:
            return {}
        wanted = {d["customer_id"] for d in data.values() if d.get("customer_id")}
        if "customer_id" in columns:
            i = columns.index("customer_id")
            wanted |= {r.values[i] for r in rows if r.values is not None and r.values[i]}
        owners = await customer_branches(self.conn, wanted - self._new_customers.keys())
        return {**owners, **self._new_customers}

    def _forbidden(self, tbl: str, row: Row, current: dict[str, Any] | None,
                   at: dict[str, int], owners: dict[str, str | None]) -> str | None:
        """Why a branch may not write this row (None: it may); `at` is each batch
        column's position in the row's values."""
        branch = self.writer_branch
        if branch is None:
            return None
        if tbl in HQ_ONLY_WRITES:
            return f"a branch cannot change {tbl}"

        if tbl == "customers":
            if current is not None and current.get("branch") != branch:
                return f"customer belongs to branch {current.get('branch')}, not {branch}"
            filed = _incoming(row, "branch", at)
            if filed is not _ABSENT and filed != branch:
                return f"a branch cannot file customers under {filed!r}"
            if current is None and row.values is None and row.cl % 2 == 1:
                return None
            self._new_customers[row.id] = branch
            return None
        if tbl in BY_BRANCH:  # a branch writes only its own share (notices, store ledger)
            if current is not None and current.get("branch") != branch:
                return f"{tbl} row belongs to branch {current.get('branch')}, not {branch}"
            filed = _incoming(row, "branch", at)
            if filed is not _ABSENT and filed != branch:
                return f"a branch cannot write {tbl} rows of branch {filed!r}"
            return None
        if tbl in CHILDREN:
            owner = current.get("customer_id") if current else _incoming(row, "customer_id", at)
            if owner is None or owners.get(owner) != branch:
                return f"{tbl} row belongs to a customer outside branch {branch}"
        return None

    async def _row(self, entity: Entity, row: Row, columns: list[str], local: Any,
                   data: dict[str, Any] | None, cells: dict[str, Any],
                   tallies: dict[tuple[str, str], Any], members: dict[tuple[str, str, str], Any]
                   ) -> None:
        if local is not None and row.cl < local.cl:
            return  # an older generation of a row deleted or re-created since
        if local is None or row.cl > local.cl:
            if row.cl % 2 == 0:
                await self._tombstone(entity.table, row, local is not None)
            elif row.values is None:
                raise ValueError("partial row for a row this node does not hold")
            else:
                # Buffered first: a value that fails leaves the old generation in place.
                assert self._new is not None
                self._new.add(row)
                if local is not None:
                    await self._drop(entity.table, row.id)
                self.uow.touch()
            return
        if row.cl % 2 == 0 or data is None:
            return
        await self._merge(entity, row, columns, local, data, cells, tallies, members)
        if (entity.table == "customers" and row.id in self._entered
                and self.writer_branch is None and self.uow.node_id != self.hq_node):
            await self._offer_again(row.id)

    async def _offer_again(self, customer_id: str) -> None:
        """A customer this node holds (re-)entered our scope: writes of ours HQ refused
        while it belonged elsewhere may be lost to it. Our next push offers the
        customer and its children whole again; HQ merges what it lacks. (Whole rows
        sent for other reasons, say after HQ took a row of ours, are not offered back:
        that would echo every such row.)"""
        ids: dict[str, list[str]] = {"customers": [customer_id]}
        for child in sorted(CHILDREN):
            t = TABLES[child]
            ids[child] = [r.id for r in await self.conn.execute(
                select(t.c.id).where(t.c.customer_id == customer_id))]
        for tbl, row_ids in ids.items():
            for i in range(0, len(row_ids), 500):
                await self.conn.execute(update(sync_rows).where(
                    sync_rows.c.tbl == tbl, sync_rows.c.row_id.in_(row_ids[i:i + 500])
                ).values(seq=self.uow.seq, stamp_seq=self.uow.seq))
        self.uow.touch()
        self.result.offered += 1

    async def _tombstone(self, tbl: str, row: Row, existed: bool) -> None:
        if existed:
            await self._drop(tbl, row.id)
        await upsert(self.conn, sync_rows, [{
            "tbl": tbl, "row_id": row.id, "cl": row.cl, "clock": row.clock,
            "origin": self.batch.nodes[row.origin], "seq": self.uow.seq,
            "stamp_seq": self.uow.seq, "ord": table_rank(tbl)}], ("tbl", "row_id"),
            ("cl", "clock", "origin", "seq", "stamp_seq"))
        self.uow.touch()

    async def _drop(self, tbl: str, row_id: str, *, stamps: bool = False) -> None:
        t = TABLES[tbl]
        await self.conn.execute(delete(t).where(t.c.id == row_id))
        sides = (sync_cells, sync_tallies, sync_members) + ((sync_rows,) if stamps else ())
        for side in sides:
            await self.conn.execute(delete(side).where(side.c.tbl == tbl,
                                                       side.c.row_id == row_id))

    def _hq_only(self, entity: Entity, col: str, origin: str) -> bool:
        """An HQ-authoritative value that did not come from HQ: ignored."""
        return entity.field(col).merge is Merge.HQ_AUTHORITATIVE and origin != self.hq_node

    async def _merge(self, entity: Entity, row: Row, columns: list[str], local: Any,
                     data: dict[str, Any], cells: dict[str, Any],
                     tallies: dict[tuple[str, str], Any],
                     members: dict[tuple[str, str, str], Any]) -> None:
        nodes = self.batch.nodes
        tbl = entity.table
        row_stamp = Stamp(row.clock, nodes[row.origin])
        local_row = Stamp(local.clock, local.origin)
        incoming: dict[str, tuple[Stamp, dict[str, int] | None, Any]] = {}
        if row.values is not None:
            for col, val in zip(columns, row.values, strict=True):
                incoming[col] = (row_stamp, None, val)
        for c in row.cells:
            incoming[c.col] = (Stamp(c.clock, nodes[c.origin], c.rank), c.lineage, c.val)
        changes: dict[str, Any] = {}
        cell_rows = []
        for col, (stamp, lineage, val) in incoming.items():
            try:
                f = entity.field(col)
            except KeyError:
                continue
            if f.merge in (Merge.COUNTER, Merge.ADD_WINS_SET) or not f.replicated:
                continue
            if self._hq_only(entity, col, stamp.origin):
                continue
            cur = cells.get(col)
            here = Stamp(cur.clock, cur.origin, cur.rank) if cur else local_row
            here_lineage = lineage_of(here, json.loads(cur.lineage) if cur and cur.lineage
                                      else None)
            value = coerce(tbl, col, val)
            d = decide(f.merge, here, here_lineage, data.get(col), stamp,
                       lineage_of(stamp, lineage), value)
            if not d.changed:
                continue
            winner = stamp if d.take_incoming else here
            if d.take_incoming:
                changes[col] = value
            cell_rows.append({"tbl": tbl, "row_id": row.id, "col": col, "clock": winner.clock,
                              "origin": winner.origin, "rank": winner.rank,
                              "lineage": _dump(compact(winner, d.lineage)),
                              "seq": self.uow.seq})
            if d.conflict and f.conflicts:
                self._detected.note(tbl, data, col, f.merge, (stamp, value),
                                    (here, data.get(col)), d.take_incoming)
        changes.update(await self._merge_tallies(entity, row, tallies))
        changes.update(await self._merge_members(entity, row, members))
        if cell_rows:
            await upsert(self.conn, sync_cells, cell_rows, ("tbl", "row_id", "col"),
                         ("clock", "origin", "rank", "lineage", "seq"))
        if changes:
            new = {**data, **changes}
            changes.update({k: v for k, v in derive(tbl, new).items() if data.get(k) != v})
            t = TABLES[tbl]
            await self.conn.execute(update(t).where(t.c.id == row.id).values(**changes))
            if tbl == "customers" and "branch" in changes:
                self._new_customers[row.id] = changes["branch"]
        if cell_rows or changes:
            await self.conn.execute(update(sync_rows).where(
                sync_rows.c.tbl == tbl, sync_rows.c.row_id == row.id).values(seq=self.uow.seq))
            self.uow.touch()

    async def _merge_tallies(self, entity: Entity, row: Row,
                             tallies: dict[tuple[str, str], Any]) -> dict[str, Any]:
        nodes = self.batch.nodes
        touched: set[str] = set()
        rows = []
        state = {k: (t.inc, t.dec) for k, t in tallies.items()}
        for t in row.tallies:
            key = (t.col, nodes[t.node])
            old = state.get(key, (0, 0))
            new = (max(old[0], t.inc), max(old[1], t.dec))
            if new != old:
                state[key] = new
                touched.add(t.col)
                rows.append({"tbl": entity.table, "row_id": row.id, "col": t.col,
                             "node": key[1], "inc": new[0], "dec": new[1],
                             "seq": self.uow.seq})
        await upsert(self.conn, sync_tallies, rows, ("tbl", "row_id", "col", "node"),
                     ("inc", "dec", "seq"))
        return {col: counter_value(v for (c, _), v in state.items() if c == col)
                for col in touched}

    async def _merge_members(self, entity: Entity, row: Row,
                             members: dict[tuple[str, str, str], Any]) -> dict[str, Any]:
        nodes = self.batch.nodes
        touched: set[str] = set()
        rows = []
        state = {k: (m.added, m.removed) for k, m in members.items()}
        for m in row.members:
            key = (m.col, m.elem, nodes[m.node])
            old = state.get(key, (0, 0))
            new = (max(old[0], m.added), max(old[1], m.removed))
            if new != old:
                state[key] = new
                touched.add(m.col)
                rows.append({"tbl": entity.table, "row_id": row.id, "col": m.col,
                             "elem": m.elem, "node": key[2], "added": new[0],
                             "removed": new[1], "seq": self.uow.seq})
        await upsert(self.conn, sync_members, rows, ("tbl", "row_id", "col", "elem", "node"),
                     ("added", "removed", "seq"))
        out = {}
        for col in touched:
            per: dict[str, list[tuple[int, int]]] = defaultdict(list)
            for (c, elem, _), v in state.items():
                if c == col:
                    per[elem].append(v)
            out[col] = set_members(per)
        return out

    async def _evict(self, tbl: str, row_id: str) -> None:
        """Drop a row (and a customer's children) that left this node's scope; it still
        exists elsewhere, so no tombstone."""
        if tbl not in ENTITIES:
            return
        await self._drop(tbl, row_id, stamps=True)
        if tbl == "customers":
            for child in sorted(CHILDREN):
                t = TABLES[child]
                ids = [r.id for r in await self.conn.execute(
                    select(t.c.id).where(t.c.customer_id == row_id))]
                for child_id in ids:
                    await self._drop(child, child_id, stamps=True)
        self.result.evicted += 1
        self.uow.touch()


def _bad_nodes(row: Row, nodes: int) -> bool:
    """A cell, tally or member naming a node index outside its batch's node list."""
    return (any(not 0 <= c.origin < nodes for c in row.cells)
            or any(not 0 <= t.node < nodes for t in row.tallies)
            or any(not 0 <= m.node < nodes for m in row.members))


def _incoming(row: Row, col: str, at: dict[str, int]) -> Any:
    """The value `row` brings for `col` (a cell's over the row's), or `_ABSENT`."""
    for c in row.cells:
        if c.col == col:
            return c.val
    i = at.get(col)
    if row.values and i is not None:
        return row.values[i]
    return _ABSENT


def _dump(lineage: dict[str, int] | None) -> str | None:
    return None if lineage is None else json.dumps(lineage, sort_keys=True)


async def apply_batch(uow: UnitOfWork, batch: Batch, *, hq_node: str,
                      writer_branch: str | None, max_skew_ms: int, peer: str) -> ApplyResult:
    """Merge `batch` from `peer` into the database behind `uow`."""
    applier = Applier(uow, batch, hq_node=hq_node, writer_branch=writer_branch,
                      max_skew_ms=max_skew_ms, peer=peer)
    # A page allocates a few hundred thousand short-lived containers (rows, parameters):
    # about a quarter of the Python time of a page of new rows went to the collector.
    with collector_paused():
        return await applier.run()
