"""One step of sync between two databases: read a page for a peer, or apply one.

Both the HTTP endpoints (server/) and the branch runtime (branches/) call these; the
transport is theirs. Applying a batch and moving the peer's cursor happen in one
transaction, so a crash leaves either both or neither (SPEC §Crash safety).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from schema._apply import ApplyResult, apply_batch
from schema._database import Database
from schema._entities import ENTITIES
from schema._gc import gc_horizon
from schema._plan import coerce
from schema._produce import ORDER_KEY, Key, at_seq, format_cursor, parse_cursor, produce
from schema._scope import Scope
from schema._tables import TABLES, sync_cells, sync_peers, sync_quarantine, sync_rows
from schema._types import utcnow
from schema._uow import UnitOfWork
from schema._upsert import upsert
from sync import PROTOCOL_VERSION, Batch, Row


class _Parked(msgspec.Struct):
    nodes: list[str]
    columns: list[str]
    row: Row


async def peer_state(db: Database, peer: str) -> dict[str, Any]:
    """This node's record of a peer (cursors, last contact, errors)."""
    async with db.read() as conn:
        row = (await conn.execute(select(sync_peers).where(sync_peers.c.peer_id == peer))
               ).mappings().first()
    if row is None:
        return {"peer_id": peer, "pulled": "", "pushed": "", "acked": "", "last_contact": None,
                "last_error": None, "clock_offset_ms": None, "batches_in": 0,
                "batches_out": 0}
    return {str(k): v for k, v in row.items()}


async def outgoing(db: Database, *, sender: str, peer: str, scope: Scope, cursor: str,
                   limit: int) -> Batch:
    """The next page of this node's changes after `cursor` for `peer`."""
    async with db.read() as conn:
        return await produce(conn, sender=sender, cursor=cursor, limit=limit, scope=scope,
                             peer=peer)


async def next_page(db: Database, *, sender: str, peer: str, scope: Scope, cursor: str,
                    limit: int, serve_snapshot: bool) -> Batch:
    """The next page for `peer` after `cursor`, as headquarters serves it when
    `serve_snapshot`: a peer starting from nothing, or from before tombstones collected
    since, gets a snapshot (`reset` in the latter case) whose pages carry an `s` cursor,
    so walking old sequence numbers on purpose does not trigger another reset.
    Raises `ValueError` for a malformed cursor."""
    if not serve_snapshot:
        parse_cursor(cursor)
        return await outgoing(db, sender=sender, peer=peer, scope=scope, cursor=cursor,
                              limit=limit)
    horizon = await gc_horizon(db)
    snapshot = cursor == "" or cursor.startswith("s")
    cursor = cursor[1:] if cursor.startswith("s") else cursor
    reset = False
    if not snapshot and parse_cursor(cursor)[0] < horizon:
        cursor, snapshot, reset = "", True, True
    parse_cursor(cursor)
    batch = await outgoing(db, sender=sender, peer=peer, scope=scope, cursor=cursor,
                           limit=limit)
    if snapshot:
        last = parse_cursor(batch.cursor)
        end = format_cursor(max(last, at_seq(horizon))) if not batch.more else ""
        batch = msgspec.structs.replace(
            batch, reset=reset, cursor=("s" + batch.cursor) if batch.more else end)
    return batch


async def incoming(db: Database, batch: Batch, *, node_id: str, peer: str, hq_node: str,
                   writer_branch: str | None, max_skew_ms: int) -> ApplyResult:
    """Apply a batch from `peer` and record how far we have applied its changes."""
    async with db.write(node_id, None) as uow:
        state = (await uow.conn.execute(select(sync_peers.c.batches_in, sync_peers.c.pushed)
                                        .where(sync_peers.c.peer_id == peer))).first()
        head = await stream_head(uow.conn)
        result = await apply_batch(uow, batch, hq_node=hq_node, writer_branch=writer_branch,
                                   max_skew_ms=max_skew_ms, peer=peer)
        values: dict[str, Any] = {
            "peer_id": peer, "pulled": batch.cursor, "last_contact": utcnow(),
            "last_error": None, "batches_in": (state.batches_in if state else 0) + 1}
        skip = await no_echo_cursor(uow, state.pushed if state else "", head, result)
        if skip is not None:
            values["pushed"] = skip
        await upsert(uow.conn, sync_peers, [values], ("peer_id",),
                     tuple(k for k in values if k != "peer_id"))
    return result


async def stream_head(conn: AsyncConnection) -> Key | None:
    """The last position in this node's change order (None: nothing recorded yet)."""
    last = (await conn.execute(select(sync_rows.c.seq, sync_rows.c.ord, sync_rows.c.tbl,
                                      sync_rows.c.row_id)
                               .order_by(sync_rows.c.seq.desc(), sync_rows.c.ord.desc(),
                                         sync_rows.c.tbl.desc(), sync_rows.c.row_id.desc())
                               .limit(1))).first()
    return None if last is None else (int(last[0]), int(last[1]), str(last[2]), str(last[3]))


