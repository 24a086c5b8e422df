"""Reading what a peer has not seen yet: the sending half of sync (SPEC §Pull, §Push).

State, not history: for every row touched after the peer's cursor we send its current
values and versions, never superseded ones. A row that entered the peer's scope after
the cursor is sent whole with all its children; a customer that left it is evicted.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from schema._bulk import among, records
from schema._entities import ENTITIES
from schema._scope import (
    BY_BRANCH,
    CHILDREN,
    DEVICE_EXCLUDED,
    DEVICE_REDACTED,
    Scope,
    customer_holders,
)
from schema._tables import TABLES, sync_cells, sync_members, sync_rows, sync_tallies, table_rank
from sync import PROTOCOL_VERSION, Batch, Cell, Member, Merge, Row, Tally, collector_paused

Key = tuple[int, int, str, str]
"""A place in the change order: (seq, table rank, table, row id)."""
ZERO: Key = (0, 0, "", "")
SCHEMA_VERSION = 1


def parse_cursor(cursor: str) -> Key:
    """Where the next page starts: `seq:table:row_id`, or empty for the beginning."""
    return _parse(cursor)[1]


def _parse(cursor: str) -> tuple[Key, Key]:
    """(since, position) of a cursor.

    Rows move forward in the change order when they change again, so a row can leave
    the part of the order a page has not reached yet and land past it: its older
    changes were in no page. While paging (`more`), the cursor therefore also carries
    the sequence number the round of pages started from, `base@seq:table:row_id`;
    every page of the round sends what changed after that, not after its own start.
    """
    if not cursor:
        return ZERO, ZERO
    seq, tbl, row_id = cursor.split(":", 2)
    base, at, seq = seq.rpartition("@")
    position = (int(seq), table_rank(tbl), tbl, row_id)
    return (at_seq(int(base)) if at else position), position


def at_seq(seq: int) -> Key:
    """The place just before everything changed at `seq`."""
    return (seq, 0, "", "")


def format_cursor(key: Key) -> str:
    return "" if key == ZERO else f"{key[0]}:{key[2]}:{key[3]}"


class _Nodes:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, node: str) -> int:
        if node not in self._index:
            self._index[node] = len(self.ids)
            self.ids.append(node)
        return self._index[node]


def _after(seq: int, tbl: str, row_id: str, cursor: Key) -> bool:
    return (seq, table_rank(tbl), tbl, row_id) > cursor


ORDER_KEY = tuple_(sync_rows.c.seq, sync_rows.c.ord, sync_rows.c.tbl, sync_rows.c.row_id)


async def _side(conn: AsyncConnection, table: Any, tbl: str, ids: list[str]
                ) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for listed in among(conn.dialect, table.c.row_id, ids):
        for r in records(await conn.execute(
                select(table).where(table.c.tbl == tbl, listed))):
            out[r.row_id].append(r)
    return out


class _Values:
    """A row's replicated values as read (a tuple in `replicated_columns` order), with
    lookup by column name; no per-row dict."""

    __slots__ = ("pos", "values")

    def __init__(self, pos: dict[str, int], values: Sequence[Any]) -> None:
        self.pos = pos
        self.values = values

    def get(self, col: str, default: Any = None) -> Any:
        i = self.pos.get(col)
        return default if i is None else self.values[i]

    def __getitem__(self, col: str) -> Any:
        return self.values[self.pos[col]]


_POSITIONS = {name: {c: i for i, c in enumerate(e.replicated_columns)}
              for name, e in ENTITIES.items()}


async def _data(conn: AsyncConnection, tbl: str, ids: list[str]) -> dict[str, _Values]:
    t = TABLES[tbl]
    pos = _POSITIONS[tbl]
    columns = [t.c[c] for c in ENTITIES[tbl].replicated_columns]
    out: dict[str, _Values] = {}
    for listed in among(conn.dialect, t.c.id, ids):
        for r in await conn.execute(select(t.c.id, *columns).where(listed)):
            out[r[0]] = _Values(pos, r[1:])
    return out


async def produce(conn: AsyncConnection, *, sender: str, cursor: str, limit: int,
                  scope: Scope, peer: str | None = None) -> Batch:
    """The next page of changes after `cursor` for a peer holding `scope`."""
    # A page reads and builds hundreds of thousands of short-lived containers: about a
    # fifth of producing it went to the cyclic collector.
    with collector_paused():
        return await _produce(conn, sender=sender, cursor=cursor, limit=limit, scope=scope,
                              peer=peer)


async def _produce(conn: AsyncConnection, *, sender: str, cursor: str, limit: int,
                   scope: Scope, peer: str | None) -> Batch:
    since, start = _parse(cursor)
    query = select(sync_rows).where(start < ORDER_KEY)
    head = ZERO
    if peer is not None:
        query = query.where(_not_echo(peer))
        # Read before the page: on PostgreSQL each statement sees what is committed
        # when it starts, and a row committed after this is past `head` (writers take
        # sequence numbers in commit order), so moving the cursor to it skips nothing.
        head = await _head(conn)
    page = records(await conn.execute(
        query.order_by(sync_rows.c.seq, sync_rows.c.ord, sync_rows.c.tbl, sync_rows.c.row_id)
        .limit(limit)))
    more = len(page) == limit
    nodes = _Nodes()
    rows: list[Row] = []
    evictions: list[tuple[str, str]] = []
    by_tbl: dict[str, list[Any]] = defaultdict(list)
    for r in page:
        by_tbl[r.tbl].append(r)
    last = (page[-1].seq, page[-1].ord, page[-1].tbl, page[-1].row_id) if page else start
    # Only a receiver holding everything (HQ) checks that a child's customer belongs to
    # the sender, so only there must a child never come before its customer.
    parents = await _parents_after(conn, by_tbl, last) if scope.everything else []
    if parents:
        by_tbl["customers"] += parents
    if not more:
        # Every row after `start` was taken or skipped as an echo: the cursor moves past
        # the skipped ones too, so the next round does not walk them again.
        last = max(last, head)
    entered: set[str] = set()
    for tbl, stamps in by_tbl.items():
        if tbl not in ENTITIES:
            continue
        ids = [s.row_id for s in stamps]
        side = await _sides(conn, tbl, ids)
        cells = side[0]
        data = await _data(conn, tbl, ids)
        keep = await _in_scope(conn, tbl, data, scope)
        for s in stamps:
            whole = _after(s.stamp_seq, tbl, s.row_id, since)
            # Moved to another branch, or re-created (perhaps under another branch than
            # the generation the peer may hold): the peer's copy is out of date.
            changed_hands = tbl == "customers" and s.cl % 2 == 1 and (
                (s.cl > 1 and whole) or _moved(cells.get(s.row_id, []), since, scope))
            if s.cl % 2 == 1 and s.row_id not in keep:
                if changed_hands:
                    evictions.append((tbl, s.row_id))
                continue
            # Entered the peer's scope: whole, with every child, even children the peer
            # was not sent earlier because the customer was not yet in its scope.
            if changed_hands and not scope.everything:
                whole = True
                entered.add(s.row_id)
            row = _row(tbl, s, data.get(s.row_id), [x.get(s.row_id, []) for x in side],
                       whole, since, nodes, peer, fresh=s.row_id in entered)
            if row is not None:
                rows.append(_redacted(row) if scope.device else row)
    if entered:
        children = await _children(conn, sorted(entered), nodes)
        # A child changed after the cursor is already in `rows`: send it once, whole.
        again = {(r.tbl, r.id) for r in children}
        rows = [r for r in rows if (r.tbl, r.id) not in again] + children
    return Batch(protocol=PROTOCOL_VERSION, schema=SCHEMA_VERSION, sender=sender,
                 nodes=nodes.ids, columns=_columns({r.tbl for r in rows}), rows=rows,
                 cursor=_next(since, last, more=more), more=more,
                 evictions=evictions, entered=sorted(entered))


def _not_echo(peer: str) -> Any:
    """Stamps that are not echoes of `peer`'s own rows (SPEC §13 echo-skipped-unread):
    an echo is a row the peer made that nothing else has touched since: its first
    generation, stamped by the peer, with no cells, and only the peer's own tallies and
    set additions. `_row` would send nothing of it (the peer holds it exactly), so the
    page's query leaves it out and nothing of it is read: after a branch's first push,
    the pull that follows passes over every row HQ just took from it inside SQLite."""
    same = (sync_rows.c.tbl, sync_rows.c.row_id)
    cells = select(sync_cells.c.col).where(sync_cells.c.tbl == same[0],
                                           sync_cells.c.row_id == same[1])
    tallies = select(sync_tallies.c.col).where(
        sync_tallies.c.tbl == same[0], sync_tallies.c.row_id == same[1],
        sync_tallies.c.node != peer)
    members = select(sync_members.c.col).where(
        sync_members.c.tbl == same[0], sync_members.c.row_id == same[1],
        or_(sync_members.c.node != peer, sync_members.c.removed != 0))
    return or_(sync_rows.c.origin != peer, sync_rows.c.cl != 1, cells.exists(),
               tallies.exists(), members.exists())


async def _head(conn: AsyncConnection) -> Key:
    """The last place in the change order (ZERO when there is none)."""
    top = (await conn.execute(select(sync_rows.c.seq, sync_rows.c.ord, sync_rows.c.tbl,
                                     sync_rows.c.row_id)
                              .order_by(sync_rows.c.seq.desc(), sync_rows.c.ord.desc(),
                                        sync_rows.c.tbl.desc(), sync_rows.c.row_id.desc())
                              .limit(1))).first()
    return ZERO if top is None else (top[0], top[1], top[2], top[3])


def _next(since: Key, last: Key, *, more: bool) -> str:
    """The cursor after a page: a round under way keeps the base it started from."""
    cursor = format_cursor(last)
    return f"{since[0]}@{cursor}" if more else cursor


async def _parents_after(conn: AsyncConnection, by_tbl: dict[str, list[Any]], last: Key
                         ) -> list[Any]:
    """Stamps of customers whose children are in the page but whose own row sorts after
    it (changed again later): they travel with the page, so a receiver checking scope
    never gets a child before its customer. Re-sending them later is harmless."""
    owners: set[str] = set()
    for tbl in sorted(CHILDREN & by_tbl.keys()):
        t = TABLES[tbl]
        ids = [s.row_id for s in by_tbl[tbl]]
        for listed in among(conn.dialect, t.c.id, ids):
            owners |= {r[0] for r in await conn.execute(
                select(t.c.customer_id).where(listed)) if r[0]}
    out: list[Any] = []
    for listed in among(conn.dialect, sync_rows.c.row_id, sorted(owners)):
        out += records(await conn.execute(select(sync_rows).where(
            sync_rows.c.tbl == "customers", listed, last < ORDER_KEY)))
    return out


def _columns(tables: set[str]) -> dict[str, list[str]]:
    return {t: list(ENTITIES[t].replicated_columns) for t in sorted(tables)}


def _moved(cells: list[Any], start: Key, scope: Scope) -> bool:
    # A customer changes hands when its branch changes, or, for a peer holding one
    # owner's customers, its owner (a handover).
    cols = ("branch", *(("owner_id",) if scope.owner is not None else ()),
            *(("department",) if scope.department is not None else ()))
    return any(c.col in cols and _after(c.seq, "customers", c.row_id, start) for c in cells)


def _holds(scope: Scope, branch: str | None, owner: str | None, department: str | None
           ) -> bool:
    """Whether a peer holding `scope` holds a customer of `branch`, `owner`, `department`."""
    return ((scope.branch is None or branch == scope.branch)
            and (scope.owner is None or owner == scope.owner)
            and (scope.department is None or department == scope.department))


async def _in_scope(conn: AsyncConnection, tbl: str, data: dict[str, _Values],
                    scope: Scope) -> set[str]:
    if scope.device and tbl in DEVICE_EXCLUDED:
        return set()
    if scope.everything or tbl not in BY_BRANCH | CHILDREN:
        return set(data)
    if tbl == "customers":
        return {i for i, d in data.items()
                if _holds(scope, d["branch"], d["owner_id"], d["department"])}
    if tbl in BY_BRANCH:
        return {i for i, d in data.items() if scope.branch is None or d["branch"] == scope.branch}
    holders = await customer_holders(conn, [d["customer_id"] for d in data.values()
                                            if d.get("customer_id")])
    return {i for i, d in data.items()
            if (h := holders.get(d.get("customer_id") or "")) is not None and _holds(scope, *h)}


def _redacted(row: Row) -> Row:
    """`row` without the columns a device must not hold (`DEVICE_REDACTED`), blanked."""
    column = DEVICE_REDACTED.get(row.tbl)
    if column is None:
        return row
    values = row.values
    if values is not None:
        values = list(values)
        values[ENTITIES[row.tbl].replicated_columns.index(column)] = ""
    cells = [Cell(c.col, "", c.clock, c.origin, c.rank, c.lineage) if c.col == column else c
             for c in row.cells]
    return msgspec.structs.replace(row, values=values, cells=cells)


async def _sides(conn: AsyncConnection, tbl: str, ids: list[str]
                 ) -> tuple[dict[str, list[Any]], dict[str, list[Any]], dict[str, list[Any]]]:
    """Cell overrides, counter tallies and set members of rows, in three queries."""
    merges = {f.merge for f in ENTITIES[tbl].fields}
    cells = await _side(conn, sync_cells, tbl, ids)
    tallies = await _side(conn, sync_tallies, tbl, ids) if Merge.COUNTER in merges else {}
    members = (await _side(conn, sync_members, tbl, ids)
               if Merge.ADD_WINS_SET in merges else {})
    return cells, tallies, members


def _row(tbl: str, s: Any, data: _Values | None, side: list[list[Any]], whole: bool,
         start: Key, nodes: _Nodes, peer: str | None, fresh: bool = False) -> Row | None:
    cells, tally_rows, member_rows = side
    if s.cl % 2 == 0 or data is None:
        return Row(tbl=tbl, id=s.row_id, cl=s.cl, clock=s.clock, origin=nodes(s.origin))
    def own(origin: str, lineage: Any = None) -> bool:
        # The peer holds its own writes: echo them only when it must get the row whole
        # again (it entered the peer's scope) or merged lineage travels with them.
        return peer is not None and origin == peer and not lineage and not fresh

    cells = [c for c in cells if not own(c.origin, c.lineage)]
    values = None
    if whole and not (own(s.origin) and not cells):
        values = list(data.values)
    wire_cells = [
        Cell(c.col, data.get(c.col), c.clock, nodes(c.origin), c.rank,
             json.loads(c.lineage) if c.lineage else None)
        for c in cells if whole or _after(c.seq, tbl, s.row_id, start)
    ]
    tallies = [Tally(t.col, nodes(t.node), t.inc, t.dec) for t in tally_rows
               if (whole or _after(t.seq, tbl, s.row_id, start)) and not own(t.node)]
    # An entry of the peer's own node that no one removed is the peer's own add.
    members = [Member(m.col, m.elem, nodes(m.node), m.added, m.removed) for m in member_rows
               if (whole or _after(m.seq, tbl, s.row_id, start))
               and not (m.removed == 0 and own(m.node))]
    if values is None and not wire_cells and not tallies and not members:
        return None
    return Row(tbl=tbl, id=s.row_id, cl=s.cl, clock=s.clock, origin=nodes(s.origin),
               values=values, cells=wire_cells, tallies=tallies, members=members)


async def _children(conn: AsyncConnection, customer_ids: list[str], nodes: _Nodes) -> list[Row]:
    """Every child row of customers that just entered the peer's scope, whole."""
    out: list[Row] = []
    for tbl in sorted(CHILDREN):
        t = TABLES[tbl]
        ids = []
        for listed in among(conn.dialect, t.c.customer_id, customer_ids):
            ids += [r.id for r in await conn.execute(select(t.c.id).where(listed))]
        if not ids:
            continue
        data = await _data(conn, tbl, ids)
        side = await _sides(conn, tbl, ids)
        stamps: list[Any] = []
        for listed in among(conn.dialect, sync_rows.c.row_id, ids):
            stamps += records(await conn.execute(select(sync_rows).where(
                sync_rows.c.tbl == tbl, listed)))
        for s in stamps:
            row = _row(tbl, s, data.get(s.row_id), [x.get(s.row_id, []) for x in side],
                       True, ZERO, nodes, None, fresh=True)
            if row is not None:
                out.append(row)
    return out
