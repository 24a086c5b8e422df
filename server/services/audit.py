"""Writing the audit log (domain.md §9): one hash chain per node, extended in the same
transaction as the action it records, so an action and its entry commit together.

`append` is for services already inside a unit of work (approvals, merges, erasures);
`log` opens one for actions that write nothing else (logins, views, exports);
`append_for` serves code that holds a database but no `Node` (key rotation and key
jobs at headquarters). Details name what was touched (tables, fields, counts), never a
customer's values. Reading and verifying the log: `server/services/audit_query.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from schema import GENESIS, TABLES, UnitOfWork, entry_hash, new_id, utcnow

if TYPE_CHECKING:  # server.node imports server.keys, which writes key events here
    from server.node import Node
    from server.services.principal import Principal

audit_log = TABLES["audit_log"]

__all__ = ["append", "append_for", "log", "view_fields"]

VIEW_IDS_MAX = 50
"""A view of many archives names at most this many of them (the count names all)."""


async def append_for(uow: UnitOfWork, node_id: str, branch: str | None, action: str, *,
                     actor_id: str | None = None, actor_name: str | None = None,
                     object_table: str | None = None, object_id: str | None = None,
                     customer_id: str | None = None, detail: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
    """Add one entry to node `node_id`'s chain inside `uow`; returns the entry.

    The unit of work holds the node's single write lock (SQLite's one writer,
    PostgreSQL's row lock on the node counters), so reading the chain's head here and
    writing its successor cannot race another writer.
    """
    head = (await uow.conn.execute(
        select(audit_log.c.seq, audit_log.c.hash)
        .where(audit_log.c.node_id == node_id)
        .order_by(audit_log.c.seq.desc()).limit(1))).first()
    seq, prev = (int(head.seq) + 1, str(head.hash)) if head is not None else (1, GENESIS)
    entry: dict[str, Any] = {
        "id": new_id(), "node_id": node_id, "seq": seq, "branch": branch, "at": utcnow(),
        "actor_id": actor_id, "actor": actor_name[:64] if actor_name else None,
        "action": action, "object_table": object_table, "object_id": object_id,
        "customer_id": customer_id, "detail": detail or {}, "prev_hash": prev,
    }
    entry["hash"] = entry_hash(entry)
    await uow.insert("audit_log", entry)
    return entry


async def append(uow: UnitOfWork, node: Node, actor: Principal | None, action: str, *,
                 object_table: str | None = None, object_id: str | None = None,
                 customer_id: str | None = None, detail: dict[str, Any] | None = None,
                 actor_name: str | None = None, actor_id: str | None = None
                 ) -> dict[str, Any]:
    """Add one entry to this node's chain inside `uow`; returns the entry. Without a
    principal, `actor_id` / `actor_name` say who (a failed login's target, an erasure
    made for a user id) or stay None (the node itself: init, CLI)."""
    return await append_for(
        uow, node.node_id, node.settings.node.branch_code, action,
        actor_id=actor.id if actor is not None else actor_id,
        actor_name=actor.username if actor is not None else actor_name,
        object_table=object_table, object_id=object_id, customer_id=customer_id,
        detail=detail)


async def log(node: Node, actor: Principal | None, action: str, **fields: Any
              ) -> dict[str, Any]:
    """`append` in a unit of work of its own (for actions that write nothing else)."""
    writer = actor.id if actor is not None else fields.get("actor_id")
    async with node.db.write(node.node_id, writer) as uow:
        return await append(uow, node, actor, action, **fields)


def view_fields(reads: list[dict[str, Any]]) -> dict[str, Any]:
    """The `view` entry for one request's plaintext reads (`read_audit` rows, which keep
    the per-row detail): which archives and which fields, never a value. One archive
    goes in `customer_id`; several are listed in the detail, the first 50."""
    ids = sorted({str(r["customer_id"]) for r in reads})
    fields = sorted({f"{r['table_name']}.{f}" for r in reads for f in r["fields"]})
    detail: dict[str, Any] = {"customers": len(ids), "fields": fields}
    if len(ids) > 1:
        detail["customer_ids"] = ids[:VIEW_IDS_MAX]
    return {"customer_id": ids[0] if len(ids) == 1 else None, "detail": detail}
