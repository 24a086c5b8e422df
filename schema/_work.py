"""The replicated entities of everyday customer work (domain.md §3-§8).

Registration merges, handovers, classification, visits, complaints, service tickets,
purchases and loyalty, credit and reception expenses. Rows that carry `customer_id`
follow their customer to the branch that holds it (schema/_scope.py); the price list,
classification schemes and visit plans are reference data published by HQ.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Column, Integer, String, Text

from schema._policy import Entity, Field, Sensitivity, id_field, stamp_fields
from schema._types import UtcDateTime
from sync import Merge

COMPLAINT_STATES = ("received", "declined", "accepted", "assigned", "investigated",
                    "reviewed", "replied", "closed", "return_visited")
"""The complaint flow (domain.md §6), in order; `declined` ends a cycle early. Under the
`state` policy an accept made concurrently with a decline outranks it: work is kept."""

TICKET_STATES = ("undispatched", "dispatched", "confirmed", "done")
"""未派工 → 已派工未确认 → 已确认 → 已完成 (domain.md §7)."""

CREDIT_REQUEST_STATES = ("requested", "rejected", "approved", "shipped")


def _fixed(name: str, type_: Any, *, nullable: bool = True, index: bool = False) -> Field:
    """A column set when the row is created and never changed."""
    return Field(Column(name, type_, nullable=nullable, index=index), merge=Merge.IMMUTABLE)


def _customer() -> Field:
    return _fixed("customer_id", String(36), nullable=False, index=True)


# --- registration, merges, handover (§3) ---------------------------------------------

CUSTOMER_MERGES = Entity("customer_merges", (
    id_field(),
    _customer(),  # the absorbed customer: the merge follows it (and it follows the survivor)
    Field(Column("survivor_id", String(36), nullable=False, index=True),
          merge=Merge.FIRST_WRITE),
    Field(Column("reason", String(20), nullable=False), merge=Merge.FIRST_WRITE),
    Field(Column("merged_by", String(36)), merge=Merge.FIRST_WRITE),
    Field(Column("node_id", String(36), nullable=False), merge=Merge.FIRST_WRITE),
    Field(Column("merged_at", UtcDateTime(), nullable=False), merge=Merge.FIRST_WRITE),
    *stamp_fields(),
))
"""One absorbed customer and the archive it redirects to. Its id derives from the
absorbed id, so two nodes merging the same customer name one row, and the earliest
merge's survivor wins for good (`first_write`)."""

HANDOVERS = Entity("handovers", (
    id_field(),
    _customer(),
    _fixed("batch_id", String(36), nullable=False, index=True),
    _fixed("from_user", String(36), index=True),
    _fixed("to_user", String(36), nullable=False),
    _fixed("reason", String(500)),
    _fixed("notify", Boolean, nullable=False),
    _fixed("handed_by", String(36)),
    _fixed("handed_at", UtcDateTime(), nullable=False),
), append_only=True)
"""客户交接: a customer handed from one rep to another, and whether to tell them."""

NOTICES = Entity("notices", (
    id_field(),
    _fixed("branch", String(16), index=True),
    _fixed("user_id", String(36), index=True),
    _fixed("kind", String(20), nullable=False),
    _fixed("subject_id", String(36)),
    _fixed("message", String(1000), nullable=False),
    Field(Column("read_at", UtcDateTime()), history=False, conflicts=False),
    *stamp_fields(),
))
"""A message for a user of one branch (a collision 撞单 notice, a handover); it travels
to the user's branch, not with a customer the user may no longer hold."""

# --- classification (§4) ---------------------------------------------------------------

CLASS_SCHEMES = Entity("class_schemes", (
    id_field(),
    Field(Column("code", String(32), nullable=False, unique=True), merge=Merge.FIRST_WRITE),
    Field(Column("name", String(100), nullable=False)),
    Field(Column("target", String(32), nullable=False)),
    Field(Column("rules", JSON, nullable=False, default=list)),
    Field(Column("default_class", String(32))),
    Field(Column("active", Boolean, nullable=False, default=True)),
    *stamp_fields(),
))
"""A classification scheme HQ defines: ordered rules over measurable facts, each giving
a class; the first rule that matches decides. `target` is the customers column it sets."""

CLASS_OVERRIDES = Entity("class_overrides", (
    id_field(),
    _customer(),
    _fixed("scheme", String(32), nullable=False),
    Field(Column("cls", String(32))),
    Field(Column("reason", String(500))),
    Field(Column("set_by", String(36))),
    *stamp_fields(),
), keep_history=True)
"""An authorised person's class for one customer under one scheme; recomputation keeps
it while `cls` is set. Id derives from customer and scheme."""

CLASS_CHANGES = Entity("class_changes", (
    id_field(),
    _customer(),
    _fixed("scheme", String(32), nullable=False),
    _fixed("old_class", String(32)),
    _fixed("new_class", String(32)),
    _fixed("source", String(16), nullable=False),
    _fixed("reason", String(500), nullable=False),
    _fixed("changed_by", String(36)),
    _fixed("changed_at", UtcDateTime(), nullable=False),
    _fixed("node_id", String(36), nullable=False),
), append_only=True)
"""客户异动: every class change of a customer, with its reason."""

