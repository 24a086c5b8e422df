"""Request and response bodies of the HTTP API, as msgspec Structs.

Field names are the schema's column names. Request Structs forbid unknown fields and
bound every string, so bad input is refused before a service runs.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from schema import Role

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Short = Annotated[str, Meta(max_length=64)]
Code = Annotated[str, Meta(min_length=2, max_length=16)]
Text100 = Annotated[str, Meta(max_length=100)]
Text200 = Annotated[str, Meta(max_length=200)]
Text500 = Annotated[str, Meta(max_length=500)]
Text2000 = Annotated[str, Meta(max_length=2000)]
Text4000 = Annotated[str, Meta(max_length=4000)]
Phone = Annotated[str, Meta(max_length=40)]
Email = Annotated[str, Meta(max_length=254)]
IdText = Annotated[str, Meta(max_length=32)]
_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
Uuid = Annotated[str, Meta(pattern=_UUID)]
Tag = Annotated[str, Meta(min_length=1, max_length=32)]
Tags = Annotated[list[Tag], Meta(max_length=30)]
CustomValues = Annotated[dict[Annotated[str, Meta(max_length=64)], Any], Meta(max_length=100)]

CustomerType = Literal["person", "organisation"]
Source = Literal["walk_in", "call", "own_development", "referral", "agency"]
Lifecycle = Literal["potential", "new", "stable", "old", "lost"]
Secrecy = Literal["ordinary", "top_secret"]
CustomerClass = Annotated[str, Meta(max_length=32)]


class Problem(Struct, kw_only=True):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | UnsetType = UNSET


class LoginRequest(Struct, forbid_unknown_fields=True):
    username: Annotated[str, Meta(min_length=1, max_length=64)]
    password: Annotated[str, Meta(min_length=1, max_length=256)]


class UserOut(Struct, kw_only=True):
    id: str
    username: str
    display_name: str
    role: str
    branch: str | None
    department: str | None
    active: bool
    created_at: datetime


class LoginResponse(Struct, kw_only=True):
    token: str
    expires_at: datetime
    user: UserOut


class UserCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    username: Annotated[str, Meta(min_length=2, max_length=64)]
    password: Annotated[str, Meta(min_length=8, max_length=256)]
    role: Role
    display_name: Text100 | None = None
    branch: Code | None = None
    department: Short | None = None


class UserPatch(Struct, forbid_unknown_fields=True, kw_only=True):
    """A change to a user; a new role, branch, department or `active` flag ends their
    sessions and revokes their devices (they sign in again with the new rights)."""

    display_name: Text100 | UnsetType = UNSET
    role: Role | UnsetType = UNSET
    branch: Code | UnsetType | None = UNSET
    department: Short | UnsetType | None = UNSET
    active: bool | UnsetType = UNSET


class UserUpdated(Struct, kw_only=True):
    user: UserOut
    devices_revoked: list[str]


class Health(Struct, kw_only=True):
    node_id: str
    role: str
    version: str
    database: str


class RegionCreate(Struct, forbid_unknown_fields=True):
    code: Code
    name: Text100


class RegionOut(Struct, kw_only=True):
    id: str
    code: str
    name: str


class BranchCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    code: Code
    name: Text100
    region: Code | None = None
    address: Text500 | None = None


class BranchOut(Struct, kw_only=True):
    id: str
    code: str
    name: str
    region: str | None
    address: str | None
    node_id: str | None
    active: bool


class DepartmentCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    name: Short
    branch: Code | None = None


class DepartmentOut(Struct, kw_only=True):
    id: str
    name: str
    branch: str | None


class CustomFieldCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    name: Short
    label: Text100
    field_type: Literal["text", "integer", "number", "date", "boolean", "choice"]
    entity: Literal["customer"] = "customer"
    required: bool = False
    choices: Annotated[list[Text100], Meta(max_length=100)] = msgspec.field(default_factory=list)
    max_length: Annotated[int, Meta(ge=1, le=4000)] | None = None


class CustomFieldPatch(Struct, forbid_unknown_fields=True, kw_only=True):
    label: Text100 | UnsetType = UNSET
    required: bool | UnsetType = UNSET
    choices: Annotated[list[Text100], Meta(max_length=100)] | UnsetType = UNSET
    max_length: Annotated[int, Meta(ge=1, le=4000)] | UnsetType | None = UNSET
    active: bool | UnsetType = UNSET


class CustomFieldOut(Struct, kw_only=True):
    id: str
    entity: str
    name: str
    label: str
    field_type: str
    required: bool
    choices: list[str]
    max_length: int | None
    active: bool


class ContactCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    name: Text100
    department: Short | None = None
    title: Short | None = None
    mobile: Phone | None = None
    phone: Phone | None = None
    email: Email | None = None
    birthday: date | None = None
    is_primary: bool = False
    notes: Text2000 | None = None


class ContactPatch(Struct, forbid_unknown_fields=True, kw_only=True):
    name: Text100 | UnsetType = UNSET
    department: Short | UnsetType | None = UNSET
    title: Short | UnsetType | None = UNSET
    mobile: Phone | UnsetType | None = UNSET
    phone: Phone | UnsetType | None = UNSET
    email: Email | UnsetType | None = UNSET
    birthday: date | UnsetType | None = UNSET
    is_primary: bool | UnsetType = UNSET
    notes: Text2000 | UnsetType | None = UNSET


class ContactOut(Struct, kw_only=True):
    id: str
    customer_id: str
    name: str
    department: str | None
    title: str | None
    mobile: str | None
    phone: str | None
    email: str | None
    birthday: str | None
    """ISO date, or a mask for readers without the confidential key."""
    is_primary: bool
    notes: str | None
    created_at: datetime
    updated_at: datetime


class CustomerCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    """A new customer archive (客户档案)."""

    name: Name
    customer_type: CustomerType = "person"
    source: Source = "walk_in"
    enterprise_nature: Short | None = None
    supervising_unit: Text200 | None = None
    industry: Text100 | None = None
    size: Short | None = None
    address: Text500 | None = None
    mobile: Phone | None = None
    phone: Phone | None = None
    email: Email | None = None
    website: Text200 | None = None
    id_number: IdText | None = None
    org_code: IdText | None = None
    bank_account: IdText | None = None
    birthday: date | None = None
    credit_status: Short | None = None
    intention: bool = False
    agency: bool = False
    referrer_customer_id: Uuid | None = None
    referrer_user_id: Uuid | None = None
    asked_for_referrer: bool = False
    """A referral goes to the referring rep only if the customer asks for them
    (domain.md §3); otherwise to the rep registering it."""
    customer_class: CustomerClass | None = None
    lifecycle_stage: Lifecycle | None = "potential"
    tags: Tags = msgspec.field(default_factory=list)
    preferences: Text2000 | None = None
    notes: Text4000 | None = None
    branch: Code | None = None
    department: Short | None = None
    owner_id: Uuid | None = None
    registered_at: datetime | None = None
    custom: CustomValues = msgspec.field(default_factory=dict)
    secrecy: Secrecy = "ordinary"
    """`top_secret` (绝密): reading it outside one's scope needs the general manager."""
    consent_marketing: bool = False
    """The customer agreed to marketing (campaigns, marketing exports honour it)."""
    consent_sharing: bool = False
    """The customer agreed to their data being shared with third parties."""
    contacts: Annotated[list[ContactCreate], Meta(max_length=20)] = msgspec.field(
        default_factory=list
    )


