"""Serving the sync protocol to enrolled nodes (SPEC §Pull, §Push)."""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec

from schema import (
    Scope,
    collect_tombstones,
    incoming,
    next_page,
    pending_since,
    quarantine_count,
    record_peer,
    utcnow,
)
from schema._produce import parse_cursor
from schema._scope import HQ_ONLY_WRITES
from server.errors import BadRequestError
from server.node import Node
from server.services.bundles import bundle_health
from server.services.loyalty import post_pending
from server.services.merges import settle_after_sync
from sync import PAGE_ROWS, PROTOCOL_VERSION, Batch, PullRequest, PushAck, PushRequest, Quarantined

SCHEMA_VERSION = 1
MAX_PAGE = 2 * PAGE_ROWS  # what a pull may ask for

log = logging.getLogger("branchline.sync")


class ProtocolError(BadRequestError):
    """The request speaks another protocol version or names another node."""


def _check(peer: dict[str, Any], protocol: int, node_id: str) -> None:
    if protocol != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol {protocol} is not supported (this node speaks "
                            f"{PROTOCOL_VERSION})")
    if node_id != peer["id"]:
        raise ProtocolError("the message names another node than the one that signed it")


async def pull(node: Node, peer: dict[str, Any], request: PullRequest) -> Batch:
    """The next page of changes in the peer's scope; a snapshot with `reset` when the
    peer's cursor is older than tombstones collected since."""
    _check(peer, request.protocol, request.node)
    if peer["kind"] == "device":
        # Imported here: devices → nodes → bundles → this module.
        from server.services.devices import scope_of

        scope = await scope_of(node, peer)
    else:
        scope = Scope(peer["branch"]) if peer["kind"] != "hq" else Scope()
    try:
        batch = await next_page(node.db, sender=node.node_id, peer=peer["id"], scope=scope,
                                cursor=request.cursor,
                                limit=max(1, min(request.limit, MAX_PAGE)), serve_snapshot=True)
    except ValueError:
        raise ProtocolError("malformed cursor") from None
    snapshot = request.cursor == "" or request.cursor.startswith("s") or batch.reset
    # The cursor a peer asks from is what it has applied of ours: its acknowledgement
    # (a snapshot still under way acknowledges nothing yet).
    if snapshot:
        await record_peer(node.db, peer["id"], last_contact=utcnow())
    else:
        await record_peer(node.db, peer["id"], pushed=request.cursor, acked=request.cursor,
                          last_contact=utcnow())
    return batch


async def post_points(node: Node) -> None:
    """Post the loyalty entries other stores recorded for members they do not hold
    (schema/_work.py POINT_ENTRIES), once each. Never fails the sync that brought them:
    what is not posted now is posted after the next one."""
    try:
        await post_pending(node)
    except Exception:
        log.exception("posting loyalty entries after a sync failed")


async def push(node: Node, peer: dict[str, Any], request: PushRequest) -> PushAck:
    """Apply a peer's batch; quarantined changes are reported, never block the rest."""
    _check(peer, request.protocol, request.node)
    if request.batch.sender != peer["id"]:
        raise ProtocolError("the batch names another sender than the signing node")
    batch, refused = _device_writes(peer, request.batch)
    result = await incoming(node.db, batch, node_id=node.node_id, peer=peer["id"],
                            hq_node=node.hq_node_id, writer_branch=peer["branch"],
                            max_skew_ms=node.settings.max_skew_ms)
    if not request.batch.more:
        # The push is complete: resolve collisions (撞单) and merges it brought (SPEC
        # §16). Not between pages: moving a customer to another branch mid-push would
        # refuse the rest of its own branch's push for it.
        await settle_after_sync(node.db, node.node_id)
        await post_points(node)
    return PushAck(protocol=PROTOCOL_VERSION, schema=SCHEMA_VERSION,
                   cursor=request.batch.cursor, applied=result.applied,
                   quarantined=result.quarantined + refused)


def _device_writes(peer: dict[str, Any], batch: Batch) -> tuple[Batch, list[Quarantined]]:
    """An HQ-wide user's device holds everything (no branch to check its writes by), but
    its key is not headquarters': what only HQ writes (users, reference data, key grants)
    it may not change (SPEC §20). A branch's device is checked by its branch (§9)."""
    if peer["kind"] != "device" or peer["branch"] is not None:
        return batch, []
    refused = [Quarantined(r.tbl, r.id, f"a device cannot change {r.tbl}")
               for r in batch.rows if r.tbl in HQ_ONLY_WRITES]
    if not refused:
        return batch, []
    return msgspec.structs.replace(batch, rows=[r for r in batch.rows
                                                if r.tbl not in HQ_ONLY_WRITES]), refused


async def collect_garbage(node: Node, retention_days: float) -> int:
    """Collect tombstones every active peer has acknowledged, and any older than the
    retention window (peers that far behind rebuild from a snapshot)."""
    from sqlalchemy import func, select

    from schema import nodes as node_table
    from schema import peer_state, sync_rows
    from sync import pack

    async with node.db.read() as conn:
        active = [r.id for r in await conn.execute(select(node_table.c.id).where(
            node_table.c.revoked_at.is_(None), node_table.c.id != node.node_id))]
        cutoff = pack(int((time.time() - retention_days * 86400) * 1000))
        old = (await conn.execute(select(func.max(sync_rows.c.seq)).where(
            sync_rows.c.cl % 2 == 0, sync_rows.c.clock < cutoff))).scalar() or 0
    acked = [parse_cursor((await peer_state(node.db, n))["pushed"])[0] for n in active]
    horizon = max(min(acked, default=0), int(old))
    return await collect_tombstones(node.db, horizon) if horizon else 0


async def health(node: Node, known: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per enrolled node: last contact, what waits in each direction, errors."""
    from schema import peer_state

    out = []
    for n in known:
        if n["id"] == node.node_id:
            continue
        state = await peer_state(node.db, n["id"])
        out.append({
            "node_id": n["id"], "kind": n["kind"], "branch": n["branch"], "name": n["name"],
            "revoked": n["revoked_at"] is not None,
            "last_contact": state["last_contact"], "last_error": state["last_error"],
            "waiting_outbound": await pending_since(node.db, state["pushed"]),
            "batches_in": state["batches_in"],
            "quarantined": await quarantine_count(node.db, n["id"]),
            "clock_offset_ms": state["clock_offset_ms"],
            **await bundle_health(node, n["id"]),
        })
    return out