# --- visits and care (§5) --------------------------------------------------------------

VISIT_PLANS = Entity("visit_plans", (
    id_field(),
    Field(Column("scheme", String(32), nullable=False)),
    Field(Column("cls", String(32), nullable=False)),
    Field(Column("every_days", Integer, nullable=False)),
    Field(Column("care", JSON, nullable=False, default=list)),
    Field(Column("active", Boolean, nullable=False, default=True)),
    *stamp_fields(),
))
"""How often customers of one class are visited, and which care they get."""

VISITS = Entity("visits", (
    id_field(),
    _customer(),
    _fixed("contact_id", String(36)),
    _fixed("kind", String(20), nullable=False),
    _fixed("visited_at", UtcDateTime(), nullable=False),
    _fixed("place", String(200)),
    _fixed("content", String(4000)),
    _fixed("result", String(2000)),
    _fixed("next_step", String(2000)),
    _fixed("next_visit_on", String(10)),
    _fixed("satisfaction", Integer),
    _fixed("related_id", String(36), index=True),
    _fixed("user_id", String(36), index=True),
    _fixed("branch", String(16)),
    _fixed("created_at", UtcDateTime(), nullable=False),
), append_only=True)
"""拜访记录: visits, return visits (回访), satisfaction surveys and care contacts."""

# --- complaints (§6) -------------------------------------------------------------------

COMPLAINTS = Entity("complaints", (
    id_field(),
    _customer(),
    _fixed("number", String(40), nullable=False),
    _fixed("branch", String(16), index=True),
    Field(Column("complainant", String(100), nullable=False)),
    Field(Column("phone", Text), sensitivity=Sensitivity.CONFIDENTIAL),
    Field(Column("phone_mask", String(64)), history=False, conflicts=False),
    Field(Column("demand", String(20), nullable=False)),
    Field(Column("content", String(4000), nullable=False)),
    Field(Column("channel", String(20), nullable=False)),
    _fixed("received_at", UtcDateTime(), nullable=False),
    _fixed("deadline_at", UtcDateTime(), nullable=False),
    Field(Column("major", Boolean, nullable=False, default=False)),
    Field(Column("escalated_at", UtcDateTime())),
    Field(Column("escalation_reason", String(1000))),
    Field(Column("hq_deadline_at", UtcDateTime())),
    Field(Column("status", String(16), nullable=False, default="received", index=True),
          merge=Merge.STATE, states=COMPLAINT_STATES),
    Field(Column("decline_reason", String(1000))),
    Field(Column("department", String(64))),
    Field(Column("handler_id", String(36))),
    Field(Column("cause", String(2000))),
    Field(Column("course", String(4000))),
    Field(Column("responsible", String(200))),
    Field(Column("conclusion", String(2000))),
    Field(Column("countermeasures", String(2000))),
    Field(Column("prevention", String(2000))),
    Field(Column("reviewed_by", String(36))),
    Field(Column("review_note", String(2000))),
    Field(Column("reply", String(4000))),
    Field(Column("reply_channel", String(20))),
    Field(Column("replied_at", UtcDateTime())),
    Field(Column("closed_at", UtcDateTime())),
    Field(Column("compensation_fen", BigInteger)),
    Field(Column("compensation_status", String(16))),
    Field(Column("compensation_approved_by", String(36))),
    Field(Column("satisfaction", Integer)),
    Field(Column("return_visit_note", String(2000))),
    _fixed("created_by", String(36)),
    *stamp_fields(),
), keep_history=True)
"""客户投诉: one complaint and its whole flow. `received_at` and `deadline_at` are set
where it was taken, so a deadline runs from receipt, not from sync."""

# --- service tickets (§7) --------------------------------------------------------------

PRICE_ITEMS = Entity("price_items", (
    id_field(),
    Field(Column("code", String(32), nullable=False, unique=True), merge=Merge.FIRST_WRITE),
    Field(Column("name", String(100), nullable=False)),
    Field(Column("fee_fen", BigInteger, nullable=False)),
    Field(Column("active", Boolean, nullable=False, default=True)),
    *stamp_fields(),
))
"""The service price list (收费标准)."""

