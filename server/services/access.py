"""Access approvals (调阅 / 借阅 / 导出, domain.md §9): a request to read archives outside
one's scope (`view`), to take confidential data out (`export`) or to borrow an archive
(`lend`, returned within 3 days), decided by the role the regulations name.

Who approves (fixed when the request is made, `approver_role`):

* an archive of the requester's own department (same branch and department) — its
  department manager (`dept_manager` of that branch and department);
* another department's archive, a top-secret archive (绝密) or any export — the general
  manager (any `general_manager`; at HQ once the request has synced there).

An approved request is a grant until `expires_at` (at most `GRANT_HOURS_MAX` hours after
the decision). Whether it is in force is decided by the reading node's own clock
(`server/services/grants.py`), so a grant also ends on a branch that never syncs again.
Grants widen reading only; writes stay within `customer_scope`. Every request, decision,
return and revocation is in the audit log, in the same transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from schema import ACCESS_KINDS, GRANT_HOURS_MAX, TABLES, clean_text, utcnow
from server.node import Node
from server.services import audit, grants, records
from server.services.errors import ConflictError, FieldError, ForbiddenError, NotFoundError
from server.services.principal import Principal
from server.services.scope import in_scope

access = TABLES["access_requests"]
customers = TABLES["customers"]
departments = TABLES["departments"]

__all__ = ["create_request", "decide", "get_request", "is_active", "list_requests",
           "may_decide", "return_grant", "revoke"]

OVERSEERS = frozenset({"general_manager", "archive_clerk", "auditor"})
"""Roles that see every request on their node (the periodic review of who has access)."""


def is_active(row: dict[str, Any]) -> bool:
    """Whether `row` is a grant in force by this node's clock."""
    # The very clock `grants` reads with, so `active` and what a read admits agree.
    now: datetime = grants.utcnow()  # type: ignore[attr-defined]
    return bool(row["status"] == "approved" and row["expires_at"] is not None
                and row["expires_at"] > now)


def _out(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "active": is_active(row)}


def may_decide(p: Principal, row: dict[str, Any]) -> bool:
    """Whether `p` holds the role that decides `row` (never their own request)."""
    if row["requester_id"] == p.id or p.role != row["approver_role"]:
        return False
    if p.role == "general_manager":
        return True
    # A department manager decides for their own department of their own branch only.
    return bool(p.department is not None and p.department == row["department"]
                and p.branch == row["object_branch"])


def _own_department(p: Principal) -> ColumnElement[bool]:
    """Requests whose object is the archives of `p`'s department, if `p` heads one."""
    if p.role != "dept_manager" or p.department is None:
        return false()
    same_branch = (access.c.object_branch.is_(None) if p.branch is None
                   else access.c.object_branch == p.branch)
    return and_(access.c.department == p.department, same_branch)


def _decider_clause(p: Principal) -> ColumnElement[bool]:
    """The SQL form of `may_decide` (status aside)."""
    if p.role == "general_manager":
        mine: ColumnElement[bool] = access.c.approver_role == "general_manager"
    elif p.role == "dept_manager" and p.department is not None:
        mine = and_(access.c.approver_role == "dept_manager", _own_department(p))
    else:
        return false()
    return and_(mine, access.c.requester_id != p.id)


def _visible(p: Principal) -> ColumnElement[bool]:
    """Requests `p` sees: their own, those on their department's archives (a department
    head knows who asks for them, even when the general manager decides), those they
    decide, and all of them for the roles that oversee access."""
    if p.role in OVERSEERS:
        return true()
    return or_(access.c.requester_id == p.id, _own_department(p), _decider_clause(p))


def _text(key: str, value: Any, limit: int, *, required: bool) -> str | None:
    text = clean_text(key, value, required=required) if value is not None else None
    if required and not text:
        raise FieldError(key, "must not be empty")
    if text is not None and len(text) > limit:
        raise FieldError(key, f"at most {limit} characters")
    return text or None


