"""Conflicts (SPEC §Conflicts): listing them and resolving one through the write path."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, select

from schema import SENSITIVE, TABLES, coerce
from server.node import Node
from server.services.errors import FieldError, ForbiddenError, NotFoundError
from server.services.principal import Principal

conflicts = TABLES["conflicts"]
history = TABLES["field_history"]
users = TABLES["users"]
REVIEWERS = frozenset({"general_manager", "sales_director", "dept_manager", "archive_clerk",
                       "admin"})


def _visible(p: Principal) -> Any:
    if p.role not in REVIEWERS:
        raise ForbiddenError(f"a {p.role} does not review sync conflicts")
    return conflicts.c.branch == p.branch if p.branch is not None else None


async def _writers(conn: Any, rows: list[dict[str, Any]]) -> None:
    """Attach who made each competing write, from the replicated field history."""
    for r in rows:
        for side in ("winner", "loser"):
            found = (await conn.execute(
                select(users.c.display_name).select_from(history.join(
                    users, users.c.id == history.c.changed_by)).where(and_(
                        history.c.row_id == r["row_id"],
                        history.c.column_name == r["column_name"],
                        history.c.node_id == r[f"{side}_node"],
                        history.c.clock == r[f"{side}_clock"])))).scalar()
            r[f"{side}_user"] = found


async def list_conflicts(node: Node, p: Principal, filters: dict[str, Any],
                         cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """Conflicts visible to `p`, newest first."""
    from server.services.customers import _page, _reveal

    query = select(conflicts)
    scope = _visible(p)
    if scope is not None:
        query = query.where(scope)
    for key, value in filters.items():
        if value is not None:
            query = query.where(conflicts.c[key] == value)
    async with node.db.read() as conn:
        rows, next_cursor = await _page(conn, query, conflicts.c.id, cursor, limit)
        await _writers(conn, rows)
        for r in rows:  # confidential values: plaintext or mask, per the reader's role
            if r["column_name"] in SENSITIVE.get(r["table_name"], {}) and r["customer_id"]:
                for key in ("winner_value", "loser_value"):
                    r[key] = await _reveal(node, conn, p, r["table_name"], r["column_name"],
                                           r["row_id"], r["customer_id"], r[key])
    return rows, next_cursor


async def resolve(node: Node, p: Principal, conflict_id: str, *, use: str,
                  note: str | None) -> dict[str, Any]:
    """Close a conflict, keeping the winner or writing the losing value back."""
    if use not in ("winner", "loser"):
        raise FieldError("use", "must be winner or loser")
    scope = _visible(p)
    async with node.db.write(node.node_id, p.id) as uow:
        row = await uow.get("conflicts", conflict_id)
        if row is None or (scope is not None and row["branch"] != p.branch):
            raise NotFoundError("conflict not found")
        if row["status"] != "open":
            raise FieldError("status", "the conflict is already resolved")
        if use == "loser":
            target = await uow.get(row["table_name"], row["row_id"])
            if target is None:
                raise NotFoundError("the record of this conflict no longer exists")
            value = coerce(row["table_name"], row["column_name"], row["loser_value"])
            await uow.update(row["table_name"], row["row_id"], {row["column_name"]: value})
        return await uow.update("conflicts", conflict_id, {
            "status": "resolved", "resolved_by": p.id,
            "resolution": (note or f"kept the {use} value")[:500]})

