"""Response bodies of analytics (msgspec). Money is integer fen; shares are 0..1."""

from __future__ import annotations

from datetime import datetime

from msgspec import Struct, field


class CustomerRef(Struct, kw_only=True):
    """Who a per-customer analytics row is about (never a phone or ID number)."""

    customer_id: str
    name: str | None = None
    branch: str | None = None
    department: str | None = None
    customer_class: str | None = None


class RfmSegment(Struct, kw_only=True):
    segment: str
    rule: str
    customers: int
    share: float
    monetary_fen: int
    purchases: int


class RfmCell(Struct, kw_only=True):
    """One cell of the RFM cube: customers with these three scores."""

    r: int
    f: int
    m: int
    customers: int
    monetary_fen: int
    purchases: int


class RfmCustomer(CustomerRef, kw_only=True):
    last_purchase_at: datetime
    recency_days: int
    frequency: int
    monetary_fen: int
    r: int
    f: int
    m: int
    score: str
    segment: str


class Rfm(Struct, kw_only=True):
    """RFM quintile scores (1-5) and segments of the customers in scope."""

    as_of: datetime
    window_days: int
    customers: int
    segments: list[RfmSegment]
    cube: list[RfmCell]
    items: list[RfmCustomer]
    next_cursor: str | None


class ContributionPoint(Struct, kw_only=True):
    percent: int
    customers: int
    cumulative_fen: int
    share: float


class Contribution(Struct, kw_only=True):
    """The 80/20 curve: cumulative share of the amount by top share of buyers."""

    as_of: datetime
    window_days: int
    buyers: int
    total_fen: int
    top_20_percent_fen: int
    top_20_percent_share: float
    customers_for_80_percent: int
    customers_for_80_percent_share: float
    points: list[ContributionPoint]


class PyramidLevel(Struct, kw_only=True):
    cls: str | None
    customers: int
    buyers: int
    amount_fen: int
    customer_share: float
    amount_share: float
    avg_amount_per_buyer_fen: int


class Pyramid(Struct, kw_only=True):
    """Customers and the window's amount per class, top level first."""

    as_of: datetime
    window_days: int
    scheme_column: str
    customers: int
    amount_fen: int
    levels: list[PyramidLevel]


class DormantCustomer(CustomerRef, kw_only=True):
    last_purchase_at: datetime
    days_since_purchase: int
    purchases: int
    lifetime_fen: int


class Dormant(Struct, kw_only=True):
    """静止户: bought before, nothing in the last `days` days."""

    as_of: datetime
    days: int
    dormant: int
    buyers: int
    dormant_share: float
    lifetime_fen: int
    items: list[DormantCustomer]
    next_cursor: str | None


class SchemeChanges(Struct, kw_only=True):
    scheme: str
    changes: int


class ClassMove(Struct, kw_only=True):
    scheme: str
    old_class: str | None
    new_class: str | None
    changes: int
    customers: int


class Changes(Struct, kw_only=True, rename={"from_": "from"}):
    """客户异动 in [from, to): class changes, churn (moved to lost) and recovery."""

    from_: datetime
    to: datetime
    changes: int
    by_scheme: list[SchemeChanges]
    moves: list[ClassMove]
    churned: int
    recovered: int
    registered: int


class ClvLevel(Struct, kw_only=True):
    cls: str | None
    customers: int
    purchases: int
    amount_fen: int
    avg_order_value_fen: int
    purchases_per_year: float
    avg_clv_fen: int
    total_clv_fen: int


class ClvCustomer(CustomerRef, kw_only=True):
    purchases: int
    amount_fen: int
    avg_order_value_fen: int
    purchases_per_year: float
    clv_fen: int


class Clv(Struct, kw_only=True):
    """Lifetime value = AOV × purchases per year × lifetime years × margin."""

    as_of: datetime
    window_days: int
    lifetime_years: float
    margin: float
    scheme_column: str
    overall: ClvLevel
    classes: list[ClvLevel]
    items: list[ClvCustomer]
    next_cursor: str | None


class Household(Struct, kw_only=True):
    household_id: str
    kind: str
    customer_ids: list[str]
    count: int
    names: list[str] = field(default_factory=list)
    branches: list[str] = field(default_factory=list)
    revenue_fen: int
    lifetime_fen: int


class Households(Struct, kw_only=True):
    """归户: archives of one person or organisation (confirmed, no plaintext shown)."""

    as_of: datetime
    window_days: int
    items: list[Household]
    candidate_groups_examined: int
    unverifiable: int
    next_cursor: str | None
