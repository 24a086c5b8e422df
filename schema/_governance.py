"""The replicated entities of governance (domain.md §9-§10): access approvals, the
hash-chained audit log, destruction requests, and monthly report snapshots.

Access requests and audit entries travel with the branch they were made at (HQ's stay
at HQ); destruction requests follow their customer; a report snapshot belongs to the
branch it covers (HQ-wide reports stay at HQ).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Integer, String

from schema._policy import Entity, Field, id_field, stamp_fields
from schema._types import UtcDateTime
from sync import Merge

ACCESS_STATES = ("requested", "approved", "returned", "revoked", "declined")
"""An access request's flow. Under the `state` policy the furthest state wins: a decline
made concurrently with an approval outranks it (access is the exception, not work to
keep), and a grant returned or revoked anywhere is over everywhere."""

ACCESS_KINDS = ("view", "export", "lend")
"""`view`: read archives outside one's scope; `export`: take confidential data out of
the system (files); `lend`: 借阅, paper or copies of an archive, returned within 3 days."""

SECRECY_LEVELS = ("ordinary", "top_secret")
"""A customer archive's secrecy: `top_secret` (绝密) archives need the general
manager's approval even inside one's own department."""

DESTRUCTION_STATES = ("requested", "reviewed", "approved", "declined", "erased")
"""Destruction (domain.md §9): the department head reviews, the general manager
approves, then the data is crypto-erased. `erased` outranks everything: it happened."""

RETENTION_YEARS = 10
"""Archives are kept 10 years after the relationship ends (domain.md §9)."""

GRANT_HOURS_MAX = 72
"""An access grant or a lending lasts at most 3 days."""


def _fixed(name: str, type_: Any, *, nullable: bool = True, index: bool = False) -> Field:
    """A column set when the row is created and never changed."""
    return Field(Column(name, type_, nullable=nullable, index=index), merge=Merge.IMMUTABLE)


ACCESS_REQUESTS = Entity("access_requests", (
    id_field(),
    _fixed("branch", String(16), index=True),  # the requester's branch (None: HQ)
    _fixed("requester_id", String(36), nullable=False, index=True),
    _fixed("kind", String(8), nullable=False),
    _fixed("customer_id", String(36), index=True),  # the object: one archive…
    _fixed("department", String(64)),  # …or a department's archives…
    _fixed("object_branch", String(16)),  # …of this branch (None: every branch)
    _fixed("subject", String(200)),  # what an export takes out (a list, a report)
    _fixed("purpose", String(200), nullable=False),
    _fixed("reason", String(1000), nullable=False),
    _fixed("copies", Integer),  # lending: how many copies were handed out
    _fixed("approver_role", String(32), nullable=False),
    _fixed("hours", Integer, nullable=False),
    _fixed("requested_at", UtcDateTime(), nullable=False),
    Field(Column("status", String(12), nullable=False, default="requested"),
          merge=Merge.STATE, states=ACCESS_STATES),
    Field(Column("decided_by", String(36))),
    Field(Column("decided_at", UtcDateTime())),
    Field(Column("decision_note", String(500))),
    Field(Column("expires_at", UtcDateTime())),
    Field(Column("returned_at", UtcDateTime())),
    *stamp_fields(),
))
"""调阅 / 借阅 / 导出申请 (domain.md §9): object, purpose, reason, requester, and the
role that must approve it. An approved request is a grant until `expires_at`; every
replica compares that with its own clock, so a grant ends on an offline branch too."""

AUDIT_LOG = Entity("audit_log", (
    id_field(),
    _fixed("node_id", String(36), nullable=False, index=True),
    _fixed("seq", BigInteger, nullable=False),
    _fixed("branch", String(16), index=True),  # the node's branch (None: HQ)
    _fixed("at", UtcDateTime(), nullable=False, index=True),
    _fixed("actor_id", String(36), index=True),
    _fixed("actor", String(64)),  # the username when it happened
    _fixed("action", String(32), nullable=False, index=True),
    _fixed("object_table", String(32)),
    _fixed("object_id", String(36)),
    _fixed("customer_id", String(36), index=True),
    _fixed("detail", JSON, nullable=False),
    _fixed("prev_hash", String(64), nullable=False),
    _fixed("hash", String(64), nullable=False),
), append_only=True, extra_indexes=(("node_id", "seq"),))
"""Who did what (logins, views of confidential archives, exports, approvals, key events,
merges, erasures). Each node keeps one chain: entry `seq` n carries the hash of entry
n-1, so an edited, removed or reordered entry breaks the chain wherever it is checked.
Never holds a customer secret: details name fields, not values."""

DESTRUCTION_REQUESTS = Entity("destruction_requests", (
    id_field(),
    _fixed("customer_id", String(36), nullable=False, index=True),
    _fixed("basis", String(20), nullable=False),  # retention_expired | customer_request
    _fixed("reason", String(1000), nullable=False),
    _fixed("requested_by", String(36)),
    _fixed("requested_at", UtcDateTime(), nullable=False),
    Field(Column("status", String(12), nullable=False, default="requested"),
          merge=Merge.STATE, states=DESTRUCTION_STATES),
    Field(Column("reviewed_by", String(36))),
    Field(Column("reviewed_at", UtcDateTime())),
    Field(Column("approved_by", String(36))),
    Field(Column("approved_at", UtcDateTime())),
    Field(Column("decision_note", String(500))),
    Field(Column("record_id", String(36))),  # the destruction record once erased
    *stamp_fields(),
))
"""A request to destroy a customer's archive, on its way through review and approval."""

REPORTS = Entity("reports", (
    id_field(),
    _fixed("kind", String(32), nullable=False, index=True),
    _fixed("period", String(7), nullable=False),  # YYYY-MM
    _fixed("branch", String(16), index=True),  # the branch covered (None: all of them)
    Field(Column("data", JSON, nullable=False)),
    Field(Column("generated_at", UtcDateTime(), nullable=False)),
    Field(Column("generated_by", String(36))),
    *stamp_fields(),
))
"""A monthly report as it was issued (the complaint statistics are due by the 10th).
Its id derives from kind, period and branch, so two nodes issuing it name one row."""

GOVERNANCE_ENTITIES: tuple[Entity, ...] = (
    ACCESS_REQUESTS, AUDIT_LOG, DESTRUCTION_REQUESTS, REPORTS,
)
GOVERNANCE_BY_BRANCH = frozenset({"access_requests", "audit_log", "reports"})
GOVERNANCE_CHILDREN = frozenset({"destruction_requests"})
