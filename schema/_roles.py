"""Roles of the regulations and what each may see of the customer archive."""

from __future__ import annotations

from typing import Literal

Role = Literal[
    "admin", "general_manager", "sales_director", "dept_manager", "customer_service",
    "complaint_handler", "sales_rep", "archive_clerk", "technician", "finance", "auditor",
]

ROLES: tuple[Role, ...] = (
    "admin", "general_manager", "sales_director", "dept_manager", "customer_service",
    "complaint_handler", "sales_rep", "archive_clerk", "technician", "finance", "auditor",
)

CUSTOMER_EDITORS: frozenset[str] = frozenset({
    "general_manager", "sales_director", "dept_manager", "customer_service", "sales_rep",
    "archive_clerk",
})
"""Roles that may register customers and change archives (within their scope).
An administrator runs the system, not the customer relationship."""

ORG_ADMINS: frozenset[str] = frozenset({"admin"})
"""Roles that manage users, branches, departments and custom fields."""

CUSTOM_FIELD_ADMINS: frozenset[str] = frozenset({"admin", "general_manager", "archive_clerk"})
