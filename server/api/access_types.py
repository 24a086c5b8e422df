"""Request and response bodies of access approvals (server/api/access.py): 调阅 / 借阅 /
导出 requests and their decisions (domain.md §9). Field names are the schema's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta, Struct

from schema import GRANT_HOURS_MAX
from server.api.types import Uuid

Kind = Literal["view", "export", "lend"]
Status = Literal["requested", "approved", "returned", "revoked", "declined"]
Note = Annotated[str, Meta(max_length=500)]


class AccessRequestIn(Struct, forbid_unknown_fields=True, kw_only=True):
    """An access request. The object is one archive (`customer_id`) or a department's
    archives (`department`, of `object_branch` or of every branch). A grant lasts
    `hours` (at most 72) from its approval; a lending names the `copies` handed out."""

    kind: Kind
    purpose: Annotated[str, Meta(min_length=1, max_length=200)]
    reason: Annotated[str, Meta(min_length=1, max_length=1000)]
    customer_id: Uuid | None = None
    department: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    object_branch: Annotated[str, Meta(min_length=1, max_length=16)] | None = None
    subject: Annotated[str, Meta(max_length=200)] | None = None
    hours: Annotated[int, Meta(ge=1, le=GRANT_HOURS_MAX)] = GRANT_HOURS_MAX
    copies: Annotated[int, Meta(ge=1, le=100)] | None = None


class DecisionIn(Struct, forbid_unknown_fields=True, kw_only=True):
    """A decision's (or revocation's) note, e.g. why a request was declined."""

    note: Note | None = None


class AccessRequestOut(Struct, kw_only=True):
    id: str
    branch: str | None
    requester_id: str
    kind: str
    customer_id: str | None
    department: str | None
    object_branch: str | None
    subject: str | None
    purpose: str
    reason: str
    copies: int | None
    approver_role: str
    hours: int
    requested_at: datetime
    status: str
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    expires_at: datetime | None
    returned_at: datetime | None
    active: bool
    """Approved and not yet expired by this node's clock."""
    created_at: datetime
    updated_at: datetime


class AccessRequestPage(Struct, kw_only=True):
    items: list[AccessRequestOut]
    next_cursor: str | None = None
