"""Writing the audit log (domain.md §9): one hash chain per node, extended in the same
transaction as the action it records, so an action and its entry commit together.

`append` is for services already inside a unit of work (approvals, merges, erasures);
`log` opens one for actions that write nothing else (logins, views, exports). Details
name what was touched (tables, fields, counts), never a customer's values.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from schema import GENESIS, TABLES, UnitOfWork, entry_hash, new_id, utcnow
from server.node import Node
from server.services.principal import Principal

audit_log = TABLES["audit_log"]

__all__ = ["append", "log"]


async def append(uow: UnitOfWork, node: Node, actor: Principal | None, action: str, *,
                 object_table: str | None = None, object_id: str | None = None,
                 customer_id: str | None = None, detail: dict[str, Any] | None = None,
                 actor_name: str | None = None) -> dict[str, Any]:
    """Add one entry to this node's chain inside `uow`; returns the entry.

    The unit of work holds the node's single write lock (SQLite's one writer,
    PostgreSQL's row lock on the node counters), so reading the chain's head here and
    writing its successor cannot race another writer.
    """
    head = (await uow.conn.execute(
        select(audit_log.c.seq, audit_log.c.hash)
        .where(audit_log.c.node_id == node.node_id)
        .order_by(audit_log.c.seq.desc()).limit(1))).first()
    seq, prev = (int(head.seq) + 1, str(head.hash)) if head is not None else (1, GENESIS)
    entry: dict[str, Any] = {
        "id": new_id(), "node_id": node.node_id, "seq": seq,
        "branch": node.settings.node.branch_code, "at": utcnow(),
        "actor_id": actor.id if actor is not None else None,
        "actor": actor.username if actor is not None else actor_name,
        "action": action, "object_table": object_table, "object_id": object_id,
        "customer_id": customer_id, "detail": detail or {}, "prev_hash": prev,
    }
    entry["hash"] = entry_hash(entry)
    await uow.insert("audit_log", entry)
    return entry


async def log(node: Node, actor: Principal | None, action: str, **fields: Any
              ) -> dict[str, Any]:
    """`append` in a unit of work of its own (for actions that write nothing else)."""
    async with node.db.write(node.node_id, actor.id if actor is not None else None) as uow:
        return await append(uow, node, actor, action, **fields)
