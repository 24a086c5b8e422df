"""Erasing a customer's personal data by crypto-shredding (domain.md §9, THREATS.md).

Destruction needs a department head's review and the general manager's approval, and
leaves a destruction record. The customer's confidential and secret fields (and its
contacts') are cleared through the unit of work, and its data keys are deleted: their
tombstones replicate, so after the next sync no replica holds a key that opens the old
ciphertexts still present in field history, sync files or backups. Retiring the class
key versions that wrapped those keys (rotation) closes the backup path too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from schema import SENSITIVE, TABLES, UnitOfWork, data_key_id, utcnow
from server.node import Node
from server.services import audit
from server.services.errors import FieldError, ForbiddenError, NotFoundError

REVIEWERS = frozenset({"dept_manager"})
APPROVERS = frozenset({"general_manager"})


async def _user(node: Node, username: str, roles: frozenset[str], what: str) -> dict[str, Any]:
    users = TABLES["users"]
    async with node.db.read() as conn:
        row = (await conn.execute(select(users).where(users.c.username == username,
                                                      users.c.active))).mappings().first()
    if row is None or row["role"] not in roles:
        raise FieldError(what, f"{username!r} is not an active {' or '.join(sorted(roles))}")
    return dict(row)


async def erase_customer(node: Node, customer_id: str, *, reviewed_by: str, approved_by: str,
                         reason: str, actor_id: str | None = None) -> dict[str, Any]:
    """Crypto-shred one customer's personal data at HQ; returns the destruction record."""
    if node.role != "hq":
        raise ForbiddenError("personal data is erased at headquarters")
    if not reason.strip():
        raise FieldError("reason", "must not be empty")
    reviewer = await _user(node, reviewed_by, REVIEWERS, "reviewed_by")
    approver = await _user(node, approved_by, APPROVERS, "approved_by")
    async with node.db.write(node.node_id, actor_id) as uow:
        record = await erase_in(uow, node, customer_id, reviewer_id=reviewer["id"],
                                approver_id=approver["id"], reason=reason, actor_id=actor_id)
    await node.db.purge_freed()
    return record


async def erase_in(uow: UnitOfWork, node: Node, customer_id: str, *, reviewer_id: str,
                   approver_id: str, reason: str, actor_id: str | None = None
                   ) -> dict[str, Any]:
    """`erase_customer`'s work inside the caller's unit of work, so the destruction flow
    (server/services/retention.py) erases in the transaction that records the approval;
    returns the destruction record. The caller runs `node.db.purge_freed()` once it
    has committed."""
    if node.role != "hq":
        raise ForbiddenError("personal data is erased at headquarters")
    if not reason.strip():
        raise FieldError("reason", "must not be empty")
    contacts = TABLES["contacts"]
    row = await uow.get("customers", customer_id)
    if row is None:
        raise NotFoundError("customer not found")
    erased = [c for c in SENSITIVE["customers"] if row.get(c) is not None]
    await uow.update("customers", customer_id, {c: None for c in erased})
    ids = [r.id for r in await uow.conn.execute(
        select(contacts.c.id).where(contacts.c.customer_id == customer_id))]
    for contact_id in ids:
        current = await uow.get("contacts", contact_id)
        assert current is not None
        cleared = {c: None for c in SENSITIVE["contacts"] if current.get(c) is not None}
        if cleared:
            await uow.update("contacts", contact_id, cleared)
            erased += [f"contacts.{c}" for c in cleared]
    for cls in sorted(set(SENSITIVE["customers"].values())):
        if await uow.get("data_keys", data_key_id(customer_id, cls)) is not None:
            await uow.delete("data_keys", data_key_id(customer_id, cls))
    record = await uow.insert("destruction_records", {
        "customer_id": customer_id, "reason": reason.strip()[:500],
        "reviewed_by": reviewer_id, "approved_by": approver_id,
        "erased_by": actor_id, "node_id": node.node_id, "erased_at": utcnow(),
        "fields": sorted(erased)})
    actor = None if actor_id is None else await uow.get("users", actor_id)
    await audit.append(uow, node, None, "erasure", actor_id=actor_id,
                       actor_name=actor["username"] if actor else None,
                       object_table="destruction_records", object_id=record["id"],
                       customer_id=customer_id,
                       detail={"fields": sorted(erased), "reviewed_by": reviewer_id,
                               "approved_by": approver_id})
    return record
