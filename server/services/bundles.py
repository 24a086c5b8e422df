"""Bundle exchange for a node: whom to export to, the node's bundle key, folders, and
what HQ shows about bundles per branch (SPEC §Bundles)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from branches import (
    BundleNode,
    ExportReport,
    Folders,
    ImportReport,
    cursor_key,
    export_bundle,
    import_bundles,
)
from crypto import BoxKey
from schema import node_meta, nodes, peer_state
from schema._tables import bundle_log
from server.errors import NodeError
from server.node import Node


async def _box(node: Node) -> BoxKey:
    """This node's X25519 key (made now at an HQ created before bundles existed)."""
    async with node.db.read() as conn:
        hex_key = (await conn.execute(select(node_meta.c.value).where(
            node_meta.c.key == "box_key"))).scalar()
    if hex_key is None:
        if node.role != "hq":
            raise NodeError("this node has no bundle key: re-enrol it")
        box = BoxKey.generate()
        async with node.db.admin() as conn:
            await conn.execute(node_meta.insert(), [{"key": "box_key",
                                                     "value": box.private_hex()}])
            await conn.execute(update(nodes).where(nodes.c.id == node.node_id).values(
                box_public_key=box.public_hex()))
        return box
    return BoxKey.from_hex(hex_key)


async def own_box_public(node: Node) -> str:
    """The public half of this node's bundle key (for enrolment files)."""
    return (await _box(node)).public_hex()


async def bundle_node(node: Node) -> BundleNode:
    """What the bundle runtime needs of this node."""
    return BundleNode(db=node.db, node_id=node.node_id, role=node.role, key=node.key,
                      box=await _box(node),
                      folders=Folders(node.settings.data_dir / "bundles"),
                      hq_node_id=node.hq_node_id, max_skew_ms=node.settings.max_skew_ms,
                      page_rows=node.settings.sync_page_rows)


async def resolve_peer(node: Node, to: str) -> str:
    """A peer named by node id, branch code, or `hq`."""
    if to.lower() == "hq":
        if node.role == "hq":
            raise NodeError("this is headquarters: name a branch code or node id")
        return node.hq_node_id
    async with node.db.read() as conn:
        rows = (await conn.execute(select(nodes.c.id).where(
            (nodes.c.id == to) | ((nodes.c.branch == to.upper())
                                  & nodes.c.revoked_at.is_(None))))).all()
    if not rows or (len(rows) > 1):
        raise NodeError(f"no single enrolled node {to!r} (give a branch code or node id)")
    peer = str(rows[0].id)
    if peer == node.node_id:
        raise NodeError("a node does not send bundles to itself")
    if node.role != "hq" and peer != node.hq_node_id:
        raise NodeError("a branch exchanges bundles with headquarters only")
    return peer


async def export_to(node: Node, to: str, out: Path, *, max_part: int,
                    ttl: timedelta | None = None,
                    progress: Callable[[int], None] | None = None) -> ExportReport:
    """Export a bundle for a peer into `out`."""
    peer = await resolve_peer(node, to)
    kwargs: dict[str, Any] = {"ttl": ttl} if ttl is not None else {}
    return await export_bundle(await bundle_node(node), peer, out, max_part=max_part,
                               progress=progress, **kwargs)


async def import_files(node: Node, files: Iterable[Path],
                       progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import bundle part files (and whatever waits in the pending folder)."""
    report = await import_bundles(await bundle_node(node), files, progress)
    if node.db.vault is not None and report.applied:
        from server.keys import refresh_vault

        await refresh_vault(node.db, node_id=node.node_id, role=node.role,
                            root_key=node.settings.root_key)
    return report


async def bundle_health(node: Node, peer_id: str) -> dict[str, Any]:
    """Bundles sent, received, acknowledged by the peer, and gaps waiting, for one peer."""
    state = await peer_state(node.db, peer_id)
    async with node.db.read() as conn:
        rows = (await conn.execute(select(bundle_log.c.direction, bundle_log.c.until,
                                          func.count()).where(bundle_log.c.peer_id == peer_id)
                                   .group_by(bundle_log.c.direction, bundle_log.c.until))).all()
    sent = sum(r[2] for r in rows if r.direction == "out")
    received = sum(r[2] for r in rows if r.direction == "in")
    acked = 0
    if state["pushed"]:
        mark = cursor_key(state["pushed"])
        acked = sum(r[2] for r in rows if r.direction == "out" and cursor_key(r.until) <= mark)
    pending_dir = node.settings.data_dir / "bundles" / "pending"
    waiting = sorted({p.name.split(".part")[0] for p in pending_dir.glob("*.blb")}
                     ) if pending_dir.is_dir() else []
    return {"bundles_sent": sent, "bundles_received": received,
            "bundles_acknowledged": acked, "bundles_waiting": waiting}


async def pending_for(node: Node, to: str) -> int:
    """How many changes an export to `to` would carry at most (for a progress bar)."""
    from schema import pending_since

    peer = await resolve_peer(node, to)
    return await pending_since(node.db, (await peer_state(node.db, peer))["pushed"])
