"""Analytics (domain.md §10): what the customer base looks like in numbers.

Everything here is computed by the database: one GROUP BY over `purchases` gives each
customer's facts, window functions rank them, and only summaries and one page of rows
come back to Python — never every customer or every purchase. HQ computes across
branches; a branch node, or a user limited to a branch or department
(`customer_scope`), sees only its own customers.

The shared core lives here: who may read analytics, the analysis window, the per-customer
purchase facts, and one statement that returns a summary together with a page.
The analyses themselves are in `analytics_rfm` (RFM, the 80/20 curve, lifetime value),
`analytics_base` (pyramid, dormant customers, class changes and churn) and
`analytics_households` (归户).

Merged customers: a merged-away archive is never counted itself; its purchases count for
the live archive it was merged into (following chains of merges), as everywhere else in
Branchline. Customers caught in a merge cycle (two nodes merged each into the other, not
yet settled) are left out until the merge settles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    SelectBase,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from schema import TABLES, utcnow
from server.services.errors import FieldError, ForbiddenError
from server.services.principal import Principal
from server.services.scope import customer_scope

customers = TABLES["customers"]
purchases = TABLES["purchases"]

ANALYSTS = frozenset({"general_manager", "sales_director", "dept_manager", "archive_clerk",
                      "finance", "auditor"})
"""Roles that read analytics: aggregates and customer ids and names, never secrets."""

CLASS_COLUMNS = ("customer_class", "abc_class", "lifecycle_stage", "value_class",
                 "credit_class")
"""The customers columns a class scheme sets (schema/_rules.py TARGETS)."""

MAX_WINDOW_DAYS = 3650
MAX_MERGE_DEPTH = 32
"""Longest chain of merges followed (a chain is normally one or two long)."""


def require_analyst(p: Principal) -> None:
    """Refuse roles that do not read analytics."""
    if p.role not in ANALYSTS:
        raise ForbiddenError(f"a {p.role} cannot read analytics; ask the general manager, "
                             "a sales director or a department manager")


@dataclass(frozen=True)
class Window:
    """The analysis window: purchases before `as_of`, the last `days` of them "recent"."""

    as_of: datetime
    days: int

    @property
    def since(self) -> datetime:
        return self.as_of - timedelta(days=self.days)


def instant(name: str, value: datetime | None, default: datetime | None = None) -> datetime:
    """A query instant: timezone-aware (RFC 3339 with offset), or `default` (now)."""
    if value is None:
        return default or utcnow()
    if value.tzinfo is None:
        raise FieldError(name, "must be an instant with its offset (RFC 3339)")
    return value


def window(as_of: datetime | None, days: int, name: str = "window_days") -> Window:
    """Check and build the analysis window (FieldError → 422 naming the bad parameter)."""
    if not 1 <= days <= MAX_WINDOW_DAYS:
        raise FieldError(name, f"must be between 1 and {MAX_WINDOW_DAYS} days")
    return Window(instant("as_of", as_of), days)


def class_column(name: str) -> str:
    """A customers class column by name, or FieldError."""
    if name not in CLASS_COLUMNS:
        raise FieldError("scheme_column", f"must be one of {', '.join(CLASS_COLUMNS)}")
    return name


def live() -> ColumnElement[bool]:
    """Customers that were not merged into another archive."""
    return _unmerged(customers)


def _unmerged(table: Any) -> ColumnElement[bool]:
    # Not `merged_into IS NULL`: SQLite would answer that from the merged_into index and
    # walk every live customer first; this form leaves the join order to the other side.
    return func.coalesce(table.c.merged_into, "") == ""


def merge_roots() -> CTE:
    """(id, root): every merged-away customer and the live archive its merges end at.
    Small: it starts from the merged customers (`merged_into > ''` is a range of the
    merged_into index) and follows each chain by primary key."""
    chain = select(customers.c.id, customers.c.merged_into.label("root"),
                   literal(1).label("depth")).where(
        customers.c.merged_into > "").cte("merge_chain", recursive=True)
    up = customers.alias("up")
    chain = chain.union_all(
        select(chain.c.id, up.c.merged_into, chain.c.depth + 1)
        .select_from(chain.join(up, up.c.id == chain.c.root))
        .where(up.c.merged_into.is_not(None), chain.c.depth < MAX_MERGE_DEPTH))
    alive = customers.alias("alive")
    return select(chain.c.id, chain.c.root).select_from(
        chain.join(alive, alive.c.id == chain.c.root)).where(_unmerged(alive)).cte(
        "merge_roots")


def _int(expr: Any) -> ColumnElement[int]:
    # PostgreSQL sums bigints as numeric; keep every figure an integer.
    return cast(func.coalesce(expr, 0), BigInteger)


FIGURES = ("last_at", "orders", "lifetime_fen", "n", "m")


def _sums(source: Any, w: Window, figures: Sequence[str]) -> list[Any]:
    """The purchase aggregates `figures` of `source` (purchases)."""
    recent = source.c.purchased_at >= w.since
    every = {"last_at": func.max(source.c.purchased_at),
             "orders": _int(func.count()),
             "lifetime_fen": _int(func.sum(source.c.amount_fen)),
             "n": _int(func.sum(case((recent, 1), else_=0))),
             "m": _int(func.sum(case((recent, source.c.amount_fen), else_=0)))}
    return [every[f].label(f) for f in figures]


def facts(p: Principal, w: Window, columns: Sequence[str] = (),
          figures: Sequence[str] = FIGURES) -> CTE:
    """Per live customer in `p`'s scope who bought before `w.as_of`: the `figures` asked
    for — `last_at` (last purchase), `orders` and `lifetime_fen` (all purchases before
    as_of), `n` and `m` (purchases and amount in the window) — and the customers
    `columns` asked for. (Each figure left out saves work on every purchase.)

    Across all branches: one GROUP BY over purchases in customer_id order, joined to
    customers by primary key in that same order (no sort). Within a branch or a
    department: that scope's customers first, each one's purchases by the customer_id
    index. Purchases of merged-away archives are summed apart (few) and added to their
    survivors."""
    extra = [customers.c[c] for c in columns]
    visible = (_unmerged(customers), customer_scope(p))
    before = purchases.c.purchased_at < w.as_of
    roots = merge_roots()
    absorbed = select(roots.c.root.label("id"), *_sums(purchases, w, figures)).select_from(
        roots.join(purchases, purchases.c.customer_id == roots.c.id)).where(before).group_by(
        roots.c.root).cte("absorbed")
    if p.hq_wide:
        bought = select(purchases.c.customer_id.label("id"), *_sums(purchases, w, figures)
                        ).where(before).group_by(purchases.c.customer_id).cte(
            "bought").prefix_with("NOT MATERIALIZED")
        own = select(customers.c.id, *extra, *[bought.c[f] for f in figures]).select_from(
            bought.join(customers, customers.c.id == bought.c.id)).where(*visible)
    else:
        own = select(customers.c.id, *extra, *_sums(purchases, w, figures)).select_from(
            customers.join(purchases, purchases.c.customer_id == customers.c.id)).where(
            *visible, before).group_by(customers.c.id, *extra)
    mine, a = own.cte("own"), absorbed

    def combined(f: str) -> Any:
        if f == "last_at":
            return case((or_(a.c.last_at.is_(None), mine.c.last_at >= a.c.last_at),
                         mine.c.last_at), else_=a.c.last_at).label(f)
        return (mine.c[f] + func.coalesce(a.c[f], 0)).label(f)

    with_own = select(mine.c.id, *[mine.c[c] for c in columns],
                      *[combined(f) for f in figures]).select_from(
        mine.outerjoin(a, a.c.id == mine.c.id))
    none_own = ~select(purchases.c.id).where(purchases.c.customer_id == a.c.id,
                                             before).exists()
    only_absorbed = select(customers.c.id, *extra, *[a.c[f] for f in figures]).select_from(
        a.join(customers, customers.c.id == a.c.id)).where(*visible, none_own)
    return with_own.union_all(only_absorbed).cte("facts")


# -- per class, without sorting every customer -----------------------------------------

async def classes_present(conn: AsyncConnection, column: str) -> list[str | None]:
    """The values `column` holds (from its index alone, no table rows)."""
    col = customers.c[column]
    return [r[0] for r in await conn.execute(select(col).group_by(col))]


def per_class(cls_col: Any, classes: Sequence[str | None],
              figures: dict[str, Any]) -> list[Any]:
    """Conditional sums of `figures` (label -> value, 1 to count) for each class, in one
    row: a handful of classes makes this one pass with no GROUP BY sort."""
    cols = []
    for i, cls in enumerate(classes):
        match = cls_col.is_(None) if cls is None else cls_col == cls
        cols += [_int(func.sum(case((match, value), else_=0))).label(f"{label}{i}")
                 for label, value in figures.items()]
    return cols


# -- lists ordered by an amount, with keyset cursors -----------------------------------

def after(value: Any, id_col: Any, cursor: str | None) -> ColumnElement[bool]:
    """Rows after `cursor` in the order (value descending, id ascending)."""
    if cursor is None:
        return literal(True)
    amount, _, last_id = cursor.partition(":")
    try:
        bound = int(amount)
    except ValueError:
        raise FieldError("cursor", "not a cursor of this list") from None
    if not last_id:
        raise FieldError("cursor", "not a cursor of this list")
    return or_(value < bound, and_(value == bound, id_col > last_id))


def next_cursor(rows: list[dict[str, Any]], limit: int, value: str) -> str | None:
    """The cursor after the last row shown, if a further row was fetched."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return f"{int(last[value])}:{last['id']}"