class CustomerPatch(Struct, forbid_unknown_fields=True, kw_only=True):
    """Only the fields sent change; `null` clears an optional field. Ownership and
    registration time change only through a handover."""

    name: Name | UnsetType = UNSET
    customer_type: CustomerType | UnsetType = UNSET
    source: Source | UnsetType = UNSET
    enterprise_nature: Short | UnsetType | None = UNSET
    supervising_unit: Text200 | UnsetType | None = UNSET
    industry: Text100 | UnsetType | None = UNSET
    size: Short | UnsetType | None = UNSET
    address: Text500 | UnsetType | None = UNSET
    mobile: Phone | UnsetType | None = UNSET
    phone: Phone | UnsetType | None = UNSET
    email: Email | UnsetType | None = UNSET
    website: Text200 | UnsetType | None = UNSET
    id_number: IdText | UnsetType | None = UNSET
    org_code: IdText | UnsetType | None = UNSET
    bank_account: IdText | UnsetType | None = UNSET
    birthday: date | UnsetType | None = UNSET
    credit_status: Short | UnsetType | None = UNSET
    intention: bool | UnsetType = UNSET
    agency: bool | UnsetType = UNSET
    customer_class: CustomerClass | UnsetType | None = UNSET
    lifecycle_stage: Lifecycle | UnsetType | None = UNSET
    tags: Tags | UnsetType = UNSET
    preferences: Text2000 | UnsetType | None = UNSET
    notes: Text4000 | UnsetType | None = UNSET
    branch: Code | UnsetType | None = UNSET
    department: Short | UnsetType | None = UNSET
    custom: CustomValues | UnsetType = UNSET
    secrecy: Secrecy | UnsetType = UNSET
    consent_marketing: bool | UnsetType = UNSET
    consent_sharing: bool | UnsetType = UNSET
    relationship_ended_at: datetime | UnsetType | None = UNSET
    """When the relationship ended; the archive is kept 10 years after it."""


