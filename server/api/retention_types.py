"""Request and response bodies of retention, destruction and subject access
(server/api/retention.py). Field names are the schema's column names."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from server.api.types import Uuid

Basis = Literal["retention_expired", "customer_request"]
Status = Literal["requested", "reviewed", "approved", "declined", "erased"]
Reason = Annotated[str, Meta(min_length=1, max_length=1000)]
Note = Annotated[str, Meta(max_length=500)]


class DueOut(Struct, kw_only=True):
    """An archive whose retention has run out; `destruction_status` is that of its
    latest destruction request (None: nobody asked yet)."""

    id: str
    name: str
    branch: str | None
    department: str | None
    lifecycle_stage: str | None
    relationship_ended_at: datetime | None
    retention_until: datetime
    destruction_status: str | None = None


class DuePage(Struct, kw_only=True):
    items: list[DueOut]
    next_cursor: str | None = None


class DestructionCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    """Ask for an archive's destruction: `retention_expired` (only once its retention
    has run out) or `customer_request` (erasure the customer asked for, privacy law)."""

    customer_id: Uuid
    basis: Basis
    reason: Reason


class Decision(Struct, forbid_unknown_fields=True, kw_only=True):
    """A review (department head) or an approval (general manager): `approve` false
    declines the request and ends it."""

    approve: bool
    note: Note | None = None


class DestructionOut(Struct, kw_only=True):
    id: str
    customer_id: str
    basis: str
    reason: str
    requested_by: str | None
    requested_at: datetime
    status: str
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None
    approved_by: str | None = None
    approved_at: datetime | None = None
    decision_note: str | None = None
    record_id: str | None = None
    """The destruction record, once the archive was erased."""


class DestructionPage(Struct, kw_only=True):
    items: list[DestructionOut]
    next_cursor: str | None = None


class SubjectExport(Struct, kw_only=True):
    """Everything held about one customer (data-subject access): confidential values in
    plaintext only for the classes the caller's role reads, masks otherwise."""

    customer_id: str
    merged_ids: list[str]
    generated_at: datetime
    generated_by: str
    archive: dict[str, Any]
    contacts: list[dict[str, Any]]
    visits: list[dict[str, Any]]
    complaints: list[dict[str, Any]]
    tickets: list[dict[str, Any]]
    purchases: list[dict[str, Any]]
    point_entries: list[dict[str, Any]]
    consents: dict[str, Any]
    retention: dict[str, Any]
    field_history: list[dict[str, Any]]
