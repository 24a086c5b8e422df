"""Which customers a principal may see and change: role × branch × department."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, true

from schema import CUSTOMER_EDITORS, TABLES
from server.services.errors import ForbiddenError
from server.services.principal import Principal

customers = TABLES["customers"]


def customer_scope(p: Principal) -> ColumnElement[bool]:
    """A WHERE clause limiting `customers` to what `p` may see.

    A sales rep sees their own customers; a department manager their department (a
    manager without a department: their whole branch); other branch staff their
    branch; HQ staff everything.
    """
    if p.role == "sales_rep":
        return customers.c.owner_id == p.id
    conditions: list[ColumnElement[bool]] = []
    if p.branch is not None:
        conditions.append(customers.c.branch == p.branch)
    if p.role == "dept_manager" and p.department is not None:
        conditions.append(customers.c.department == p.department)
    return and_(true(), *conditions)


def in_scope(p: Principal, row: dict[str, Any]) -> bool:
    """Whether the customer `row` is visible to `p` (the same rule as `customer_scope`)."""
    if p.role == "sales_rep":
        return bool(row["owner_id"] == p.id)
    if p.branch is not None and row["branch"] != p.branch:
        return False
    return not (p.role == "dept_manager" and p.department is not None
                and row["department"] != p.department)


def require_editor(p: Principal) -> None:
    """Refuse roles that may not change customer archives."""
    if p.role not in CUSTOMER_EDITORS:
        raise ForbiddenError(f"a {p.role} cannot change customer archives")