class CustomerOut(Struct, kw_only=True):
    id: str
    name: str
    customer_type: str
    source: str
    enterprise_nature: str | None
    supervising_unit: str | None
    industry: str | None
    size: str | None
    address: str | None
    mobile: str | None
    phone: str | None
    email: str | None
    website: str | None
    id_number: str | None
    org_code: str | None
    bank_account: str | None
    birthday: str | None
    """ISO date, or a mask for readers without the confidential key."""
    credit_status: str | None
    intention: bool
    agency: bool
    referrer_customer_id: str | None
    referrer_user_id: str | None
    customer_class: str | None
    lifecycle_stage: str | None
    tags: list[str]
    preferences: str | None
    notes: str | None
    branch: str | None
    department: str | None
    owner_id: str | None
    registered_at: datetime
    created_by: str | None
    custom: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    filing_status: str = "registered"
    filed_at: datetime | None = None
    filing_deadline: datetime | None = None
    """Filing (备案) is due by the end of the 5th working day after registration."""
    secrecy: str = "ordinary"
    consent_marketing: bool = False
    consent_sharing: bool = False
    consent_at: datetime | None = None
    relationship_ended_at: datetime | None = None
    retention_until: datetime | None = None
    """The end of the retention period (10 years after the relationship ended)."""
    merged_ids: list[str] = msgspec.field(default_factory=list)
    """Customers merged into this archive; their contacts and records show here, and
    asking for one of them answers with this archive."""
    contacts: list[ContactOut] | UnsetType = UNSET


class HistoryEntry(Struct, kw_only=True):
    id: str
    column_name: str
    old_value: Any
    new_value: Any
    changed_by: str | None
    changed_by_name: str | None
    changed_at: datetime
    node_id: str


class CustomerPage(Struct, kw_only=True):
    items: list[CustomerOut]
    next_cursor: str | None


class HistoryPage(Struct, kw_only=True):
    items: list[HistoryEntry]
    next_cursor: str | None


class ContactList(Struct, kw_only=True):
    items: list[ContactOut]
    next_cursor: str | None = None


T = TypeVar("T")


def to_out(row: dict[str, Any], out: type[T]) -> T:
    """Build a response Struct from a row, ignoring columns the Struct does not show."""
    return msgspec.convert(_plain(row), out, strict=False)


def _plain(value: Any) -> Any:
    # SQLAlchemy row keys are `quoted_name` (a str subclass) that msgspec refuses as keys.
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def changes(patch: Struct) -> dict[str, Any]:
    """The fields a PATCH body actually sent."""
    return {k: v for k, v in msgspec.structs.asdict(patch).items() if v is not UNSET}


def values(body: Struct, *, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A create body's fields as plain values for a service."""
    return {k: v for k, v in msgspec.structs.asdict(body).items() if k not in exclude}


class ErasureRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    """Destroying a customer's personal data: the reviewing department head (username)
    and why; the approving general manager is the caller."""

    reviewed_by: Short
    reason: Annotated[str, Meta(min_length=1, max_length=500)]


class DestructionRecord(Struct, kw_only=True):
    id: str
    customer_id: str
    reason: str
    reviewed_by: str
    approved_by: str
    erased_by: str | None
    node_id: str
    erased_at: datetime
    fields: list[str]