async def _object(conn: AsyncConnection, p: Principal, kind: str, values: dict[str, Any]
                  ) -> tuple[dict[str, Any], bool]:
    """The request's object columns and whether a top-secret archive is among them;
    refuses unknown objects and (for `view`) archives `p` already sees."""
    customer_id, department = values.get("customer_id"), values.get("department")
    if (customer_id is None) == (department is None):
        raise FieldError("customer_id", "name one customer or one department")
    if customer_id is not None:
        row = (await conn.execute(select(customers).where(customers.c.id == str(customer_id)))
               ).mappings().first()
        if row is None:
            raise FieldError("customer_id", "no such customer")
        if kind == "view" and in_scope(p, dict(row)):
            raise FieldError("customer_id", "you can already see this archive")
        # The object's department and branch are kept so the approver is known later.
        return ({"customer_id": row["id"], "department": row["department"],
                 "object_branch": row["branch"]}, row["secrecy"] == "top_secret")
    department = _text("department", department, 64, required=True)
    branch = values.get("object_branch")
    known = select(departments.c.id).where(departments.c.name == department)
    if branch is not None:
        known = known.where(departments.c.branch == branch)
    if (await conn.execute(known.limit(1))).first() is None:
        raise FieldError("department", "no such department")
    if kind == "view" and in_scope(p, {"owner_id": None, "branch": branch,
                                      "department": department}):
        raise FieldError("department", "you can already see these archives")
    secret = customers.c.department == department, customers.c.secrecy == "top_secret"
    where = (*secret, customers.c.branch == branch) if branch is not None else secret
    top = (await conn.execute(select(customers.c.id).where(*where).limit(1))).first()
    return {"customer_id": None, "department": department, "object_branch": branch}, \
        top is not None


async def create_request(node: Node, p: Principal, values: dict[str, Any]) -> dict[str, Any]:
    """File an access request; its approver role is fixed here (domain.md §9)."""
    if p.role == "admin":
        raise ForbiddenError("an administrator does not read customer archives")
    kind = values.get("kind")
    if kind not in ACCESS_KINDS:
        raise FieldError("kind", f"one of {', '.join(ACCESS_KINDS)}")
    hours = values.get("hours", GRANT_HOURS_MAX)
    if not isinstance(hours, int) or not 1 <= hours <= GRANT_HOURS_MAX:
        raise FieldError("hours", f"between 1 and {GRANT_HOURS_MAX}")
    copies = values.get("copies")
    if kind != "lend" and copies is not None:
        raise FieldError("copies", "only a lending hands out copies")
    if kind == "lend":
        copies = 1 if copies is None else copies
        if not isinstance(copies, int) or not 1 <= copies <= 100:
            raise FieldError("copies", "between 1 and 100")
    texts = {"purpose": _text("purpose", values.get("purpose"), 200, required=True),
             "reason": _text("reason", values.get("reason"), 1000, required=True),
             "subject": _text("subject", values.get("subject"), 200, required=False)}
    async with node.db.write(node.node_id, p.id) as uow:
        obj, top_secret = await _object(uow.conn, p, kind, values)
        own = (p.department is not None and obj["department"] == p.department
               and obj["object_branch"] == p.branch)
        approver = "dept_manager" if own and not top_secret and kind != "export" \
            else "general_manager"
        row = await uow.insert("access_requests", {
            **obj, **texts, "branch": p.branch, "requester_id": p.id, "kind": kind,
            "copies": copies, "approver_role": approver, "hours": hours,
            "requested_at": utcnow(), "status": "requested"})
        await audit.append(uow, node, p, "access_requested", object_table="access_requests",
                           object_id=row["id"], customer_id=row["customer_id"],
                           detail={"kind": kind, "approver_role": approver, "hours": hours,
                                   "department": obj["department"],
                                   "object_branch": obj["object_branch"]})
        return _out(row)


async def _visible_row(conn: AsyncConnection, p: Principal, request_id: str) -> dict[str, Any]:
    row = (await conn.execute(select(access).where(access.c.id == request_id, _visible(p)))
           ).mappings().first()
    if row is None:
        raise NotFoundError("access request not found")
    return dict(row)


