"""Access grants in force: approved access requests (domain.md §9) whose time has not
run out by this node's own clock. A grant therefore ends on an offline branch exactly
when it ends at HQ: expiry is a comparison with `expires_at`, not a message."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from schema import TABLES, utcnow
from server.services.principal import Principal

access = TABLES["access_requests"]
customers = TABLES["customers"]

__all__ = ["active", "export_grant", "granted_customers"]


def active(p: Principal, kind: str, now: datetime | None = None) -> ColumnElement[bool]:
    """`access_requests` rows that are `p`'s grants of `kind` in force at `now`."""
    return and_(access.c.requester_id == p.id, access.c.kind == kind,
                access.c.status == "approved", access.c.expires_at > (now or utcnow()))


def granted_customers(p: Principal, now: datetime | None = None) -> ColumnElement[bool]:
    """A WHERE clause on `customers`: the archives `p` may read through a view grant in
    force, one named archive or a department's archives (of one branch, or of all)."""
    now = now or utcnow()
    named = customers.c.id.in_(select(access.c.customer_id).where(
        active(p, "view", now), access.c.customer_id.is_not(None)))
    department = exists().where(
        active(p, "view", now), access.c.customer_id.is_(None),
        access.c.department == customers.c.department,
        or_(access.c.object_branch.is_(None), access.c.object_branch == customers.c.branch))
    return or_(named, department)


async def export_grant(conn: AsyncConnection, p: Principal, now: datetime | None = None
                       ) -> dict[str, Any] | None:
    """`p`'s export grant in force at `now` (the latest approved), or None: without one,
    exports carry masks instead of confidential values."""
    row = (await conn.execute(select(access).where(active(p, "export", now))
                              .order_by(access.c.decided_at.desc()).limit(1))).mappings().first()
    return dict(row) if row is not None else None
