"""Request and response bodies of purchases, loyalty points and credit (msgspec)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from server.api.types import Text500, Uuid

Fen = Annotated[int, Meta(ge=0, le=10**13)]
PositiveFen = Annotated[int, Meta(ge=1, le=10**13)]
Points = Annotated[int, Meta(ge=1, le=10**9)]
Text1000 = Annotated[str, Meta(max_length=1000)]


class Item(Struct, forbid_unknown_fields=True, kw_only=True):
    """One line of a purchase."""

    sku: Annotated[str, Meta(min_length=1, max_length=64)]
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    qty: Annotated[int, Meta(ge=1, le=1_000_000)]
    price_fen: Fen


class PurchaseCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    """A purchase (or a shipment on credit). With items, `amount_fen` must equal the sum
    of qty × price_fen. On credit, `prepaid_fen` is what the customer paid up front and
    `credit_request_id` an approved over-limit request to ship against."""

    purchased_at: datetime
    amount_fen: PositiveFen
    items: Annotated[list[Item], Meta(max_length=200)] = msgspec.field(default_factory=list)
    on_credit: bool = False
    prepaid_fen: Fen = 0
    credit_request_id: Uuid | None = None


class PurchaseOut(Struct, kw_only=True):
    id: str
    customer_id: str
    branch: str | None
    purchased_at: datetime
    items: list[dict[str, Any]]
    amount_fen: int
    on_credit: bool
    prepaid_fen: int = 0
    points: int
    user_id: str | None
    created_at: datetime


class PurchasePage(Struct, kw_only=True):
    items: list[PurchaseOut]
    next_cursor: str | None


class PointsChange(Struct, forbid_unknown_fields=True, kw_only=True):
    """Points earned or redeemed at this store for a member card's customer id."""

    member_id: Uuid
    points: Points
    note: Text500 | None = None


class PointEntryOut(Struct, kw_only=True):
    id: str
    branch: str
    member_id: str
    delta: int
    reason: str
    note: str | None
    purchase_id: str | None
    user_id: str | None
    at: datetime
    posted_at: datetime | None
    posted_by: str | None


class PointsResult(Struct, kw_only=True):
    """`posted` false: this store does not hold the member and cannot know the balance
    (`balance` null); headquarters posts the entry when it arrives there."""

    entry: PointEntryOut
    posted: bool
    balance: int | None
    message: str


class MemberPoints(Struct, kw_only=True):
    customer_id: str
    balance: int
    """Over the archive and every archive merged into it."""
    unposted_delta: int
    """Entries this node holds that are not yet in the balance."""
    entries: list[PointEntryOut]


class NegativeBalance(Struct, kw_only=True):
    customer_id: str
    name: str
    branch: str | None
    balance: int


class LoyaltyFlags(Struct, kw_only=True):
    negative: list[NegativeBalance]
    """Members below zero after sync: flagged, never clamped."""
    stale: list[PointEntryOut]
    """Entries still unposted more than a day after they happened."""
    unknown_members: list[PointEntryOut]
    """Unposted entries whose member this node does not know (yet)."""


class Precondition(Struct, kw_only=True):
    name: str
    ok: bool
    reason: str | None


class CreditStatus(Struct, kw_only=True):
    customer_id: str
    credit_limit_fen: int | None
    preconditions: list[Precondition]
    billed_fen: int
    """Billed on credit in [window_from, window_to): the 30 days before now."""
    window_from: datetime
    window_to: datetime
    available_fen: int


class CreditCheck(Struct, forbid_unknown_fields=True, kw_only=True):
    amount_fen: PositiveFen
    prepaid_fen: Fen = 0


class CreditDecision(Struct, kw_only=True):
    """allowed, needs_approval (the regional manager 区域经理 — our `sales_director`
    role — or the general manager signs) or refused, with the reasons."""

    customer_id: str
    decision: Literal["allowed", "needs_approval", "refused"]
    reasons: list[str]
    limit_fen: int
    billed_fen: int
    available_fen: int
    amount_fen: int
    prepaid_fen: int
    over_fen: int
    approver_role: str | None


class CreditRequestCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    amount_fen: PositiveFen
    reason: Text1000 | None = None


class CreditRequestOut(Struct, kw_only=True):
    id: str
    customer_id: str
    amount_fen: int
    over_fen: int
    limit_fen: int
    reason: str | None
    requested_by: str | None
    status: str
    decided_by: str | None
    decided_at: datetime | None
    purchase_id: str | None
    created_at: datetime
    updated_at: datetime


class CreditRequestPage(Struct, kw_only=True):
    items: list[CreditRequestOut]
    next_cursor: str | None


class Preconditions(Struct, forbid_unknown_fields=True, kw_only=True):
    """Only the preconditions sent change."""

    id_copy_on_file: bool | msgspec.UnsetType = msgspec.UNSET
    contract_signed: bool | msgspec.UnsetType = msgspec.UNSET
    last_year_settled: bool | msgspec.UnsetType = msgspec.UNSET


class CreditLimitSet(Struct, forbid_unknown_fields=True, kw_only=True):
    credit_limit_fen: Fen
    reason: Annotated[str, Meta(min_length=1, max_length=500)]


class CreditLimitResult(Struct, kw_only=True):
    """`applied` at HQ; `pending` on a branch node (HQ grants `request_id`); `unchanged`."""

    customer_id: str
    credit_limit_fen: int | None
    status: Literal["applied", "pending", "unchanged"]
    request_id: str | None


class LimitRequestOut(Struct, kw_only=True):
    id: str
    row_id: str
    customer_id: str | None
    value: Any
    requested_by: str | None
    node_id: str
    status: str
    reason: str | None
    created_at: datetime
    updated_at: datetime


class LimitRequestPage(Struct, kw_only=True):
    items: list[LimitRequestOut]
    next_cursor: str | None


class LimitChange(Struct, kw_only=True):
    id: str
    old_value: Any
    new_value: Any
    changed_by: str | None
    changed_by_name: str | None
    changed_at: datetime
    node_id: str
    reason: str | None


class CreditHistory(Struct, kw_only=True):
    items: list[LimitChange]
    next_cursor: str | None
    pending: list[LimitRequestOut]
    """Limit requests from branch nodes still waiting for HQ."""
