"""Tombstone collection and replica reset (sync/SPEC.md §Deletes, §Garbage collection).

A tombstone may go once every peer that could hold the row has acknowledged it. A
peer whose cursor is older than the newest collected tombstone cannot be told about
deletes any more: it is sent a snapshot with `reset` and rebuilds its replica.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select, update

from schema._database import Database
from schema._entities import ENTITIES
from schema._tables import (
    TABLES,
    node_meta,
    sync_cells,
    sync_members,
    sync_peers,
    sync_rows,
    sync_tallies,
)
from schema._upsert import upsert

HORIZON = "gc_horizon"


async def gc_horizon(db: Database) -> int:
    """The newest local sequence whose tombstones may have been collected."""
    async with db.read() as conn:
        value = (await conn.execute(select(node_meta.c.value).where(
            node_meta.c.key == HORIZON))).scalar()
    return int(value or 0)


async def collect_tombstones(db: Database, up_to_seq: int) -> int:
    """Delete tombstones recorded at or before `up_to_seq`; returns how many."""
    async with db.admin() as conn:
        count = int((await conn.execute(select(func.count()).select_from(sync_rows).where(
            sync_rows.c.cl % 2 == 0, sync_rows.c.seq <= up_to_seq))).scalar_one())
        await conn.execute(delete(sync_rows).where(sync_rows.c.cl % 2 == 0,
                                                   sync_rows.c.seq <= up_to_seq))
        current = (await conn.execute(select(node_meta.c.value).where(
            node_meta.c.key == HORIZON))).scalar()
        await upsert(conn, node_meta, [{"key": HORIZON,
                                        "value": str(max(int(current or 0), up_to_seq))}],
                     ("key",), ("value",))
    return count


async def wipe_replica(db: Database, upstream: str) -> None:
    """Drop every replicated row and its sync state, to rebuild from a snapshot."""
    async with db.admin() as conn:
        for tbl in ENTITIES:
            await conn.execute(delete(TABLES[tbl]))
        for side in (sync_rows, sync_cells, sync_tallies, sync_members):
            await conn.execute(delete(side))
        await conn.execute(update(sync_peers).where(sync_peers.c.peer_id == upstream)
                           .values(pulled=""))
