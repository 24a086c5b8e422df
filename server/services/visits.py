"""Relationship maintenance (客户维护, domain.md §5): visit plans per class, visit
records (拜访记录, 回访, 满意度调查, 关怀), reminders of due and overdue visits,
birthdays and holidays, and the satisfaction summary with survey coverage."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import distinct, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from schema import (
    CUSTOMER_EDITORS,
    LOCAL_TZ,
    TABLES,
    clean_text,
    end_of_local_day,
    holiday_name,
    local_day,
    utcnow,
)
from schema._rules import DEFAULT_PLANS, classes_of
from server.node import Node
from server.services.classification import require_hq_reference
from server.services.errors import ConflictError, FieldError, ForbiddenError, NotFoundError
from server.services.principal import Principal
from server.services.records import customer_group, log_reads, page, show, visible_customer
from server.services.scope import customer_scope

customers = TABLES["customers"]
contacts = TABLES["contacts"]
plans = TABLES["visit_plans"]
schemes = TABLES["class_schemes"]
visits = TABLES["visits"]

KINDS = ("visit", "return_visit", "survey", "care")
SCORED = frozenset({"return_visit", "survey"})
"""Kinds that carry a satisfaction score (1-5)."""
COUNTED = ("visit", "return_visit", "survey")
"""Kinds that count as a visit for a plan; a care greeting does not."""
CARE = ("birthday", "holiday", "weather", "appreciation")
VISITORS = CUSTOMER_EDITORS | {"complaint_handler"}
TARGET_SCORE = 4
"""A satisfaction score below this asks for corrective action."""
FUTURE_SLACK = timedelta(minutes=10)
TEXTS = ("place", "content", "result", "next_step")


def _local_start(day: date) -> datetime:
    return datetime.combine(day, time(), LOCAL_TZ).astimezone(UTC)


# -- plans ----------------------------------------------------------------------------

async def _check_plan(conn: AsyncConnection, scheme: str, cls: str) -> None:
    row = (await conn.execute(select(schemes).where(schemes.c.code == scheme))).mappings().first()
    if row is None:
        raise FieldError("scheme", f"no class scheme {scheme!r}")
    allowed = classes_of(row["rules"], row["default_class"])
    if cls not in allowed:
        raise FieldError("cls", f"scheme {scheme!r} has no class {cls!r}; "
                         f"classes: {', '.join(allowed)}")


async def _check_unique(conn: AsyncConnection, scheme: str, cls: str, plan_id: str) -> None:
    other = (await conn.execute(select(plans.c.id).where(
        plans.c.scheme == scheme, plans.c.cls == cls, plans.c.active,
        plans.c.id != plan_id))).scalar()
    if other is not None:
        raise ConflictError(f"an active visit plan for {scheme}/{cls} exists ({other})")


async def list_plans(node: Node, p: Principal, scheme: str | None = None,
                     active: bool | None = None) -> list[dict[str, Any]]:
    """Visit plans (reference data everyone may read)."""
    query = select(plans).order_by(plans.c.scheme, plans.c.cls, plans.c.id)
    if scheme is not None:
        query = query.where(plans.c.scheme == scheme)
    if active is not None:
        query = query.where(plans.c.active == active)
    async with node.db.read() as conn:
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def create_plan(node: Node, p: Principal, values: dict[str, Any]) -> dict[str, Any]:
    """A visit plan for one class of one scheme (HQ only); one active plan per class."""
    require_hq_reference(node, p, "visit plans")
    row = {**values, "care": sorted(set(values.get("care") or ())),
           "active": values.get("active", True)}
    async with node.db.write(node.node_id, p.id) as uow:
        await _check_plan(uow.conn, row["scheme"], row["cls"])
        if row["active"]:
            await _check_unique(uow.conn, row["scheme"], row["cls"], "")
        return await uow.insert("visit_plans", row)


async def update_plan(node: Node, p: Principal, plan_id: str, changes: dict[str, Any]
                      ) -> dict[str, Any]:
    """Change a plan's frequency, care or whether it is active (HQ only)."""
    require_hq_reference(node, p, "visit plans")
    if "care" in changes:
        changes["care"] = sorted(set(changes["care"] or ()))
    async with node.db.write(node.node_id, p.id) as uow:
        old = await uow.get("visit_plans", plan_id)
        if old is None:
            raise NotFoundError("visit plan not found")
        merged = {**old, **changes}
        await _check_plan(uow.conn, merged["scheme"], merged["cls"])
        if merged["active"]:
            await _check_unique(uow.conn, merged["scheme"], merged["cls"], plan_id)
        return await uow.update("visit_plans", plan_id, changes)