TICKETS = Entity("tickets", (
    id_field(),
    _customer(),
    _fixed("number", String(40), nullable=False),
    _fixed("branch", String(16), index=True),
    Field(Column("channel", String(20), nullable=False)),
    Field(Column("description", String(4000), nullable=False)),
    Field(Column("appointment_at", UtcDateTime())),
    Field(Column("status", String(16), nullable=False, default="undispatched", index=True),
          merge=Merge.STATE, states=TICKET_STATES),
    Field(Column("technician_id", String(36), index=True)),
    Field(Column("dispatched_at", UtcDateTime())),
    Field(Column("confirmed_at", UtcDateTime())),
    Field(Column("arrived_at", UtcDateTime())),
    Field(Column("price_code", String(32))),
    Field(Column("fee_fen", BigInteger)),
    Field(Column("consent", Boolean, nullable=False, default=False)),
    Field(Column("signature", Text), history=False),
    Field(Column("completed_at", UtcDateTime())),
    Field(Column("work_done", String(4000))),
    Field(Column("passed", Boolean)),
    Field(Column("checked_by", String(36))),
    _fixed("created_by", String(36)),
    *stamp_fields(),
), keep_history=True)
"""报修 / 维修单: a service ticket from request to completion."""

# --- purchases, loyalty, credit, reception (§5, §8) ------------------------------------

PURCHASES = Entity("purchases", (
    id_field(),
    _customer(),
    _fixed("branch", String(16), index=True),
    _fixed("purchased_at", UtcDateTime(), nullable=False),
    _fixed("items", JSON, nullable=False),
    _fixed("amount_fen", BigInteger, nullable=False),
    _fixed("on_credit", Boolean, nullable=False),
    Field(Column("prepaid_fen", BigInteger, nullable=False, default=0),
          merge=Merge.IMMUTABLE),
    _fixed("points", BigInteger, nullable=False),
    _fixed("user_id", String(36)),
    _fixed("created_at", UtcDateTime(), nullable=False),
), append_only=True,
    # Analytics (RFM, 80/20, CLV) read each customer's purchases over a period: covering.
    extra_indexes=(("customer_id", "purchased_at", "amount_fen"),))
"""A purchase (or a shipment on credit, with what was prepaid of it): store, date,
items, amount."""

POINT_ENTRIES = Entity("point_entries", (
    id_field(),
    _fixed("branch", String(16), nullable=False, index=True),
    _fixed("member_id", String(36), nullable=False, index=True),
    _fixed("delta", BigInteger, nullable=False),
    _fixed("reason", String(20), nullable=False),
    _fixed("note", String(500)),
    _fixed("purchase_id", String(36)),
    _fixed("user_id", String(36)),
    _fixed("at", UtcDateTime(), nullable=False),
    Field(Column("posted_at", UtcDateTime()), merge=Merge.FIRST_WRITE),
    Field(Column("posted_by", String(36)), merge=Merge.FIRST_WRITE),
    *stamp_fields(),
))
"""The loyalty ledger (积分): one earn or redemption at the store where it happened
(`branch`), for the member `member_id` (a customer id, from the member card), which
need not be a customer that store holds. The balance is the customer's `points`
counter; an entry is *posted* (added to that counter) exactly once, in the same
transaction that sets `posted_at`: at once by a node that holds the customer,
otherwise by HQ when the entry reaches it. Rows travel with their store."""

CREDIT_REQUESTS = Entity("credit_requests", (
    id_field(),
    _customer(),
    _fixed("amount_fen", BigInteger, nullable=False),
    _fixed("over_fen", BigInteger, nullable=False),
    _fixed("limit_fen", BigInteger, nullable=False),
    _fixed("reason", String(1000)),
    _fixed("requested_by", String(36)),
    Field(Column("status", String(16), nullable=False, default="requested"),
          merge=Merge.STATE, states=CREDIT_REQUEST_STATES),
    Field(Column("decided_by", String(36))),
    Field(Column("decided_at", UtcDateTime())),
    Field(Column("purchase_id", String(36))),
    *stamp_fields(),
))
"""An over-limit shipment waiting for the regional manager's signature (domain.md §8)."""

RECEPTION_EXPENSES = Entity("reception_expenses", (
    id_field(),
    _customer(),
    _fixed("reception_class", String(1), nullable=False),
    _fixed("guests", Integer, nullable=False),
    _fixed("companions", Integer, nullable=False),
    _fixed("amount_fen", BigInteger, nullable=False),
    _fixed("spent_on", String(10), nullable=False),
    _fixed("purpose", String(500)),
    _fixed("user_id", String(36)),
    _fixed("branch", String(16)),
    _fixed("created_at", UtcDateTime(), nullable=False),
), append_only=True)
"""招待费: a reception for a registered customer within its class's caps."""

WORK_ENTITIES: tuple[Entity, ...] = (
    CUSTOMER_MERGES, HANDOVERS, NOTICES, CLASS_SCHEMES, CLASS_OVERRIDES, CLASS_CHANGES,
    VISIT_PLANS, VISITS, COMPLAINTS, PRICE_ITEMS, TICKETS, PURCHASES, POINT_ENTRIES,
    CREDIT_REQUESTS, RECEPTION_EXPENSES,
)
WORK_REFERENCE = frozenset({"class_schemes", "visit_plans", "price_items"})
WORK_BY_BRANCH = frozenset({"notices", "point_entries"})
WORK_CHILDREN = frozenset(e.table for e in WORK_ENTITIES) - WORK_REFERENCE - WORK_BY_BRANCH
