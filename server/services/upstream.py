"""A branch node's link to headquarters: one sync, or syncing in the background."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from branches import SyncReport, Upstream, run_forever, sync_once
from schema import nodes, peer_state, pending_since, quarantine_count
from server.errors import NodeError
from server.keys import refresh_vault
from server.node import Node
from server.services.conflicts import conflicts


async def upstream(node: Node) -> Upstream:
    """Who this branch syncs with; `NodeError` if it has no upstream configured."""
    cfg = node.settings.node
    if cfg.role == "hq" or cfg.hq_node_id is None:
        raise NodeError("headquarters has no upstream to sync with")
    if not cfg.upstream_url:
        raise NodeError("no upstream URL: set it with `branchline init branch --upstream URL`"
                        " or exchange bundles instead")
    async with node.db.read() as conn:
        hq = (await conn.execute(select(nodes).where(nodes.c.id == cfg.hq_node_id))).one()
    return Upstream(url=cfg.upstream_url, node_id=node.node_id, key=node.key,
                    hq_node_id=hq.id, hq_public_key=hq.public_key, branch=cfg.branch_code)


async def sync_now(node: Node) -> SyncReport:
    """Push and pull once; then take up field keys the pull granted or retired."""
    # Importing merges registers its step after every pull (collisions, SPEC §16).
    from server.services import merges  # noqa: F401

    report = await sync_once(node.db, await upstream(node),
                             max_skew_ms=node.settings.max_skew_ms,
                             page_rows=node.settings.sync_page_rows)
    await refresh_vault(node.db, node_id=node.node_id, role=node.role, root_key=None)
    return report


def start_background_sync(node: Node) -> asyncio.Task[None] | None:
    """On a branch with an upstream, keep syncing until the server stops."""
    cfg = node.settings.node
    if cfg.role == "hq" or not cfg.upstream_url:
        return None
    return asyncio.create_task(run_forever(lambda: sync_now(node),
                                           node.settings.sync_interval_seconds))


async def status(node: Node) -> dict[str, Any]:
    """Last sync, pending outbound changes, open conflicts, quarantined changes."""
    from sqlalchemy import func

    peer = node.hq_node_id if node.role != "hq" else None
    state = await peer_state(node.db, peer) if peer else None
    async with node.db.read() as conn:
        open_conflicts = int((await conn.execute(select(func.count()).select_from(conflicts)
                                                 .where(conflicts.c.status == "open"))
                              ).scalar_one())
    return {
        "node_id": node.node_id, "role": node.role, "branch": node.settings.node.branch_code,
        "upstream": node.settings.node.upstream_url,
        "last_sync": state["last_contact"] if state else None,
        "last_error": state["last_error"] if state else None,
        "pending_outbound": await pending_since(node.db, state["pushed"]) if state else 0,
        "open_conflicts": open_conflicts,
        "quarantined": await quarantine_count(node.db),
        "clock_offset_ms": state["clock_offset_ms"] if state else None,
    }
