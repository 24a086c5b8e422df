"""Request and response bodies of classification, visits, surveys and reception
expenses (server/api/care.py). Field names are the schema's column names."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from server.api.types import Text200, Text500, Text2000, Text4000, Uuid

SchemeCode = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{1,31}$")]
ClassName = Annotated[str, Meta(min_length=1, max_length=32)]
Reason = Annotated[str, Meta(min_length=1, max_length=500)]
Number = int | float
Instant = Annotated[datetime, Meta(tz=True)]
Care = Literal["birthday", "holiday", "weather", "appreciation"]
VisitKind = Literal["visit", "return_visit", "survey", "care"]
ReceptionClass = Literal["A", "B", "C", "D"]


# -- classification -------------------------------------------------------------------

class Condition(Struct, forbid_unknown_fields=True, kw_only=True):
    """`fact op value`, e.g. `amount_365d_fen >= 10000000`; `in` / `not_in` take a list."""

    fact: Annotated[str, Meta(max_length=40)]
    op: Annotated[str, Meta(max_length=8)]
    value: Number | list[Number] | None = None


class Rule(Struct, forbid_unknown_fields=True, kw_only=True):
    """The class given when every `all` condition and (if any) one `any` condition hold."""

    cls: ClassName = msgspec.field(name="class")
    all: Annotated[list[Condition], Meta(max_length=20)] | UnsetType = UNSET
    any: Annotated[list[Condition], Meta(max_length=20)] | UnsetType = UNSET
    label: Annotated[str, Meta(max_length=100)] | UnsetType = UNSET


Rules = Annotated[list[Rule], Meta(max_length=50)]


class SchemeCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    """A classification scheme: ordered rules, first match wins, else `default_class`.
    `target` is the customers column it sets: customer_class, abc_class,
    lifecycle_stage, value_class or credit_class."""

    code: SchemeCode
    name: Annotated[str, Meta(min_length=1, max_length=100)]
    target: Annotated[str, Meta(max_length=32)]
    rules: Rules = msgspec.field(default_factory=list)
    default_class: ClassName | None = None
    active: bool = True


class SchemePatch(Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=100)] | UnsetType = UNSET
    rules: Rules | UnsetType = UNSET
    default_class: ClassName | UnsetType | None = UNSET
    active: bool | UnsetType = UNSET


class SchemeOut(Struct, kw_only=True):
    id: str
    code: str
    name: str
    target: str
    rules: list[Rule]
    default_class: str | None
    active: bool
    created_at: datetime
    updated_at: datetime


class SchemeList(Struct, kw_only=True):
    items: list[SchemeOut]
    next_cursor: str | None = None


class RecomputeOut(Struct, kw_only=True):
    scheme: str
    examined: int
    """Customers classified (overridden ones are skipped)."""
    changed: int


class OverrideIn(Struct, forbid_unknown_fields=True, kw_only=True):
    cls: ClassName
    reason: Reason


class OverrideOut(Struct, kw_only=True):
    id: str
    customer_id: str
    scheme: str
    cls: str | None
    reason: str | None
    set_by: str | None
    created_at: datetime
    updated_at: datetime


class OverrideList(Struct, kw_only=True):
    items: list[OverrideOut]
    next_cursor: str | None = None


class ClassChangeOut(Struct, kw_only=True):
    id: str
    customer_id: str
    scheme: str
    old_class: str | None
    new_class: str | None
    source: str
    """`rule` (recomputation) or `override` (set or removed by a person)."""
    reason: str
    changed_by: str | None
    changed_at: datetime
    node_id: str


class ClassChangePage(Struct, kw_only=True):
    items: list[ClassChangeOut]
    next_cursor: str | None


# -- visit plans and visits -----------------------------------------------------------

class PlanCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    scheme: SchemeCode
    cls: ClassName
    every_days: Annotated[int, Meta(ge=1, le=3650)]
    care: Annotated[list[Care], Meta(max_length=4)] = msgspec.field(default_factory=list)
    active: bool = True


class PlanPatch(Struct, forbid_unknown_fields=True, kw_only=True):
    every_days: Annotated[int, Meta(ge=1, le=3650)] | UnsetType = UNSET
    care: Annotated[list[Care], Meta(max_length=4)] | UnsetType = UNSET
    active: bool | UnsetType = UNSET


class PlanOut(Struct, kw_only=True):
    id: str
    scheme: str
    cls: str
    every_days: int
    care: list[str]
    active: bool
    created_at: datetime
    updated_at: datetime


class PlanList(Struct, kw_only=True):
    items: list[PlanOut]
    next_cursor: str | None = None


class VisitCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    """A visit record. `satisfaction` (1-5) is required for a return visit or a survey
    and refused otherwise; `contact_id` must be a contact of the customer."""

    kind: VisitKind = "visit"
    visited_at: Instant | None = None
    place: Text200 | None = None
    contact_id: Uuid | None = None
    content: Text4000 | None = None
    result: Text2000 | None = None
    next_step: Text2000 | None = None
    next_visit_on: date | None = None
    satisfaction: Annotated[int, Meta(ge=1, le=5)] | None = None
    related_id: Uuid | None = None


class VisitOut(Struct, kw_only=True):
    id: str
    customer_id: str
    customer_name: str | None = None
    kind: str
    visited_at: datetime
    place: str | None
    contact_id: str | None
    content: str | None
    result: str | None
    next_step: str | None
    next_visit_on: str | None
    satisfaction: int | None
    related_id: str | None
    user_id: str | None
    branch: str | None
    created_at: datetime


class VisitPage(Struct, kw_only=True):
    items: list[VisitOut]
    next_cursor: str | None


class DueItem(Struct, kw_only=True):
    """A reminder: `visit` (due or overdue per the plan), `birthday` or `holiday` care."""

    kind: str
    customer_id: str
    customer_name: str
    branch: str | None
    owner_id: str | None
    scheme: str
    cls: str
    plan_id: str
    every_days: int
    last_visit_at: datetime | None
    due_on: date
    overdue: bool
    holiday: str | None = None


class DuePage(Struct, kw_only=True):
    items: list[DueItem]
    next_cursor: str | None


class Corrective(Struct, kw_only=True):
    """A score below target, to be followed up."""

    visit_id: str
    customer_id: str
    customer_name: str
    kind: str
    satisfaction: int
    visited_at: datetime
    user_id: str | None
    content: str | None


class SurveySummary(Struct, kw_only=True):
    first: date = msgspec.field(name="from")
    to: date
    count: int
    average: float | None
    target: int
    below_target: int
    below_target_share: float
    corrective: list[Corrective]
    visible_customers: int
    surveyed_365d: int
    coverage: float
    """Share of visible customers surveyed in the last 365 days (goal: all, yearly)."""


# -- reception expenses ---------------------------------------------------------------

class ExpenseCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    """A reception (招待). `reception_class` defaults to the customer's A/B/C/D class."""

    guests: Annotated[int, Meta(ge=1, le=1000)]
    amount_fen: Annotated[int, Meta(ge=0, le=10_000_000_000)]
    spent_on: date
    companions: Annotated[int, Meta(ge=0, le=100)] = 0
    reception_class: ReceptionClass | None = None
    purpose: Text500 | None = None


class ExpenseOut(Struct, kw_only=True):
    id: str
    customer_id: str
    customer_name: str | None = None
    reception_class: str
    guests: int
    companions: int
    amount_fen: int
    cap_fen: int
    spent_on: str
    purpose: str | None
    user_id: str | None
    branch: str | None
    created_at: datetime


class ExpensePage(Struct, kw_only=True):
    items: list[ExpenseOut]
    next_cursor: str | None


def rules_in(rules: list[Rule]) -> list[dict[str, Any]]:
    """Rules as the JSON the scheme stores (UNSET parts left out)."""
    return [msgspec.to_builtins(r) for r in rules]
