"""Which rows a branch replica holds (sync/SPEC.md §Scope)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from schema._bulk import among, records
from schema._governance import GOVERNANCE_BY_BRANCH, GOVERNANCE_CHILDREN
from schema._tables import TABLES
from schema._work import WORK_BY_BRANCH, WORK_CHILDREN, WORK_REFERENCE

REFERENCE = frozenset({"regions", "branches", "departments", "custom_field_defs",
                       "key_policies"}) | WORK_REFERENCE
"""Published by HQ to every branch."""
BY_BRANCH = (frozenset({"customers", "users", "key_grants"}) | WORK_BY_BRANCH
             | GOVERNANCE_BY_BRANCH)
"""Rows that carry their branch themselves."""
CHILDREN = (frozenset({"contacts", "field_history", "conflicts", "change_requests",
                      "data_keys", "destruction_records", "read_audit"}) | WORK_CHILDREN
            | GOVERNANCE_CHILDREN)
"""Rows that belong to a customer (`customer_id`) and follow it."""
HQ_ONLY_WRITES = REFERENCE | {"users", "key_grants"}
"""Tables only headquarters may change."""


DEVICE_EXCLUDED = frozenset({"audit_log", "read_audit", "key_grants"})
"""Tables no device holds: the audit trail is for auditors, and each node's key grants
are its own (a device gets its grants at enrolment)."""
DEVICE_REDACTED = {"users": "password_hash"}
"""Columns a device receives blanked: users travel to devices (handlers, technicians to
pick offline) without the password hashes a lost tablet would expose."""


@dataclass(frozen=True)
class Scope:
    """What a peer holds: everything (HQ) or one branch's share; a device's share may be
    narrowed to one owner's customers (a sales rep's tablet) and leaves out
    `DEVICE_EXCLUDED`."""

    branch: str | None = None
    owner: str | None = None
    """Only customers owned by this user (and their children)."""
    department: str | None = None
    """Only customers of this department (and their children)."""
    device: bool = False

    @property
    def everything(self) -> bool:
        return (self.branch is None and self.owner is None and self.department is None
                and not self.device)


async def customer_branches(conn: AsyncConnection, ids: Iterable[str]) -> dict[str, str | None]:
    """The branch of each customer id that exists locally."""
    customers = TABLES["customers"]
    out: dict[str, str | None] = {}
    wanted = sorted(set(ids))
    for listed in among(conn.dialect, customers.c.id, wanted):
        rows = records(await conn.execute(
            select(customers.c.id, customers.c.branch).where(listed)))
        out.update({r.id: r.branch for r in rows})
    return out


async def customer_holders(conn: AsyncConnection, ids: Iterable[str]
                           ) -> dict[str, tuple[str | None, str | None, str | None]]:
    """The branch, owner and department of each customer id that exists locally."""
    customers = TABLES["customers"]
    out: dict[str, tuple[str | None, str | None, str | None]] = {}
    wanted = sorted(set(ids))
    for listed in among(conn.dialect, customers.c.id, wanted):
        rows = records(await conn.execute(select(
            customers.c.id, customers.c.branch, customers.c.owner_id, customers.c.department
        ).where(listed)))
        out.update({r.id: (r.branch, r.owner_id, r.department) for r in rows})
    return out
