"""What every service of customer work shares: finding a customer the caller may see
(following merges to the surviving archive), showing rows with confidential fields
opened or masked per role, logging plaintext reads, and cursor pages."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, false, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from schema import TABLES, new_id, utcnow
from server.node import Node
from server.services import customers as _customers
from server.services.errors import NotFoundError
from server.services.grants import granted_customers
from server.services.principal import Principal
from server.services.scope import customer_scope

customers = TABLES["customers"]

__all__ = ["customer_group", "group_clause", "log_reads", "new_number", "page", "show",
           "survivor_id", "visible_customer"]


async def survivor_id(conn: AsyncConnection, customer_id: str) -> str:
    """The archive `customer_id` redirects to after merges (itself if never merged).
    A merge cycle (two nodes merged each into the other at once) ends at its earliest
    registration, so every replica picks the same survivor."""
    seen: list[str] = []
    current = customer_id
    while current not in seen:
        seen.append(current)
        row = (await conn.execute(select(customers.c.merged_into)
                                  .where(customers.c.id == current))).first()
        if row is None or row.merged_into is None:
            return current
        current = row.merged_into
    cycle = seen[seen.index(current):]
    found = (await conn.execute(select(customers.c.id, customers.c.registered_at)
                                .where(customers.c.id.in_(cycle)))).all()
    return str(min(found, key=lambda r: (r.registered_at, r.id)).id)


async def customer_group(conn: AsyncConnection, survivor: str) -> list[str]:
    """`survivor` and every customer merged into it, directly or through others: the
    ids whose child rows (contacts, visits, complaints, purchases…) the surviving
    archive shows. Children keep their original `customer_id`, so rows written for an
    absorbed customer by a node that had not yet seen the merge still show up."""
    group = [survivor]
    frontier = [survivor]
    while frontier:
        found = [r.id for r in await conn.execute(
            select(customers.c.id).where(customers.c.merged_into.in_(frontier)))
            if r.id not in group]
        group += found
        frontier = found
    return group


async def group_clause(conn: AsyncConnection, p: Principal, column: Any, customer_id: str
                       ) -> ColumnElement[bool]:
    """A WHERE clause for a list filtered by `customer_id`: rows of that customer's
    surviving archive and everything merged into it, or none if `p` may not see it."""
    try:
        customer = await visible_customer(conn, p, customer_id)
    except NotFoundError:
        return false()
    group: list[str] = await customer_group(conn, customer["id"])
    return column.in_(group)  # type: ignore[no-any-return]


async def visible_customer(conn: AsyncConnection, p: Principal, customer_id: str,
                           *, follow_merges: bool = True, reading: bool = False
                           ) -> dict[str, Any]:
    """The customer row `p` may see (the survivor if `customer_id` was merged away);
    NotFoundError (404) if it does not exist here or is not visible to `p`. `reading`
    also admits archives `p` holds a view grant in force for (writes never do)."""
    if follow_merges:
        customer_id = await survivor_id(conn, customer_id)
    visible = or_(customer_scope(p), granted_customers(p)) if reading else customer_scope(p)
    row = (await conn.execute(select(customers).where(customers.c.id == customer_id,
                                                      visible))).mappings().first()
    if row is None:
        raise NotFoundError("customer not found")
    return dict(row)


async def show(node: Node, conn: AsyncConnection, p: Principal, table: str,
               rows: list[dict[str, Any]], audit: list[dict[str, Any]] | None = None
               ) -> list[dict[str, Any]]:
    """Rows of a customer-owned table as `p` may see them: confidential fields in
    plaintext for roles that read their class, masked otherwise, never ciphertext;
    plaintext reads are appended to `audit` for `log_reads`."""
    return await _customers._show(node, conn, p, table, rows, audit)


async def log_reads(node: Node, p: Principal, audit: list[dict[str, Any]]) -> None:
    """Record plaintext reads of confidential fields (append-only, replicated)."""
    await _customers._log_reads(node, p, audit)


async def page(conn: AsyncConnection, query: Select[Any], id_col: Any, cursor: str | None,
               limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """One page of `query`, newest id first, and the cursor of the next page."""
    return await _customers._page(conn, query, id_col, cursor, limit)


def new_number(prefix: str, branch: str | None) -> str:
    """A human record number (complaint 投诉, ticket 报修) unique without coordination:
    prefix, branch, local date, and the random tail of a UUIDv7."""
    day = utcnow().strftime("%Y%m%d")
    return f"{prefix}-{branch or 'HQ'}-{day}-{new_id()[-6:].upper()}"
