"""Credit limits (授信额度, domain.md §8): HQ-authoritative, reviewed and adjusted.

HQ's finance or general manager sets a limit and it takes effect. The same change made
on a branch node is held by the unit of work as a pending change request
(`change_requests`), which HQ grants or denies. Every change in effect is in the
customer's field history; the reason given travels as a notice to the customer's store
(`notices`, subject: the history row, or the pending request), so the history shows it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from schema import TABLES, UnitOfWork, clean_text
from server.node import Node
from server.services.credit import CREDIT_READERS, MAX_FEN, require_role
from server.services.errors import ConflictError, FieldError, ForbiddenError, NotFoundError
from server.services.principal import Principal
from server.services.records import page, visible_customer
from server.services.scope import customer_scope

history = TABLES["field_history"]
change_requests = TABLES["change_requests"]
notices = TABLES["notices"]
users = TABLES["users"]
customers = TABLES["customers"]

LIMIT_SETTERS = frozenset({"finance", "general_manager"})
COLUMN = "credit_limit_fen"
CHANGED = "credit_limit"
"""Notice kind: a limit changed (subject: the field_history row)."""
REQUESTED = "credit_limit_req"
"""Notice kind: a branch asked for a limit (subject: the change request)."""


def _limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FEN:
        raise FieldError(COLUMN, "must be a whole number of fen, 0 or more")
    return value


async def _notify(uow: UnitOfWork, customer: dict[str, Any], kind: str, subject: str,
                  message: str) -> None:
    await uow.insert("notices", {"branch": customer["branch"], "user_id": customer["owner_id"],
                                 "kind": kind, "subject_id": subject, "message": message})


async def _latest_change(conn: AsyncConnection, customer_id: str) -> str:
    """The field_history row this transaction just wrote for the limit."""
    row = (await conn.execute(select(history.c.id).where(
        history.c.table_name == "customers", history.c.row_id == customer_id,
        history.c.column_name == COLUMN).order_by(history.c.clock.desc()).limit(1))).first()
    assert row is not None
    return str(row.id)


def _message(limit: int, reason: str) -> str:
    return f"{reason}（授信额度 {limit / 100:.2f} 元）"


async def set_limit(node: Node, p: Principal, customer_id: str, limit_fen: int,
                    reason: str) -> dict[str, Any]:
    """Set a customer's credit limit: at HQ it takes effect; on a branch node it becomes
    a pending request for HQ. Returns `status` applied, pending or unchanged."""
    require_role(p, LIMIT_SETTERS, "set credit limits")
    limit = _limit(limit_fen)
    why = clean_text("reason", reason, required=True) or ""
    async with node.db.write(node.node_id, p.id) as uow:
        customer = await visible_customer(uow.conn, p, customer_id)
        if customer[COLUMN] == limit:
            return {"customer_id": customer["id"], COLUMN: limit, "status": "unchanged",
                    "request_id": None}
        after = await uow.update("customers", customer["id"], {COLUMN: limit})
        if after[COLUMN] == limit:
            await _notify(uow, customer, CHANGED, await _latest_change(uow.conn, customer["id"]),
                          _message(limit, why))
            return {"customer_id": customer["id"], COLUMN: limit, "status": "applied",
                    "request_id": None}
        # Away from HQ the unit of work held the value back as a change request.
        request = (await uow.conn.execute(select(change_requests.c.id).where(
            change_requests.c.row_id == customer["id"], change_requests.c.column_name == COLUMN,
            change_requests.c.node_id == node.node_id, change_requests.c.status == "pending")
            .order_by(change_requests.c.id.desc()).limit(1))).first()
        assert request is not None
        await _notify(uow, customer, REQUESTED, str(request.id), _message(limit, why))
        return {"customer_id": customer["id"], COLUMN: customer[COLUMN], "status": "pending",
                "request_id": str(request.id)}


async def decide_limit_request(node: Node, p: Principal, request_id: str, grant: bool
                               ) -> dict[str, Any]:
    """HQ grants (the limit takes effect) or denies a branch's limit request."""
    require_role(p, LIMIT_SETTERS, "grant credit limits")
    if node.role != "hq":
        raise ForbiddenError("only headquarters grants credit limits")
    async with node.db.write(node.node_id, p.id) as uow:
        request = await uow.get("change_requests", request_id)
        if request is None or request["column_name"] != COLUMN:
            raise NotFoundError("credit limit request not found")
        # A customer merged away since the request: the surviving archive gets the limit.
        customer = await visible_customer(uow.conn, p, request["row_id"])
        if request["status"] != "pending":
            raise ConflictError(f"the request is already {request['status']}")
        row = await uow.update("change_requests", request_id,
                               {"status": "granted" if grant else "denied"})
        if grant and customer[COLUMN] != request["value"]:
            await uow.update("customers", customer["id"], {COLUMN: _limit(request["value"])})
            why = (await uow.conn.execute(select(notices.c.message).where(
                notices.c.subject_id == request_id, notices.c.kind == REQUESTED))).scalar()
            await _notify(uow, customer, CHANGED, await _latest_change(uow.conn, customer["id"]),
                          why or _message(int(request["value"]), "granted"))
        return row


