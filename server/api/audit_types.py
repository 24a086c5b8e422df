"""Response bodies of the audit log (server/api/audit.py). Field names are the
schema's column names (schema/_governance.py AUDIT_LOG)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from msgspec import Struct


class AuditEntryOut(Struct, kw_only=True):
    """One entry of a node's chain: who did what, when, to which record. `detail` names
    fields and counts, never a customer's values."""

    id: str
    node_id: str
    seq: int
    branch: str | None
    at: datetime
    actor_id: str | None
    actor: str | None
    action: str
    object_table: str | None
    object_id: str | None
    customer_id: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(Struct, kw_only=True):
    items: list[AuditEntryOut]
    next_cursor: str | None


class ChainOut(Struct, kw_only=True):
    """One node's chain as checked here: `intact` when `breaks` is empty."""

    node_id: str
    branch: str | None
    entries: int
    head_seq: int
    intact: bool
    breaks: list[str]


class VerifyOut(Struct, kw_only=True):
    nodes: list[ChainOut]
