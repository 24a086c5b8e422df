"""The customer pyramid by class, dormant customers (静止户), and class changes with
churn (客户异动) — domain.md §10, over the customers a principal may see.

Pyramid: every live customer in scope (its current class) counted by a class column
(`customer_class`, `abc_class`, …), with the buyers and the amount of the window per
class; levels follow the order of the active scheme that sets the column (its rules,
then its default class), other classes after them, unclassified customers last.

Dormant: customers who bought before but not in the last `days` days (default 180) before
`as_of`, the most valuable (largest amount ever) first.

Changes: class changes recorded in [from, to) counted by scheme and old → new class;
churned = customers moved to `lost` by a scheme that sets `lifecycle_stage`, recovered =
moved out of `lost`; plus customers registered in the period.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select

from schema import TABLES
from schema._rules import classes_of
from server.node import Node
from server.services.analytics import (
    MAX_WINDOW_DAYS,
    Window,
    after,
    class_column,
    customers,
    days_between,
    facts,
    instant,
    live,
    names,
    next_cursor,
    per_class,
    require_analyst,
    summary_and_page,
    window,
)
from server.services.errors import FieldError
from server.services.principal import Principal
from server.services.scope import customer_scope

changes_t = TABLES["class_changes"]
schemes = TABLES["class_schemes"]
DEFAULT_DORMANT_DAYS = 180
DEFAULT_PERIOD_DAYS = 30


async def pyramid(node: Node, p: Principal, *, scheme_column: str = "customer_class",
                  window_days: int = 365, as_of: datetime | None = None) -> dict[str, Any]:
    """Customers, buyers and the window's amount per class of `scheme_column`."""
    require_analyst(p)
    column = class_column(scheme_column)
    w = window(as_of, window_days)
    f = facts(p, w, (column,), ("n", "m"))
    col = customers.c[column]
    # Customers per class: every archive in scope (across all branches the class index
    # alone answers it) less the merged-away ones (few, by the merged_into index).
    everyone = select(col, func.count()).where(customer_scope(p)).group_by(col)
    merged = select(col, func.count()).where(customer_scope(p),
                                             customers.c.merged_into > "").group_by(col)
    async with node.db.read() as conn:
        counts: dict[str | None, int] = {}
        for query, sign in ((everyone, 1), (merged, -1)):
            for cls, n in await conn.execute(query):
                counts[cls] = counts.get(cls, 0) + sign * int(n)
        classes = list(counts)
        bought = select(*per_class(f.c[column], classes, {"b": 1, "a": f.c.m})).where(
            f.c.n > 0)
        row = (await conn.execute(bought)).mappings().first() if classes else None
        sums = {cls: (int(row[f"b{i}"] or 0), int(row[f"a{i}"] or 0))
                for i, cls in enumerate(classes)} if row is not None else {}
        counts = {cls: n for cls, n in counts.items() if n > 0}
        scheme = (await conn.execute(select(schemes.c.rules, schemes.c.default_class).where(
            schemes.c.target == column, schemes.c.active))).first()
    order = classes_of(scheme.rules, scheme.default_class) if scheme is not None else []
    present = set(counts) | {cls for cls, (b, _) in sums.items() if b}
    ordered: list[str | None] = [c for c in order if c in present]
    ordered += sorted(c for c in present if c is not None and c not in order)
    if None in present:
        ordered.append(None)
    total_customers = sum(counts.values())
    total_amount = sum(a for _, a in sums.values())
    levels = []
    for cls in ordered:
        buyers, amount = sums.get(cls, (0, 0))
        count = counts.get(cls, 0)
        levels.append({
            "cls": cls, "customers": count, "buyers": buyers, "amount_fen": amount,
            "customer_share": count / total_customers if total_customers else 0.0,
            "amount_share": amount / total_amount if total_amount else 0.0,
            "avg_amount_per_buyer_fen": round(amount / buyers) if buyers else 0,
        })
    return {"as_of": w.as_of, "window_days": w.days, "scheme_column": column,
            "customers": total_customers, "amount_fen": total_amount, "levels": levels}