async def _reasons(conn: AsyncConnection, subjects: list[str], kind: str) -> dict[str, str]:
    if not subjects:
        return {}
    return {r.subject_id: r.message for r in await conn.execute(
        select(notices.c.subject_id, notices.c.message).where(
            notices.c.kind == kind, notices.c.subject_id.in_(subjects)))}


async def limit_history(node: Node, p: Principal, customer_id: str, cursor: str | None,
                        limit: int) -> dict[str, Any]:
    """The limit's changes in effect (old → new, who, when, why), newest first, and
    the requests still waiting for HQ."""
    require_role(p, CREDIT_READERS, "read credit")
    async with node.db.read() as conn:
        customer = await visible_customer(conn, p, customer_id)
        query = select(history, users.c.display_name.label("changed_by_name")).outerjoin(
            users, users.c.id == history.c.changed_by).where(
            history.c.table_name == "customers", history.c.row_id == customer["id"],
            history.c.column_name == COLUMN)
        rows, next_cursor = await page(conn, query, history.c.id, cursor, limit)
        why = await _reasons(conn, [r["id"] for r in rows], CHANGED)
        pending = [dict(r) for r in (await conn.execute(select(change_requests).where(
            change_requests.c.row_id == customer["id"], change_requests.c.column_name == COLUMN,
            change_requests.c.status == "pending").order_by(change_requests.c.id))).mappings()]
        asked = await _reasons(conn, [r["id"] for r in pending], REQUESTED)
    return {"items": [{**r, "reason": why.get(r["id"])} for r in rows],
            "next_cursor": next_cursor,
            "pending": [{**r, "reason": asked.get(r["id"])} for r in pending]}


async def list_limit_requests(node: Node, p: Principal, status: str | None,
                              cursor: str | None, limit: int
                              ) -> tuple[list[dict[str, Any]], str | None]:
    """Limit requests of customers `p` may see (HQ's queue to grant), newest first."""
    require_role(p, LIMIT_SETTERS, "read credit limit requests")
    query = select(change_requests).join(
        customers, customers.c.id == change_requests.c.row_id).where(
        change_requests.c.table_name == "customers", change_requests.c.column_name == COLUMN,
        customer_scope(p))
    if status is not None:
        query = query.where(change_requests.c.status == status)
    async with node.db.read() as conn:
        rows, next_cursor = await page(conn, query, change_requests.c.id, cursor, limit)
        asked = await _reasons(conn, [r["id"] for r in rows], REQUESTED)
    return [{**r, "reason": asked.get(r["id"])} for r in rows], next_cursor
