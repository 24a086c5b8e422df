"""Request and response bodies of /api/v1/reports (msgspec).

Report figures are counts, money in integer fen, shares 0..1 (null when there was
nothing to judge), hours and scores rounded to 2 decimals, instants as RFC 3339 text.
The figures of each kind are documented on its service function
(server/services/reports.py, reports_work.py)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

Kind = Literal["complaints", "sla", "visits", "tickets", "reps", "sync_health"]
Period = Annotated[str, Meta(pattern=r"^\d{4}-(0[1-9]|1[0-2])$",
                             description="local month (Asia/Shanghai), YYYY-MM")]


class Report(Struct, kw_only=True):
    """A report computed now: its totals and one entry per branch in scope."""

    kind: str
    period: str
    branch: str | None
    """The branch covered; null: every branch the reader may see."""
    generated_at: str
    due_by: date
    """The 10th of the following month: when the monthly report is due."""
    total: dict[str, Any]
    branches: list[dict[str, Any]]
    reps: list[dict[str, Any]] | None = None
    """Per rep (visits: per customer owner; reps: per user), when the kind has them."""
    final: bool | None = None
    """Complaints and SLA: every 7-day deadline of the month has passed."""
    as_of: str | None = None


class IssueIn(Struct, forbid_unknown_fields=True, kw_only=True):
    """Issue (snapshot) one monthly report."""

    kind: Kind
    period: Period
    branch: Annotated[str, Meta(max_length=16)] | None = None


class Snapshot(Struct, kw_only=True):
    """An issued report: the figures as they were issued, and whether on time."""

    id: str
    kind: str
    period: str
    branch: str | None
    generated_at: datetime
    generated_by: str | None
    created_at: datetime
    """When it was first issued."""
    due_by: date
    issued_on_time: bool
    final: bool
    data: dict[str, Any]


class SnapshotPage(Struct, kw_only=True):
    items: list[Snapshot]
    next_cursor: str | None