async def install_default_plans(node: Node, p: Principal) -> int:
    """Add the default visit plans whose scheme exists and class has none; returns how
    many were added."""
    require_hq_reference(node, p, "visit plans")
    added = 0
    async with node.db.write(node.node_id, p.id) as uow:
        codes = set((await uow.conn.execute(select(schemes.c.code))).scalars())
        have = {(r.scheme, r.cls) for r in await uow.conn.execute(
            select(plans.c.scheme, plans.c.cls).where(plans.c.active))}
        for plan in DEFAULT_PLANS:
            if plan["scheme"] in codes and (plan["scheme"], plan["cls"]) not in have:
                await uow.insert("visit_plans", {**plan, "active": True})
                added += 1
    return added


# -- visit records --------------------------------------------------------------------

async def _check_related(conn: AsyncConnection, group: list[str], related_id: str) -> None:
    for table in ("complaints", "tickets", "visits"):
        t = TABLES[table]
        if (await conn.execute(select(t.c.id).where(
                t.c.id == related_id, t.c.customer_id.in_(group)))).first() is not None:
            return
    raise FieldError("related_id", "is not a complaint, ticket or visit of this customer")


async def record_visit(node: Node, p: Principal, customer_id: str, values: dict[str, Any]
                       ) -> dict[str, Any]:
    """Record a visit, return visit (回访), satisfaction survey or care contact."""
    if p.role not in VISITORS:
        raise ForbiddenError(f"a {p.role} does not record customer visits")
    kind = values["kind"]
    if kind not in KINDS:
        raise FieldError("kind", f"must be one of {', '.join(KINDS)}")
    score = values.get("satisfaction")
    if kind in SCORED and score is None:
        raise FieldError("satisfaction", f"a {kind} records the customer's score (1-5)")
    if kind not in SCORED and score is not None:
        raise FieldError("satisfaction", "only a return visit or a survey carries a score")
    if score is not None and not 1 <= score <= 5:
        raise FieldError("satisfaction", "must be 1-5")
    now = utcnow()
    at = values.get("visited_at") or now
    if at > now + FUTURE_SLACK:
        raise FieldError("visited_at", "is in the future; record a visit once it happened "
                         "and plan the next one with next_visit_on")
    next_on = values.get("next_visit_on")
    if next_on is not None and next_on <= local_day(at):
        raise FieldError("next_visit_on", "must be after the day of the visit")
    row = {k: clean_text(k, values[k]) if values.get(k) is not None else None for k in TEXTS}
    async with node.db.write(node.node_id, p.id) as uow:
        customer = await visible_customer(uow.conn, p, customer_id)
        group = await customer_group(uow.conn, customer["id"])
        if values.get("contact_id") is not None and (await uow.conn.execute(
                select(contacts.c.id).where(contacts.c.id == values["contact_id"],
                                            contacts.c.customer_id.in_(group)))).first() is None:
            raise FieldError("contact_id", "is not a contact of this customer")
        if values.get("related_id") is not None:
            await _check_related(uow.conn, group, values["related_id"])
        return await uow.insert("visits", {
            **row, "customer_id": customer["id"], "kind": kind, "visited_at": at,
            "contact_id": values.get("contact_id"), "satisfaction": score,
            "next_visit_on": next_on.isoformat() if next_on else None,
            "related_id": values.get("related_id"), "user_id": p.id,
            "branch": customer["branch"]})


