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
    read_part_header,
)
from crypto import BoxKey, BundleError
from schema import node_meta, nodes, peer_state, pending_since
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
            (nodes.c.id == to) | ((nodes.c.branch == to.upper()) & (nodes.c.kind == "branch")
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
    if report.applied:
        # Collisions (撞单) and merges the bundles brought (SPEC §16).
        from server.services.merges import settle_after_sync

        await settle_after_sync(node.db, node.node_id)
        from server.services.sync import post_points

        await post_points(node)
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
    if state["acked"]:
        mark = cursor_key(state["acked"])
        acked = sum(r[2] for r in rows if r.direction == "out" and cursor_key(r.until) <= mark)
    pending_dir = node.settings.data_dir / "bundles" / "pending"
    groups: dict[tuple[int, str], tuple[set[int], int]] = {}
    for p in sorted(pending_dir.glob("*.blb")) if pending_dir.is_dir() else []:
        try:
            head = read_part_header(p)[0]
        except (OSError, BundleError):
            continue
        if head.sender == peer_id:
            have, _ = groups.setdefault((head.number, head.bundle_id), (set(), head.parts))
            have.add(head.part)
    waiting = [f"bundle #{number} ({bundle_id[:8]}): "
               + (f"{len(have)} of {parts} parts here" if len(have) < parts
                  else "waits for an earlier bundle")
               for (number, bundle_id), (have, parts) in sorted(groups.items())]
    return {"bundles_sent": sent, "bundles_received": received,
            "bundles_acknowledged": acked, "bundles_waiting": waiting}


async def pending_for(node: Node, to: str) -> int:
    """How many changes an export to `to` would carry at most (for a progress bar)."""
    peer = await resolve_peer(node, to)
    return await pending_since(node.db, (await peer_state(node.db, peer))["pushed"])


async def watch_once(node: Node, inbox: Path, outbox: Path, *, peers: list[str] | None,
                     max_part: int, settle_seconds: float = 2.0,
                     last_ack: dict[str, str] | None = None) -> list[str]:
    """One cycle of folder mode: import the bundle files that have finished arriving in
    `inbox`, then export to each peer that has something new for it into `outbox`
    (replacing that peer's older bundles there: the new one covers them). Returns one
    line per thing done."""
    import time

    lines: list[str] = []
    now = time.time()
    ready = [p for p in sorted(inbox.glob("*.blb"))
             if p.is_file() and now - p.stat().st_mtime >= settle_seconds]
    if ready:
        report = await import_files(node, ready)
        lines += report.applied + report.skipped + report.waiting
        lines += [f"refused: {r}" for r in report.rejected]
        for p in ready:  # applied, or kept in pending/ or quarantine/ by the import
            p.unlink(missing_ok=True)
    if node.role == "hq":
        async with node.db.read() as conn:
            enrolled = [str(r.id) for r in await conn.execute(select(nodes.c.id).where(
                nodes.c.kind == "branch", nodes.c.revoked_at.is_(None)))]
        targets = [await resolve_peer(node, p) for p in peers] if peers else enrolled
    else:
        targets = [node.hq_node_id]
    acks = last_ack if last_ack is not None else {}
    outbox.mkdir(parents=True, exist_ok=True)
    for peer in targets:
        state = await peer_state(node.db, peer)
        waiting = await pending_since(node.db, state["pushed"])
        if not waiting and acks.get(peer) == state["pulled"]:
            continue
        older = []
        for p in outbox.glob("*.blb"):
            try:
                if read_part_header(p)[0].recipient == peer:
                    older.append(p)
            except (OSError, BundleError):  # not ours to judge: leave it
                continue
        sent = await export_bundle(await bundle_node(node), peer, outbox, max_part=max_part)
        for p in older:
            p.unlink(missing_ok=True)
        acks[peer] = state["pulled"]
        lines.append(f"exported bundle #{sent.number} to {peer}: {sent.rows} rows, "
                     f"{len(sent.files)} file(s)")
    return lines