async def get_request(node: Node, p: Principal, request_id: str) -> dict[str, Any]:
    """One request, if `p` made it, may decide it, or oversees access."""
    async with node.db.read() as conn:
        return _out(await _visible_row(conn, p, request_id))


async def list_requests(node: Node, p: Principal, filters: dict[str, Any],
                        cursor: str | None, limit: int
                        ) -> tuple[list[dict[str, Any]], str | None]:
    """Requests `p` may see, newest first; `mine` (made by `p`) and `to_approve`
    (pending and `p`'s to decide) narrow them further."""
    query = select(access).where(_visible(p))
    for key in ("status", "kind", "requester_id", "customer_id"):
        if filters.get(key) is not None:
            query = query.where(access.c[key] == filters[key])
    if filters.get("mine"):
        query = query.where(access.c.requester_id == p.id)
    if filters.get("to_approve"):
        query = query.where(_decider_clause(p), access.c.status == "requested")
    async with node.db.read() as conn:
        rows, nxt = await records.page(conn, query, access.c.id, cursor, limit)
    return [_out(r) for r in rows], nxt


async def _step(node: Node, p: Principal, request_id: str, action: str,
                note: str | None = None) -> dict[str, Any]:
    """One move of a request's flow, with its audit entry, in one transaction."""
    now = utcnow()
    async with node.db.write(node.node_id, p.id) as uow:
        row = await _visible_row(uow.conn, p, request_id)
        status = row["status"]
        if action in ("approve", "decline", "revoke"):
            if row["requester_id"] == p.id:
                raise ForbiddenError("you cannot decide your own request")
            if not may_decide(p, row):
                raise ForbiddenError(f"this request is decided by a {row['approver_role']}"
                                     + (" of its department" if row["approver_role"]
                                        == "dept_manager" else ""))
        elif row["requester_id"] != p.id:
            raise ForbiddenError("only the requester returns a grant")
        changes: dict[str, Any]
        if action in ("approve", "decline"):
            if status != "requested":
                raise ConflictError(f"the request is already {status}")
            changes = {"status": "approved" if action == "approve" else "declined",
                       "decided_by": p.id, "decided_at": now, "decision_note": note}
            if action == "approve":
                changes["expires_at"] = now + timedelta(hours=row["hours"])
        elif status != "approved":
            raise ConflictError(f"the request is {status}, not approved")
        elif action == "return":
            changes = {"status": "returned", "returned_at": now}
        else:
            changes = {"status": "revoked", "decision_note": note or row["decision_note"]}
        updated = await uow.update("access_requests", row["id"], changes)
        past = {"approve": "approved", "decline": "declined", "return": "returned",
                "revoke": "revoked"}[action]
        detail: dict[str, Any] = {"kind": row["kind"], "requester_id": row["requester_id"]}
        if action == "approve":
            detail["hours"] = row["hours"]
        if action == "return" and row["kind"] == "lend":
            detail["copies"] = row["copies"]
        await audit.append(uow, node, p, f"access_{past}", object_table="access_requests",
                           object_id=row["id"], customer_id=row["customer_id"], detail=detail)
        return _out(updated)


async def decide(node: Node, p: Principal, request_id: str, approve: bool,
                 note: str | None = None) -> dict[str, Any]:
    """Approve (the grant runs `hours` from now) or decline a pending request."""
    note = _text("note", note, 500, required=False)
    return await _step(node, p, request_id, "approve" if approve else "decline", note)


async def return_grant(node: Node, p: Principal, request_id: str) -> dict[str, Any]:
    """The requester ends their grant early (a lending: the archive came back)."""
    return await _step(node, p, request_id, "return")


async def revoke(node: Node, p: Principal, request_id: str, note: str | None = None
                 ) -> dict[str, Any]:
    """An approver ends a grant in force before it expires."""
    note = _text("note", note, 500, required=False)
    return await _step(node, p, request_id, "revoke", note)