async def list_visits(node: Node, p: Principal, filters: dict[str, Any], cursor: str | None,
                      limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """Visits of customers `p` may see, newest first; filters: user_id, kind, branch,
    customer_id (its absorbed archives included), from / to (local days)."""
    query = select(visits, customers.c.name.label("customer_name")).select_from(
        visits.join(customers, customers.c.id == visits.c.customer_id)).where(customer_scope(p))
    async with node.db.read() as conn:
        for key in ("user_id", "kind", "branch"):
            if filters.get(key) is not None:
                query = query.where(visits.c[key] == filters[key])
        if filters.get("customer_id") is not None:
            customer = await visible_customer(conn, p, filters["customer_id"])
            query = query.where(visits.c.customer_id.in_(
                await customer_group(conn, customer["id"])))
        if filters.get("from") is not None:
            query = query.where(visits.c.visited_at >= _local_start(filters["from"]))
        if filters.get("to") is not None:
            query = query.where(visits.c.visited_at
                                < _local_start(filters["to"] + timedelta(days=1)))
        return await page(conn, query, visits.c.id, cursor, limit)


# -- reminders ------------------------------------------------------------------------

def next_birthday(born: date, today: date) -> date:
    """The next birthday on or after `today` (29 February falls on the 28th otherwise)."""
    for year in (today.year, today.year + 1):
        try:
            day = born.replace(year=year)
        except ValueError:
            day = date(year, 2, 28)
        if day >= today:
            return day
    raise AssertionError("unreachable")


def holidays_between(first: date, last: date) -> list[tuple[date, str]]:
    """Each public holiday in [first, last] once, on its first day in that window. Days
    off moved by 调休 and observed days are part of a holiday, not one to greet for."""
    out: list[tuple[date, str]] = []
    day = first
    while day <= last:
        name = (holiday_name(day) or "").removesuffix(" (observed)")
        if name and not name.startswith("Day off") and name not in {n for _, n in out}:
            out.append((day, name))
        day += timedelta(days=1)
    return out


def _as_date(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return None  # a mask: this reader does not see birthdays


async def due_reminders(node: Node, p: Principal, days: int, cursor: str | None, limit: int,
                        today: date | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Reminders for one page of visible customers that have a visit plan for their
    class: a visit due within `days` days (or overdue), a birthday (only for roles that
    read birthdays), holidays — per the plan's care. Pages go over customers."""
    today = today or local_day(utcnow())
    horizon = today + timedelta(days=days)
    feasts = holidays_between(today, horizon)
    async with node.db.read() as conn:
        active = [(dict(r), r.target) for r in (await conn.execute(
            select(plans, schemes.c.target).join(schemes, schemes.c.code == plans.c.scheme)
            .where(plans.c.active, schemes.c.active))).mappings()]
        if not active:
            return [], None
        last = select(visits.c.customer_id,
                      func.max(visits.c.visited_at).label("last_at"),
                      func.min(visits.c.next_visit_on).label("first_next")).where(
            visits.c.kind.in_(COUNTED)).group_by(visits.c.customer_id).subquery()
        conds = []
        for plan, target in active:
            match = customers.c[target] == plan["cls"]
            care = set(plan["care"])
            if "birthday" in care or ("holiday" in care and feasts):
                conds.append(match)
                continue
            # A cheap superset in SQL; the exact due date is worked out below.
            cutoff = end_of_local_day(horizon - timedelta(days=plan["every_days"]))
            conds.append(match & or_(
                func.coalesce(last.c.last_at, customers.c.registered_at) <= cutoff,
                last.c.first_next <= horizon.isoformat()))
        targets = sorted({t for _, t in active})
        query = select(customers.c.id, customers.c.name, customers.c.branch,
                       customers.c.owner_id, customers.c.registered_at, customers.c.birthday,
                       customers.c.birthday_mask, last.c.last_at,
                       *[customers.c[t] for t in targets]).select_from(
            customers.outerjoin(last, last.c.customer_id == customers.c.id)).where(
            customer_scope(p), customers.c.merged_into.is_(None), or_(*conds))
        rows, next_cursor = await page(conn, query, customers.c.id, cursor, limit)
        promised = await _promises(conn, [r["id"] for r in rows])
        wants_birthday = [r for r in rows if any(
            r[t] == plan["cls"] and "birthday" in plan["care"] for plan, t in active)]
        audit: list[dict[str, Any]] = []
        opened = {r["id"]: _as_date(r["birthday"]) for r in await show(
            node, conn, p, "customers",
            [{"id": r["id"], "birthday": r["birthday"], "birthday_mask": r["birthday_mask"]}
             for r in wants_birthday if r["birthday"] is not None], audit)}
    items: list[dict[str, Any]] = []
    for r in rows:
        mine = [plan for plan, t in active if r[t] == plan["cls"]]
        plan = min(mine, key=lambda x: (x["every_days"], x["id"]))
        care = set().union(*(set(x["care"]) for x in mine))
        base = {"customer_id": r["id"], "customer_name": r["name"], "branch": r["branch"],
                "owner_id": r["owner_id"], "scheme": plan["scheme"], "cls": plan["cls"],
                "plan_id": plan["id"], "every_days": plan["every_days"],
                "last_visit_at": r["last_at"]}
        since = local_day(r["last_at"] or r["registered_at"])
        due = since + timedelta(days=plan["every_days"])
        promise = promised.get(r["id"])
        if promise is not None and (r["last_at"] is None or promise > local_day(r["last_at"])):
            due = min(due, promise)
        if due <= horizon:
            items.append({**base, "kind": "visit", "due_on": due, "overdue": due < today})
        born = opened.get(r["id"])
        if "birthday" in care and born is not None:
            when = next_birthday(born, today)
            if when <= horizon:
                items.append({**base, "kind": "birthday", "due_on": when, "overdue": False})
        if "holiday" in care:
            items += [{**base, "kind": "holiday", "due_on": day, "overdue": False,
                       "holiday": name} for day, name in feasts]
    shown = {i["customer_id"] for i in items if i["kind"] == "birthday"}
    await log_reads(node, p, [a for a in audit if a["customer_id"] in shown])
    return items, next_cursor


async def _promises(conn: AsyncConnection, ids: list[str]) -> dict[str, date]:
    """Per customer, the next visit agreed at the latest visit that agreed one."""
    out: dict[str, date] = {}
    if not ids:
        return out
    for r in await conn.execute(select(visits.c.customer_id, visits.c.next_visit_on).where(
            visits.c.customer_id.in_(ids), visits.c.next_visit_on.is_not(None),
            visits.c.kind.in_(COUNTED)).order_by(visits.c.visited_at)):
        out[r.customer_id] = date.fromisoformat(r.next_visit_on)
    return out


# -- satisfaction ---------------------------------------------------------------------

async def survey_summary(node: Node, p: Principal, first: date | None, last: date | None,
                         today: date | None = None, listed: int = 500) -> dict[str, Any]:
    """Scores of return visits and surveys in [first, last] (local days, default the
    last 365): count, average, share below target with the responses to act on, and
    how many visible customers were surveyed in the last 365 days (at least yearly)."""
    today = today or local_day(utcnow())
    last = last or today
    first = first or last - timedelta(days=364)
    if first > last:
        raise FieldError("from", "must not be after to")
    joined = visits.join(customers, customers.c.id == visits.c.customer_id)
    window = (customer_scope(p), visits.c.kind.in_(SCORED),
              visits.c.visited_at >= _local_start(first),
              visits.c.visited_at < _local_start(last + timedelta(days=1)))
    below = visits.c.satisfaction < TARGET_SCORE
    year_ago = _local_start(today - timedelta(days=364))
    async with node.db.read() as conn:
        count, average, low = (await conn.execute(select(
            func.count(), func.avg(visits.c.satisfaction),
            func.count().filter(below)).select_from(joined).where(*window))).one()
        acted = [dict(r) for r in (await conn.execute(select(
            visits.c.id.label("visit_id"), visits.c.customer_id, visits.c.kind,
            visits.c.satisfaction, visits.c.visited_at, visits.c.user_id, visits.c.content,
            customers.c.name.label("customer_name")).select_from(joined).where(*window, below)
            .order_by(visits.c.satisfaction, visits.c.visited_at.desc()).limit(listed)
        )).mappings()]
        visible = (await conn.execute(select(func.count()).select_from(customers).where(
            customer_scope(p), customers.c.merged_into.is_(None)))).scalar_one()
        surveyed = (await conn.execute(select(func.count(distinct(
            func.coalesce(customers.c.merged_into, customers.c.id)))).select_from(joined).where(
            customer_scope(p), visits.c.kind == "survey",
            visits.c.visited_at >= year_ago))).scalar_one()
    return {
        "from": first, "to": last, "count": int(count),
        "average": None if average is None else round(float(average), 2),
        "target": TARGET_SCORE, "below_target": int(low),
        "below_target_share": round(int(low) / int(count), 4) if count else 0.0,
        "corrective": acted, "visible_customers": int(visible),
        "surveyed_365d": int(surveyed),
        "coverage": round(int(surveyed) / int(visible), 4) if visible else 0.0,
    }