async def dormant(node: Node, p: Principal, *, days: int = DEFAULT_DORMANT_DAYS,
                  as_of: datetime | None = None, cursor: str | None = None,
                  limit: int = 50) -> dict[str, Any]:
    """Customers with purchases before but none in the last `days` days: how many,
    what they bought in all, and a page of them (largest amount ever first)."""
    require_analyst(p)
    if not 1 <= days <= MAX_WINDOW_DAYS:
        raise FieldError("days", f"must be between 1 and {MAX_WINDOW_DAYS}")
    w = Window(instant("as_of", as_of), days)
    f = facts(p, w, (), ("last_at", "orders", "lifetime_fen"))
    quiet = f.c.last_at < w.since
    summary = select(func.count().label("buyers"),
                     func.sum(case((quiet, 1), else_=0)).label("customers"),
                     func.sum(case((quiet, f.c.lifetime_fen), else_=0)).label("lifetime_fen"))
    page = select(f.c.id, f.c.last_at, f.c.orders, f.c.lifetime_fen).where(
        quiet, after(f.c.lifetime_fen, f.c.id, cursor)).order_by(
        f.c.lifetime_fen.desc(), f.c.id).limit(limit + 1)
    async with node.db.read() as conn:
        totals, rows = await summary_and_page(conn, summary, page)
        rows.sort(key=lambda r: (-int(r["lifetime_fen"]), r["id"]))
        shown = await names(conn, [r["id"] for r in rows[:limit]])
    total = totals[0] if totals else {}
    buyers = int(total.get("buyers") or 0)
    items = [{**shown.get(r["id"], {}), "customer_id": r["id"],
              "last_purchase_at": r["last_at"],
              "days_since_purchase": days_between(w.as_of, r["last_at"]),
              "purchases": int(r["orders"]), "lifetime_fen": int(r["lifetime_fen"])}
             for r in rows[:limit]]
    count = int(total.get("customers") or 0)
    return {"as_of": w.as_of, "days": days, "dormant": count,
            "buyers": buyers, "dormant_share": count / buyers if buyers else 0.0,
            "lifetime_fen": int(total.get("lifetime_fen") or 0), "items": items,
            "next_cursor": next_cursor(rows, limit, "lifetime_fen")}


async def changes(node: Node, p: Principal, *, from_: datetime | None = None,
                  to: datetime | None = None) -> dict[str, Any]:
    """Class changes in [from, to) by scheme and old → new class, churn and recovery."""
    require_analyst(p)
    end = instant("to", to)
    start = instant("from", from_, end - timedelta(days=DEFAULT_PERIOD_DAYS))
    if start >= end:
        raise FieldError("from", "must be before to")
    joined = changes_t.join(customers, customers.c.id == changes_t.c.customer_id)
    seen = and_(live(), customer_scope(p), changes_t.c.changed_at >= start,
                changes_t.c.changed_at < end)
    by_move = select(changes_t.c.scheme, changes_t.c.old_class, changes_t.c.new_class,
                     func.count().label("changes"),
                     func.count(changes_t.c.customer_id.distinct()).label("customers")
                     ).select_from(joined).where(seen).group_by(
        changes_t.c.scheme, changes_t.c.old_class, changes_t.c.new_class)
    lifecycle = select(schemes.c.code).where(schemes.c.target == "lifecycle_stage")

    def moved(condition: Any) -> Any:
        return select(func.count(changes_t.c.customer_id.distinct())).select_from(
            joined).where(seen, changes_t.c.scheme.in_(lifecycle), condition)

    registered = select(func.count()).where(live(), customer_scope(p),
                                            customers.c.registered_at >= start,
                                            customers.c.registered_at < end)
    async with node.db.read() as conn:
        moves = [dict(r._mapping) for r in await conn.execute(by_move)]
        churned = (await conn.execute(moved(changes_t.c.new_class == "lost"))).scalar_one()
        recovered = (await conn.execute(moved(and_(
            changes_t.c.old_class == "lost", changes_t.c.new_class.is_not(None),
            changes_t.c.new_class != "lost")))).scalar_one()
        new = (await conn.execute(registered)).scalar_one()
    moves.sort(key=lambda m: (m["scheme"], -m["changes"], m["old_class"] or "",
                              m["new_class"] or ""))
    schemes_out: dict[str, int] = {}
    for m in moves:
        schemes_out[m["scheme"]] = schemes_out.get(m["scheme"], 0) + int(m["changes"])
    return {"from": start, "to": end, "changes": sum(schemes_out.values()),
            "by_scheme": [{"scheme": s, "changes": n} for s, n in sorted(schemes_out.items())],
            "moves": [{"scheme": m["scheme"], "old_class": m["old_class"],
                       "new_class": m["new_class"], "changes": int(m["changes"]),
                       "customers": int(m["customers"])} for m in moves],
            "churned": int(churned), "recovered": int(recovered),
            "registered": int(new)}
