"""Request and response bodies of the complaint, ticket and price-list API
(server/api/service_desk.py). Request Structs forbid unknown fields and bound every
value, so bad input is refused before a service runs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from server.api.types import Text2000, Uuid

Instant = Annotated[datetime, Meta(tz=True)]
Required100 = Annotated[str, Meta(min_length=1, max_length=100)]
Required200 = Annotated[str, Meta(min_length=1, max_length=200)]
Required1000 = Annotated[str, Meta(min_length=1, max_length=1000)]
Required2000 = Annotated[str, Meta(min_length=1, max_length=2000)]
Required4000 = Annotated[str, Meta(min_length=1, max_length=4000)]
Fen = Annotated[int, Meta(ge=0, le=10_000_000_000)]
PositiveFen = Annotated[int, Meta(ge=1, le=10_000_000_000)]
PriceCode = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")]
Signature = Annotated[str, Meta(max_length=280_000)]
"""A PNG data URL of at most 200 KB decoded (checked by the service)."""

Demand = Literal["refund", "return", "exchange", "compensation", "criticism"]
ComplaintChannel = Literal["in_person", "phone", "letter", "email", "online", "wechat"]
ReplyChannel = Literal["written", "oral"]
TicketChannel = Literal["front_desk", "phone"]
ComplaintStatus = Literal["received", "declined", "accepted", "assigned", "investigated",
                          "reviewed", "replied", "closed", "return_visited"]
CompensationStatus = Literal["pending", "approved", "rejected"]
TicketStatus = Literal["undispatched", "dispatched", "confirmed", "done"]


# --- complaints --------------------------------------------------------------------------

class ComplaintCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    """A complaint as received; `received_at` (default now) may name an earlier receipt
    (taken on paper or offline), never a future one."""

    customer_id: Uuid
    complainant: Required100
    phone: Annotated[str, Meta(max_length=40)] | None = None
    demand: Demand
    content: Required4000
    channel: ComplaintChannel
    received_at: Instant | None = None
    major: bool = False


class Decline(Struct, forbid_unknown_fields=True, kw_only=True):
    reason: Required1000


class Assign(Struct, forbid_unknown_fields=True, kw_only=True):
    department: Annotated[str, Meta(min_length=1, max_length=64)]
    handler_id: Uuid


class Investigation(Struct, forbid_unknown_fields=True, kw_only=True):
    """The investigation report (调查报告)."""

    cause: Required2000
    course: Required4000
    responsible: Required200
    conclusion: Required2000
    countermeasures: Required2000
    prevention: Required2000


class Review(Struct, forbid_unknown_fields=True, kw_only=True):
    note: Required2000


class Reply(Struct, forbid_unknown_fields=True, kw_only=True):
    reply: Required4000
    channel: ReplyChannel


class ReturnVisit(Struct, forbid_unknown_fields=True, kw_only=True):
    satisfaction: Annotated[int, Meta(ge=1, le=5)]
    note: Text2000 | None = None


class Escalation(Struct, forbid_unknown_fields=True, kw_only=True):
    reason: Required1000


class CompensationRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    amount_fen: PositiveFen


class ComplaintOut(Struct, kw_only=True):
    """A complaint; `phone` in plaintext for roles that read it, masked otherwise;
    `overdue` and `hq_overdue` as of the moment it was read."""

    id: str
    customer_id: str
    number: str
    branch: str | None
    complainant: str
    phone: str | None
    demand: str
    content: str
    channel: str
    received_at: datetime
    deadline_at: datetime
    major: bool
    escalated_at: datetime | None
    hq_deadline_at: datetime | None
    status: str
    decline_reason: str | None
    department: str | None
    handler_id: str | None
    cause: str | None
    course: str | None
    responsible: str | None
    conclusion: str | None
    countermeasures: str | None
    prevention: str | None
    reviewed_by: str | None
    review_note: str | None
    reply: str | None
    reply_channel: str | None
    replied_at: datetime | None
    closed_at: datetime | None
    compensation_fen: int | None
    compensation_status: str | None
    compensation_approved_by: str | None
    satisfaction: int | None
    escalation_reason: str | None = None
    return_visit_note: str | None = None
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    overdue: bool
    hq_overdue: bool


class ComplaintPage(Struct, kw_only=True):
    items: list[ComplaintOut]
    next_cursor: str | None


class ComplaintStats(Struct, kw_only=True):
    """Monthly complaint statistics (投诉统计); rates are fractions (0-1), null when
    there is nothing to divide by."""

    month: str
    branch: str | None
    count: int
    by_demand: dict[str, int]
    by_channel: dict[str, int]
    majors: int
    declined: int
    closed_within_7_days: int
    closed_within_7_days_rate: float | None
    overdue: int
    hq_overdue: int
    compensation_approved_fen: int
    satisfaction_avg: float | None


# --- price list and tickets --------------------------------------------------------------

class PriceItemCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    code: PriceCode
    name: Required100
    fee_fen: Fen
    active: bool = True


class PriceItemPatch(Struct, forbid_unknown_fields=True, kw_only=True):
    name: Required100 | UnsetType = UNSET
    fee_fen: Fen | UnsetType = UNSET
    active: bool | UnsetType = UNSET


class PriceItemOut(Struct, kw_only=True):
    id: str
    code: str
    name: str
    fee_fen: int
    active: bool
    created_at: datetime
    updated_at: datetime


class PriceItemPage(Struct, kw_only=True):
    items: list[PriceItemOut]
    next_cursor: str | None


class TicketCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    customer_id: Uuid
    channel: TicketChannel
    description: Required4000
    appointment_at: Instant | None = None


class Dispatch(Struct, forbid_unknown_fields=True, kw_only=True):
    technician_id: Uuid


class Completion(Struct, forbid_unknown_fields=True, kw_only=True):
    """Finishing a job on site: the price-list item, the customer's consent (must be
    true), the customer's signature as a PNG data URL, what was done."""

    price_code: PriceCode
    consent: bool
    signature: Signature
    work_done: Required4000


class Check(Struct, forbid_unknown_fields=True, kw_only=True):
    passed: bool


class TicketOut(Struct, kw_only=True):
    """A ticket; `on_time` is whether the arrival was within 10 minutes of the
    appointment (null without both); the signature itself only on the single read."""

    id: str
    customer_id: str
    number: str
    branch: str | None
    channel: str
    description: str
    appointment_at: datetime | None
    status: str
    technician_id: str | None
    dispatched_at: datetime | None
    confirmed_at: datetime | None
    arrived_at: datetime | None
    price_code: str | None
    fee_fen: int | None
    consent: bool
    completed_at: datetime | None
    work_done: str | None
    passed: bool | None
    checked_by: str | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    on_time: bool | None
    signed: bool


class TicketDetail(TicketOut, kw_only=True):
    signature: str | None


class TicketPage(Struct, kw_only=True):
    items: list[TicketOut]
    next_cursor: str | None


class TicketStats(Struct, kw_only=True):
    """Monthly ticket figures; rates are fractions (0-1), null when nothing counts."""

    month: str
    branch: str | None
    technician_id: str | None
    total: int
    done: int
    with_appointment: int
    on_time: int
    timeliness_rate: float | None
    checked: int
    passed: int
    pass_rate: float | None
    fees_fen: int

