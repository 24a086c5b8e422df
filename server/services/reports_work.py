"""The monthly reports on everyday work (domain.md §10): visit coverage against plan,
service-ticket timeliness and pass rates, rep performance, and sync health across
branches. Shapes and scope are those of `server.services.reports`; every figure is
an aggregate in SQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from schema import TABLES, utcnow
from server.node import Node
from server.services.reports import (
    grouped,
    num,
    period_range,
    rate,
    seconds_between,
    shape,
)
from server.services.tickets import LATE_TOLERANCE
from server.services.visits import COUNTED

customers = TABLES["customers"]
visits = TABLES["visits"]
plans = TABLES["visit_plans"]
schemes = TABLES["class_schemes"]
tickets = TABLES["tickets"]
complaints = TABLES["complaints"]
users = TABLES["users"]
conflicts = TABLES["conflicts"]

REP_ROLES = ("sales_rep",)
"""Roles listed in rep performance even in a month without any activity."""
TARGETS = None
"""There are no sales or activity targets in the data model yet: rep performance
reports `target: null` rather than inventing one."""
_EPSILON = 0.001  # julianday arithmetic on SQLite is exact to well under a millisecond


# -- visit coverage ----------------------------------------------------------------------

async def visit_report(conn: AsyncConnection, period: str, branch: str | None
                       ) -> dict[str, Any]:
    """Visit coverage against plan: customers *due* a visit in the month by their
    class's plan (the last counted visit before the month, or registration, plus the
    plan's interval falls on or before the month's last day — earlier overdue
    customers included) against those of them actually visited in the month; per
    branch and per rep (the customer's owner). Also visits recorded in the month."""
    start, end = period_range(period)
    active = (await conn.execute(
        select(plans.c.cls, plans.c.every_days, schemes.c.target)
        .join(schemes, schemes.c.code == plans.c.scheme)
        .where(plans.c.active, schemes.c.active))).all()
    before = (select(visits.c.customer_id, func.max(visits.c.visited_at).label("last_at"))
              .where(visits.c.kind.in_(COUNTED), visits.c.visited_at < start)
              .group_by(visits.c.customer_id).subquery())
    within = (select(visits.c.customer_id)
              .where(visits.c.kind.in_(COUNTED), visits.c.visited_at >= start,
                     visits.c.visited_at < end)
              .group_by(visits.c.customer_id).subquery())
    since = func.coalesce(before.c.last_at, customers.c.registered_at)
    # Due on or before the last local day of the month ⇔ since < end - every_days
    # (`end` is local midnight; Asia/Shanghai has no daylight saving).
    due = or_(*[and_(customers.c[r.target] == r.cls, since < end - timedelta(days=r.every_days))
                for r in active]) if active else customers.c.id.is_(None)
    source = (customers.outerjoin(before, before.c.customer_id == customers.c.id)
              .outerjoin(within, within.c.customer_id == customers.c.id))
    where: list[Any] = [customers.c.merged_into.is_(None), customers.c.registered_at < end, due]
    if branch is not None:
        where.append(customers.c.branch == branch)
    cols = [func.count().label("customers_due"),
            func.count(within.c.customer_id).label("customers_visited")]
    total, per = await grouped(conn, cols, source, where, customers.c.branch)
    owners = [dict(r) for r in (await conn.execute(
        select(customers.c.owner_id, customers.c.branch, *cols).select_from(source)
        .where(*where).group_by(customers.c.owner_id, customers.c.branch)
        .order_by(customers.c.branch, customers.c.owner_id))).mappings()]
    recorded_where: list[Any] = [visits.c.kind.in_(COUNTED), visits.c.visited_at >= start,
                                 visits.c.visited_at < end]
    if branch is not None:
        recorded_where.append(visits.c.branch == branch)
    rec_total, rec_per = await grouped(
        conn, [func.count().label("visits_recorded")], visits, recorded_where, visits.c.branch)
    recorded = {r["branch"]: num(r["visits_recorded"]) for r in rec_per}
    names = await _names(conn, [r["owner_id"] for r in owners])

    def figures(row: dict[str, Any]) -> dict[str, Any]:
        d, v = num(row["customers_due"]), num(row["customers_visited"])
        return {"customers_due": d, "customers_visited": v, "coverage_rate": rate(v, d)}

    codes = sorted({r["branch"] for r in per} | set(recorded), key=lambda x: x or "")
    by = {r["branch"]: r for r in per}
    zero = {"customers_due": 0, "customers_visited": 0}
    return shape("visits", period, branch,
                 {**figures(total), "visits_recorded": num(rec_total["visits_recorded"]),
                  "plans": len(active)},
                 [{"branch": code, **figures(by.get(code, zero)),
                   "visits_recorded": recorded.get(code, 0)} for code in codes],
                 reps=[{"user_id": r["owner_id"], **names.get(r["owner_id"], {}),
                        "branch": r["branch"], **figures(r)} for r in owners])


async def _names(conn: AsyncConnection, ids: list[str | None]) -> dict[str | None, dict[str, Any]]:
    """Username, display name and role of the users `ids` (one small query)."""
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    return {r.id: {"username": r.username, "display_name": r.display_name, "role": r.role}
            for r in await conn.execute(select(
                users.c.id, users.c.username, users.c.display_name, users.c.role)
                .where(users.c.id.in_(wanted)))}


# -- service tickets ---------------------------------------------------------------------

async def ticket_report(conn: AsyncConnection, period: str, branch: str | None
                        ) -> dict[str, Any]:
    """Service tickets taken in the month: how many, done; timeliness (及时率): the
    technician arrived no more than 10 minutes after the appointment, among tickets
    with an appointment reached or whose tolerance has passed (never came = late);
    pass rate (合格率): passed among the spot-checked; fees charged (fen)."""
    start, end = period_range(period)
    t = tickets.c
    now = utcnow()
    judged = and_(t.appointment_at.is_not(None), or_(
        t.arrived_at.is_not(None), t.appointment_at < now - LATE_TOLERANCE))
    late_by = seconds_between(conn, t.appointment_at, t.arrived_at)
    on_time = and_(t.arrived_at.is_not(None), t.appointment_at.is_not(None),
                   late_by <= LATE_TOLERANCE.total_seconds() + _EPSILON)
    cols = [func.count().label("total"),
            func.count().filter(t.status == "done").label("done"),
            func.count().filter(judged).label("with_appointment"),
            func.count().filter(on_time).label("on_time"),
            func.count().filter(t.passed.is_not(None)).label("checked"),
            func.count().filter(t.passed.is_(True)).label("passed"),
            func.sum(func.coalesce(t.fee_fen, 0)).filter(t.status == "done").label("fees_fen")]
    where: list[Any] = [t.created_at >= start, t.created_at < end]
    if branch is not None:
        where.append(t.branch == branch)
    total, per = await grouped(conn, cols, tickets, where, t.branch)

    def figures(row: dict[str, Any]) -> dict[str, Any]:
        out = {k: num(row[k]) for k in ("total", "done", "with_appointment", "on_time",
                                        "checked", "passed", "fees_fen")}
        return {**out, "timeliness_rate": rate(out["on_time"], out["with_appointment"]),
                "pass_rate": rate(out["passed"], out["checked"])}

    return shape("tickets", period, branch, figures(total),
                 [{"branch": r["branch"], **figures(r)} for r in per])


# -- rep performance ---------------------------------------------------------------------

async def rep_report(conn: AsyncConnection, period: str, branch: str | None
                     ) -> dict[str, Any]:
    """Per rep in the month: visits recorded (visits, return visits, surveys), new
    customers (registered in the month and owned by them), complaints closed as their
    handler, tickets completed as technician; `target` is null (no targets exist).
    Every active sales rep of the scope is listed, idle ones with zeros."""
    start, end = period_range(period)
    counts: dict[str, dict[str, int]] = {}

    async def add(metric: str, who: Any, table: Any, *where: Any) -> None:
        query = select(who.label("user_id"), func.count().label("n")).select_from(table).where(
            who.is_not(None), *where)
        if branch is not None:
            query = query.where(table.c.branch == branch)
        for r in await conn.execute(query.group_by(who)):
            counts.setdefault(r.user_id, {})[metric] = int(r.n)

    await add("visits", visits.c.user_id, visits, visits.c.kind.in_(COUNTED),
              visits.c.visited_at >= start, visits.c.visited_at < end)
    await add("new_customers", customers.c.owner_id, customers,
              customers.c.merged_into.is_(None), customers.c.registered_at >= start,
              customers.c.registered_at < end)
    await add("complaints_closed", complaints.c.handler_id, complaints,
              complaints.c.closed_at >= start, complaints.c.closed_at < end)
    await add("tickets_done", tickets.c.technician_id, tickets, tickets.c.status == "done",
              tickets.c.completed_at >= start, tickets.c.completed_at < end)
    idle = select(users.c.id).where(users.c.active.is_(True), users.c.role.in_(REP_ROLES))
    if branch is not None:
        idle = idle.where(users.c.branch == branch)
    for user_id in (await conn.execute(idle)).scalars():
        counts.setdefault(user_id, {})
    people = {r.id: r for r in await conn.execute(select(
        users.c.id, users.c.username, users.c.display_name, users.c.role, users.c.branch)
        .where(users.c.id.in_(sorted(counts))))} if counts else {}
    metrics = ("visits", "new_customers", "complaints_closed", "tickets_done")
    reps: list[dict[str, Any]] = []
    for user_id, got in counts.items():
        who = people.get(user_id)
        reps.append({"user_id": user_id, "username": who.username if who else None,
                     "display_name": who.display_name if who else None,
                     "role": who.role if who else None, "branch": who.branch if who else None,
                     **{m: got.get(m, 0) for m in metrics}, "target": TARGETS,
                     "attainment": None})
    reps.sort(key=lambda r: (r["branch"] or "", r["username"] or "", r["user_id"]))
    per: dict[str | None, dict[str, Any]] = {}
    for r in reps:
        # Scoped to one branch, all counted activity happened there, whoever did it.
        home = branch if branch is not None else r["branch"]
        entry = per.setdefault(home, {"branch": home, "reps": 0,
                                             **{m: 0 for m in metrics}})
        entry["reps"] += 1
        for m in metrics:
            entry[m] += r[m]
    total: dict[str, Any] = {"reps": len(reps), **{m: sum(r[m] for r in reps) for m in metrics},
             "target": TARGETS}
    return shape("reps", period, branch, total,
                 [per[k] for k in sorted(per, key=lambda x: x or "")], reps=reps)


# -- sync health -------------------------------------------------------------------------

def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


async def sync_health_report(node: Node, period: str, branch: str | None) -> dict[str, Any]:
    """Sync health as of now, per branch: last sync, changes waiting to go out, open
    conflicts, quarantined changes, the last error. At headquarters, from its record of
    every enrolled branch node (`services.sync.health`); on a branch node, from its own
    link to headquarters (`services.upstream.status`)."""
    from server.services import nodes as node_service
    from server.services import sync as sync_service
    from server.services import upstream

    async with node.db.read() as conn:
        query = (select(conflicts.c.branch, func.count().label("n"))
                 .where(conflicts.c.status == "open").group_by(conflicts.c.branch))
        open_by = {r.branch: int(r.n) for r in await conn.execute(query)}
    per: dict[str | None, dict[str, Any]] = {}
    if node.role != "hq":
        s = await upstream.status(node)
        per[s["branch"]] = {"branch": s["branch"], "nodes": 1, "last_sync": _iso(s["last_sync"]),
                            "pending_outbound": s["pending_outbound"],
                            "open_conflicts": s["open_conflicts"],
                            "quarantined": s["quarantined"], "last_error": s["last_error"]}
    else:
        peers = await sync_service.health(node, await node_service.list_nodes(node))
        for peer in peers:
            if peer["revoked"] or peer["kind"] != "branch":
                continue
            entry = per.setdefault(peer["branch"], {
                "branch": peer["branch"], "nodes": 0, "last_sync": None, "pending_outbound": 0,
                "open_conflicts": open_by.get(peer["branch"], 0), "quarantined": 0,
                "last_error": None})
            entry["nodes"] += 1
            last = _iso(peer["last_contact"])
            if last is not None and (entry["last_sync"] is None or last > entry["last_sync"]):
                entry["last_sync"] = last
            entry["pending_outbound"] += int(peer["waiting_outbound"])
            entry["quarantined"] += int(peer["quarantined"])
            entry["last_error"] = entry["last_error"] or peer["last_error"]
    rows = [per[k] for k in sorted(per, key=lambda x: x or "")
            if branch is None or k == branch]
    total = {"branches": len(rows), "nodes": sum(r["nodes"] for r in rows),
             "pending_outbound": sum(r["pending_outbound"] for r in rows),
             "open_conflicts": sum(r["open_conflicts"] for r in rows) if branch else
             sum(open_by.values()),
             "quarantined": sum(r["quarantined"] for r in rows),
             "never_synced": sum(1 for r in rows if r["last_sync"] is None)}
    return shape("sync_health", period, branch, total, rows, as_of=utcnow().isoformat())


__all__ = ["rep_report", "sync_health_report", "ticket_report", "visit_report"]