async def no_echo_cursor(uow: UnitOfWork, pushed: str, head: Key | None,
                         result: ApplyResult) -> str | None:
    """Where the peer's acknowledgement of our changes may move after applying its
    batch, so what we just took from it is not sent back (SPEC §13, no-echo): only when
    the peer had acknowledged everything of ours before (`pushed` at the old head) and
    the apply wrote nothing of this node's own (no conflict record, nothing offered
    back). Otherwise None: the next push carries the applied rows too, harmlessly."""
    try:
        acked = parse_cursor(pushed)
    except ValueError:
        return None
    if head is not None and acked < head:
        return None
    if result.offered or uow.own_writes:
        return None
    after = await stream_head(uow.conn)
    return None if after is None or after == head else format_cursor(after)


async def record_peer(db: Database, peer: str, **values: Any) -> None:
    """Update this node's record of a peer (pushed cursor, contact, error, offset)."""
    async with db.admin() as conn:
        await upsert(conn, sync_peers, [{"peer_id": peer, **values}], ("peer_id",),
                     tuple(values))


async def pending_since(db: Database, cursor: str) -> int:
    """How many rows changed on this node after `cursor` (an upper bound of what a
    peer at that cursor still has to receive)."""
    start = parse_cursor(cursor)
    async with db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(sync_rows).where(
            start < ORDER_KEY))).scalar_one())


async def quarantine_count(db: Database, peer: str | None = None) -> int:
    """Changes kept aside (from `peer`, or from anyone)."""
    query = select(func.count()).select_from(sync_quarantine)
    if peer is not None:
        query = query.where(sync_quarantine.c.peer_id == peer)
    async with db.read() as conn:
        return int((await conn.execute(query)).scalar_one())


_parked_decoder = msgspec.msgpack.Decoder(_Parked)


async def retry_parked(db: Database, *, node_id: str, hq_node: str,
                       writer_branches: dict[str, str | None]) -> int:
    """Apply again the changes parked for columns or tables this schema did not know
    (SPEC §Schema versions); called after an upgrade. Returns how many were applied.

    A parked row's known columns were applied when it arrived; its unknown ones are
    written now, unless the cell has a newer local version since."""
    async with db.read() as conn:
        parked = (await conn.execute(select(sync_quarantine).where(
            sync_quarantine.c.reason.like("%unknown%")))).all()
    applied = 0
    for q in parked:
        try:
            saved = _parked_decoder.decode(q.payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        entity = ENTITIES.get(saved.row.tbl)
        if entity is None:
            continue  # still unknown: stays parked
        match = re.search(r"columns \[(.*?)\]", q.reason)
        names = [n.strip(" '\"") for n in match.group(1).split(",")] if match else []
        if not all(n in entity.replicated_columns for n in names):
            continue
        async with db.write(node_id, None) as uow:
            await uow.conn.execute(delete(sync_quarantine).where(sync_quarantine.c.id == q.id))
            if not names:  # the whole row waited (unknown table): apply it now
                batch = Batch(protocol=PROTOCOL_VERSION, schema=0, sender=q.peer_id,
                              nodes=saved.nodes, columns={saved.row.tbl: saved.columns},
                              rows=[saved.row], cursor="", more=False)
                result = await apply_batch(uow, batch, hq_node=hq_node,
                                           writer_branch=writer_branches.get(q.peer_id),
                                           max_skew_ms=2**40, peer=q.peer_id)
                applied += result.applied
                continue
            await _unpark_columns(uow.conn, saved, names)
            uow.touch()
            applied += 1
    return applied


async def _unpark_columns(conn: Any, saved: _Parked, names: list[str]) -> None:
    row = saved.row
    stamp = (await conn.execute(select(sync_rows).where(
        sync_rows.c.tbl == row.tbl, sync_rows.c.row_id == row.id))).first()
    if stamp is None or stamp.cl != row.cl or (stamp.clock, stamp.origin) != (
            row.clock, saved.nodes[row.origin]):
        return  # the row moved on locally; its newer versions stand
    overridden = {c.col for c in await conn.execute(select(sync_cells.c.col).where(
        sync_cells.c.tbl == row.tbl, sync_cells.c.row_id == row.id))}
    values = dict(zip(saved.columns, row.values or [], strict=False))
    values.update({c.col: c.val for c in row.cells})
    changes = {n: coerce(row.tbl, n, values[n]) for n in names
               if n in values and n not in overridden}
    if changes:
        t = TABLES[row.tbl]
        await conn.execute(t.update().where(t.c.id == row.id).values(**changes))
