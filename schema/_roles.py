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

_ALL = frozenset({"confidential", "secret", "credit"})
READABLE_CLASSES: dict[str, frozenset[str]] = {
    "general_manager": _ALL,
    "sales_director": _ALL,
    "archive_clerk": _ALL,
    "dept_manager": frozenset({"confidential"}),
    "sales_rep": frozenset({"confidential"}),
    "customer_service": frozenset({"confidential"}),
    "complaint_handler": frozenset({"confidential"}),
    "technician": frozenset({"confidential"}),
    "finance": frozenset({"confidential", "credit"}),
    "auditor": frozenset(),
    "admin": frozenset(),
}
"""Key classes each role may read in plaintext (others see masks). `credit` is the
credit status: secret, but finance needs it. An administrator runs the system, not the
customer relationship, and an auditor reviews who did what: neither reads secrets."""


def readable_classes(role: str) -> frozenset[str]:
    """The key classes `role` may read; nothing for an unknown role."""
    return READABLE_CLASSES.get(role, frozenset())
