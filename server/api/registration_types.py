"""Request and response bodies of registration, merges, handover and notices
(server/api/registration.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from server.api.types import Text500, Uuid


class DueItem(Struct, kw_only=True):
    """A registered customer not filed yet (备案), with its deadline."""

    id: str
    name: str
    customer_type: str
    source: str
    intention: bool
    agency: bool
    mobile: str | None
    branch: str | None
    department: str | None
    owner_id: str | None
    registered_at: datetime
    filing_status: str
    filing_deadline: datetime
    overdue: bool
    due_soon: bool
    """The deadline ends within the next working day."""


class DuePage(Struct, kw_only=True):
    items: list[DueItem]
    next_cursor: str | None


class MergeRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    """Merge `absorbed_id` into the customer of the path (the survivor)."""

    absorbed_id: Uuid
    reason: Literal["duplicate", "same_person", "other"] = "duplicate"


class DuplicateOut(Struct, kw_only=True):
    id: str
    name: str
    customer_type: str
    mobile: str | None
    id_number: str | None
    branch: str | None
    owner_id: str | None
    registered_at: datetime
    by: list[str]
    """Why it may be the same customer: mobile, id_number, same_name, same_pinyin,
    similar_name."""


class DuplicateList(Struct, kw_only=True):
    items: list[DuplicateOut]
    next_cursor: str | None = None


class ImportRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    """Customers to import, each shaped like a `CustomerCreate`; `dry_run` only checks."""

    items: Annotated[list[dict[str, Any]], Meta(min_length=1, max_length=1000)]
    dry_run: bool = False


class ImportItem(Struct, kw_only=True, omit_defaults=True):
    index: int
    status: Literal["ok", "duplicate", "invalid"]
    id: str | None = None
    """The new customer's id (written, not a dry run)."""
    duplicate_of: str | None = None
    """The customer registered before (its survivor), or `item N` of this batch."""
    by: str | None = None
    field: str | None = None
    reason: str | None = None
    similar_to: list[str] = msgspec.field(default_factory=list)
    """Customers with the same (or a homophone) name: written anyway, worth a look."""


class ImportReport(Struct, kw_only=True):
    dry_run: bool
    created: int
    items: list[ImportItem]


class CollisionRun(Struct, kw_only=True):
    merged: int
    """Customers merged into an earlier registration of the same mobile number."""
    reviewed: int
    """Field decisions recorded for merged customers."""


class HandoverRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    """Hand `from_user`'s customers (all you see, or `customer_ids`) to `to_user`."""

    from_user: Uuid
    to_user: Uuid
    customer_ids: Annotated[list[Uuid], Meta(min_length=1, max_length=5000)] | None = None
    reason: Text500 | None = None
    notify: bool = True


class HandoverCustomer(Struct, kw_only=True):
    id: str
    name: str
    mobile: str | None
    phone: str | None


class KeyCustomer(Struct, kw_only=True):
    id: str
    name: str
    contacts: int


class HandoverOut(Struct, kw_only=True):
    batch_id: str
    count: int
    notify: list[HandoverCustomer]
    """Customers to tell about their new rep (phone plaintext or masked per role)."""
    needs_contacts: list[KeyCustomer]
    """Key customers with fewer than two contacts (important customers need two)."""


class HandoverEntry(Struct, kw_only=True):
    id: str
    customer_id: str
    batch_id: str
    from_user: str | None
    to_user: str
    reason: str | None
    notify: bool
    handed_by: str | None
    handed_at: datetime


class HandoverPage(Struct, kw_only=True):
    items: list[HandoverEntry]
    next_cursor: str | None


class NoticeOut(Struct, kw_only=True):
    id: str
    branch: str | None
    user_id: str | None
    kind: str
    subject_id: str | None
    message: str
    read_at: datetime | None
    created_at: datetime


class NoticePage(Struct, kw_only=True):
    items: list[NoticeOut]
    next_cursor: str | None