async def summary_and_page(conn: AsyncConnection, summary: SelectBase, page: SelectBase
                           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run a summary and a page over the same CTEs as ONE statement (UNION ALL), so the
    database computes the shared facts once (a CTE used twice is materialised by both
    SQLite and PostgreSQL). Page rows come back in no particular order: sort them."""
    s, q = summary.subquery("summary"), page.subquery("page")

    def side(sub: Any, kind: str) -> Any:
        cols: list[Any] = [literal_column(f"'{kind}'").label("kind")]
        for prefix, part in (("s", s), ("p", q)):
            cols += [(c if part is sub else type_coerce(null(), c.type)).label(
                f"{prefix}_{i}") for i, c in enumerate(part.c)]
        return select(*cols).select_from(sub)

    s_names = [c.key for c in s.c]
    p_names = [c.key for c in q.c]
    both = side(s, "s").union_all(side(q, "p"))
    out_s: list[dict[str, Any]] = []
    out_p: list[dict[str, Any]] = []
    for row in await conn.execute(both):
        values = tuple(row)
        if values[0] == "s":
            out_s.append(dict(zip(s_names, values[1:1 + len(s_names)], strict=True)))
        else:
            out_p.append(dict(zip(p_names, values[1 + len(s_names):], strict=True)))
    return out_s, out_p


async def names(conn: AsyncConnection, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Name, branch and class of a page of customers (no confidential field)."""
    if not ids:
        return {}
    rows = await conn.execute(select(
        customers.c.id, customers.c.name, customers.c.branch, customers.c.department,
        customers.c.customer_class).where(customers.c.id.in_(ids)))
    return {r.id: dict(r._mapping) for r in rows}


def days_between(later: datetime, earlier: datetime) -> int:
    """Whole days from `earlier` to `later`."""
    return max(0, (later - earlier).days)
