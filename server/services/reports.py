"""Monthly reports (domain.md §10): complaint statistics (due by the 10th of the next
month), SLA attainment, visit coverage against plan, service-ticket timeliness and pass
rates, rep performance and sync health across branches.

Every figure is an aggregate computed in SQL (COUNT / SUM / AVG, GROUP BY branch), so a
report costs the same whether a month holds ten complaints or a million; no report
loads rows into Python. Months are local months (Asia/Shanghai).

Who reads what: the general manager, sales directors and auditors at headquarters (no
branch) read every branch, with a per-branch breakdown; branch staff who read reports
(`BRANCH_READERS`, branch set) read their own branch only — another branch's numbers
never appear in what they get (403 when they ask for one).

A report is *issued* as a snapshot row in `reports` (`issue_month`), written through the
unit of work and audited. Its id derives from kind, period and branch, so two nodes
issuing the same report name one row; issuing again is idempotent. Complaint figures
of a month are final once every complaint's 7-day deadline has passed (the 8th of the
next month): a snapshot issued earlier is refreshed in place (same id) until then, so
the statistics are ready from the 1st and exact long before the 10th.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, extract, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from schema import LOCAL_TZ, TABLES, local_day, utcnow
from server.node import Node
from server.services import audit, records
from server.services.complaints import CHANNELS, DEADLINE, DEMANDS, FINISHED, month_range
from server.services.errors import FieldError, ForbiddenError, NotFoundError
from server.services.principal import Principal

log = logging.getLogger("branchline.reports")

complaints = TABLES["complaints"]
reports = TABLES["reports"]
branches = TABLES["branches"]

KINDS = ("complaints", "sla", "visits", "tickets", "reps", "sync_health")
"""The reports there are; each is one month (sync health: as of now)."""
HQ_READERS = frozenset({"general_manager", "sales_director", "auditor"})
"""Roles that read every branch's reports when they work at headquarters (no branch)."""
BRANCH_READERS = HQ_READERS | frozenset({"dept_manager", "customer_service",
                                         "complaint_handler"})
"""Roles that read their own branch's reports (a branch manager and the service desk)."""
ISSUERS = frozenset({"general_manager", "sales_director", "dept_manager"})
"""Roles that issue a report (an auditor reads, never issues)."""
DUE_DAY = 10
"""Monthly reports are due by the 10th of the following month (domain.md §6)."""
SCHEDULED = ("complaints",)
"""What the daily schedule at headquarters issues for the previous month."""
REPORT_NS = uuid.UUID("9b7e3c52-4a1d-4f0e-8c2b-6d5a1e7f3b90")
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


# -- periods, scope, ids ------------------------------------------------------------------

def period_range(period: str) -> tuple[datetime, datetime]:
    """The UTC instants bounding local month `period` (YYYY-MM); FieldError otherwise."""
    if not isinstance(period, str) or not _PERIOD.match(period):
        raise FieldError("period", "must be YYYY-MM (a month 01-12)")
    return month_range(period)


def due_by(period: str) -> date:
    """The day a month's report is due: the 10th of the following month."""
    end = period_range(period)[1]
    following = end.astimezone(LOCAL_TZ).date()
    return following.replace(day=DUE_DAY)


def previous_period(now: datetime | None = None) -> str:
    """The local month before the one `now` (default: now) falls in."""
    first = local_day(now or utcnow()).replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


def report_id(kind: str, period: str, branch: str | None) -> str:
    """The snapshot's id: the same on every node for one kind, period and branch."""
    return str(uuid.uuid5(REPORT_NS, f"{kind}|{period}|{branch or ''}"))


def check_kind(kind: str) -> str:
    """`kind` if it names a report; FieldError otherwise (sync-health is sync_health)."""
    kind = kind.replace("-", "_")
    if kind not in KINDS:
        raise FieldError("kind", f"must be one of {', '.join(KINDS)}")
    return kind


def scope_branch(p: Principal, branch: str | None) -> str | None:
    """The branch `p` may read a report of: `branch` (None: every branch) for HQ
    readers; their own branch for branch readers, who may not name another."""
    if p.branch is None and p.role in HQ_READERS:
        return branch
    if p.role not in BRANCH_READERS:
        raise ForbiddenError(f"a {p.role} does not read reports")
    if p.branch is None:
        raise ForbiddenError(f"a {p.role} without a branch does not read reports; "
                             "headquarters' reports are for the general manager, sales "
                             "directors and auditors")
    if branch is not None and branch != p.branch:
        raise ForbiddenError(f"you read the reports of branch {p.branch} only")
    return p.branch


# -- SQL helpers shared by the report modules --------------------------------------------

def seconds_between(conn: AsyncConnection, start: Any, end: Any) -> ColumnElement[Any]:
    """`end - start` in seconds, as SQL for the connection's dialect."""
    if conn.dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return extract("epoch", end - start)


def num(value: Any) -> int:
    """An aggregate as an int (SUM is NULL over no rows and a Decimal on PostgreSQL)."""
    return int(value or 0)


def avg(value: Any, digits: int = 2) -> float | None:
    """An AVG rounded, or None over no rows."""
    return None if value is None else round(float(value), digits)


def rate(part: int, whole: int) -> float | None:
    """`part / whole` as a share 0..1 (4 decimals); None when there is nothing to judge."""
    return round(part / whole, 4) if whole else None


async def grouped(conn: AsyncConnection, columns: list[Any], source: Any,
                  where: list[Any], branch_col: Any
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The same aggregate `columns` over everything and per branch: two GROUP BY-sized
    queries, never the rows themselves."""
    total = dict((await conn.execute(
        select(*columns).select_from(source).where(*where))).mappings().one())
    per = [dict(r) for r in (await conn.execute(
        select(branch_col.label("branch"), *columns).select_from(source).where(*where)
        .group_by(branch_col).order_by(branch_col))).mappings()]
    return total, per


def shape(kind: str, period: str, branch: str | None, total: dict[str, Any],
          per_branch: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """The common form of a report: what it covers, the totals, one entry per branch."""
    return {"kind": kind, "period": period, "branch": branch,
            "generated_at": utcnow().isoformat(), "due_by": due_by(period).isoformat(),
            "total": total, "branches": per_branch, **extra}


# -- complaints and SLA ------------------------------------------------------------------

def _complaint_columns(conn: AsyncConnection, now: datetime) -> list[Any]:
    c = complaints.c
    handled = c.status != "declined"
    in_time = and_(handled, c.closed_at.is_not(None), c.closed_at <= c.deadline_at)
    # Judged: closed, or its deadline passed unclosed (a complaint received on the 30th
    # and still running is neither met nor missed yet).
    judged = and_(handled, or_(c.closed_at.is_not(None), c.deadline_at < now))
    hours = seconds_between(conn, c.received_at, c.closed_at) / 3600.0
    cols: list[Any] = [
        func.count().label("received"),
        func.count().filter(c.status.not_in(("received", "declined"))).label("accepted"),
        func.count().filter(c.status == "declined").label("declined"),
        func.count().filter(c.status == "received").label("awaiting_acceptance"),
        func.count().filter(c.closed_at.is_not(None)).label("closed"),
        func.count().filter(judged).label("sla_judged"),
        func.count().filter(in_time).label("closed_within_7_days"),
        func.count().filter(handled, c.closed_at.is_(None),
                            c.deadline_at >= now).label("still_running"),
        func.count().filter(c.status.not_in(sorted(FINISHED)),
                            c.deadline_at < now).label("overdue_open"),
        func.count().filter(c.major.is_(True)).label("major"),
        func.count().filter(c.major.is_(True), c.escalated_at.is_not(None),
                            c.escalated_at <= c.hq_deadline_at).label("major_within_24h"),
        func.avg(case((c.closed_at.is_not(None), hours))).label("avg_hours_to_close"),
        func.sum(case((c.compensation_status == "approved", c.compensation_fen),
                      else_=0)).label("compensation_approved_fen"),
        func.count(c.satisfaction).label("satisfaction_count"),
        func.avg(c.satisfaction).label("satisfaction_avg"),
    ]
    cols += [func.count().filter(c.channel == ch).label(f"channel:{ch}") for ch in CHANNELS]
    cols += [func.count().filter(c.demand == d).label(f"demand:{d}") for d in DEMANDS]
    return cols


def _complaint_figures(row: dict[str, Any]) -> dict[str, Any]:
    judged, in_time = num(row["sla_judged"]), num(row["closed_within_7_days"])
    major, major_ok = num(row["major"]), num(row["major_within_24h"])
    out: dict[str, Any] = {k: num(row[k]) for k in (
        "received", "accepted", "declined", "awaiting_acceptance", "closed", "sla_judged",
        "closed_within_7_days", "still_running", "overdue_open", "major",
        "major_within_24h", "compensation_approved_fen", "satisfaction_count")}
    out.update(
        by_channel={ch: num(row[f"channel:{ch}"]) for ch in CHANNELS},
        by_demand={d: num(row[f"demand:{d}"]) for d in DEMANDS},
        missed_7_days=judged - in_time, sla_rate=rate(in_time, judged),
        major_missed_24h=major - major_ok, major_sla_rate=rate(major_ok, major),
        avg_hours_to_close=avg(row["avg_hours_to_close"]),
        satisfaction_avg=avg(row["satisfaction_avg"]))
    return out


def _complaint_where(start: datetime, end: datetime, branch: str | None) -> list[Any]:
    where: list[Any] = [complaints.c.received_at >= start, complaints.c.received_at < end]
    if branch is not None:
        where.append(complaints.c.branch == branch)
    return where


async def complaint_report(conn: AsyncConnection, period: str, branch: str | None
                           ) -> dict[str, Any]:
    """投诉统计 over the complaints *received* in local month `period`: received, by
    channel and demand, accepted / declined / awaiting acceptance; closed within 7 days
    of receipt against those judged (closed, or past the deadline unclosed) — the SLA
    attainment; still open past the deadline; majors and those escalated within 24 h
    of receipt; average hours from receipt to close; approved compensation (fen); the
    average return-visit satisfaction. `final` once every deadline of the month passed."""
    start, end = period_range(period)
    now = utcnow()
    total, per = await grouped(conn, _complaint_columns(conn, now), complaints,
                               _complaint_where(start, end, branch), complaints.c.branch)
    return shape("complaints", period, branch, _complaint_figures(total),
                 [{"branch": r["branch"], **_complaint_figures(r)} for r in per],
                 final=now >= end + DEADLINE)


def _sla_of(c: dict[str, Any], t: dict[str, Any] | None) -> dict[str, Any]:
    t = t or {}
    return {
        "complaints_judged": c["sla_judged"], "complaints_within_7_days":
        c["closed_within_7_days"], "complaints_missed_7_days": c["missed_7_days"],
        "complaint_sla_rate": c["sla_rate"], "majors": c["major"],
        "majors_within_24h": c["major_within_24h"], "major_sla_rate": c["major_sla_rate"],
        "tickets_judged": t.get("with_appointment", 0), "tickets_on_time":
        t.get("on_time", 0), "ticket_timeliness_rate": t.get("timeliness_rate"),
    }


async def sla_report(conn: AsyncConnection, period: str, branch: str | None
                     ) -> dict[str, Any]:
    """SLA attainment of the month: complaints closed within 7 days of receipt, majors
    escalated within 24 h of receipt, and technicians on time (及时率) for tickets."""
    from server.services.reports_work import ticket_report

    c = await complaint_report(conn, period, branch)
    t = await ticket_report(conn, period, branch)
    tickets_by = {b["branch"]: b for b in t["branches"]}
    codes = [b["branch"] for b in c["branches"]]
    codes += [code for code in tickets_by if code not in codes]
    complaints_by = {b["branch"]: b for b in c["branches"]}
    empty = _complaint_figures({k: None for k in ("avg_hours_to_close", "satisfaction_avg")}
                               | _ZERO)
    per = [{"branch": code, **_sla_of(complaints_by.get(code, empty), tickets_by.get(code))}
           for code in sorted(codes, key=lambda x: x or "")]
    return shape("sla", period, branch, _sla_of(c["total"], t["total"]), per,
                 final=c["final"])


_ZERO: dict[str, Any] = {k: 0 for k in (
    "received", "accepted", "declined", "awaiting_acceptance", "closed", "sla_judged",
    "closed_within_7_days", "still_running", "overdue_open", "major", "major_within_24h",
    "compensation_approved_fen", "satisfaction_count",
    *(f"channel:{ch}" for ch in CHANNELS), *(f"demand:{d}" for d in DEMANDS))}


# -- computing, issuing, listing ---------------------------------------------------------

async def compute(node: Node, kind: str, period: str, branch: str | None) -> dict[str, Any]:
    """Report `kind` for `period` over `branch` (None: every branch), no access check."""
    from server.services import reports_work

    kind = check_kind(kind)
    period_range(period)
    if kind == "sync_health":
        return await reports_work.sync_health_report(node, period, branch)
    makers = {"complaints": complaint_report, "sla": sla_report,
              "visits": reports_work.visit_report, "tickets": reports_work.ticket_report,
              "reps": reports_work.rep_report}
    async with node.db.read() as conn:
        return await makers[kind](conn, period, branch)


async def report(node: Node, p: Principal, kind: str, period: str, branch: str | None
                 ) -> dict[str, Any]:
    """Report `kind` of local month `period`, computed now, over what `p` may read."""
    return await compute(node, kind, period, scope_branch(p, branch))


def _final(data: dict[str, Any]) -> bool:
    return bool(data.get("final", True))


async def issue_month(node: Node, p: Principal | None, kind: str, period: str,
                      branch: str | None) -> dict[str, Any]:
    """Issue report `kind` of `period` for `branch` (None: every branch) as a snapshot
    in `reports`, audited (`report_issued`). Idempotent: an issued report that is final
    is returned as it is; one issued before its figures were final is refreshed in
    place (same id, `report_refreshed`). `p` None is the schedule at headquarters."""
    kind = check_kind(kind)
    if p is not None:
        if p.role not in ISSUERS:
            raise ForbiddenError(f"a {p.role} does not issue reports")
        branch = scope_branch(p, branch)
    row_id = report_id(kind, period, branch)
    data = await compute(node, kind, period, branch)
    async with node.db.write(node.node_id, p.id if p else None) as uow:
        old = await uow.get("reports", row_id)
        if old is not None and _final(old["data"]):
            return _snapshot(old)
        now = utcnow()
        # On time is decided by the first issue; a refresh keeps it.
        data["issued_on_time"] = (old["data"].get("issued_on_time") if old
                                  else local_day(now) <= due_by(period))
        values = {"data": data, "generated_at": now, "generated_by": p.id if p else None}
        if old is None:
            row = await uow.insert("reports", {"id": row_id, "kind": kind, "period": period,
                                               "branch": branch, "created_at": now, **values})
        else:
            row = await uow.update("reports", row_id, values)
        await audit.append(uow, node, p, "report_issued" if old is None else "report_refreshed",
                           object_table="reports", object_id=row_id,
                           actor_name=None if p else "schedule",
                           detail={"kind": kind, "period": period, "branch": branch,
                                   "final": _final(data)})
        return _snapshot(row)


def _snapshot(row: dict[str, Any]) -> dict[str, Any]:
    data = row["data"] or {}
    return {**row, "due_by": due_by(row["period"]),
            "issued_on_time": bool(data.get("issued_on_time",
                                            local_day(row["created_at"]) <= due_by(row["period"]))),
            "final": _final(data)}


def _visible_reports(p: Principal) -> ColumnElement[bool] | None:
    branch = scope_branch(p, None)
    return None if branch is None else reports.c.branch == branch


async def list_issued(node: Node, p: Principal, filters: dict[str, Any], cursor: str | None,
                      limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """Issued snapshots `p` may read, newest first; filters `kind`, `period`, `branch`."""
    query = select(reports)
    scope = _visible_reports(p)
    if scope is not None:
        query = query.where(scope)
    if filters.get("kind") is not None:
        query = query.where(reports.c.kind == check_kind(filters["kind"]))
    if filters.get("period") is not None:
        period_range(filters["period"])
        query = query.where(reports.c.period == filters["period"])
    if filters.get("branch") is not None:
        query = query.where(reports.c.branch == filters["branch"])
    async with node.db.read() as conn:
        rows, next_cursor = await records.page(conn, query, reports.c.id, cursor, limit)
    return [_snapshot(r) for r in rows], next_cursor


async def get_issued(node: Node, p: Principal, report_id_: str) -> dict[str, Any]:
    """One issued snapshot; 404 when it does not exist or is another branch's."""
    scope = _visible_reports(p)
    query = select(reports).where(reports.c.id == report_id_)
    if scope is not None:
        query = query.where(scope)
    async with node.db.read() as conn:
        row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFoundError("report not found")
    return _snapshot(dict(row))


# -- the schedule at headquarters ----------------------------------------------------------

async def issue_due(node: Node, now: datetime | None = None) -> list[dict[str, Any]]:
    """Issue the previous month's scheduled reports (HQ-wide and per branch) not yet
    issued, or issued before their figures were final. Returns what was written."""
    period = previous_period(now)
    async with node.db.read() as conn:
        codes = [None, *(await conn.execute(
            select(branches.c.code).order_by(branches.c.code))).scalars()]
        final = {(r.kind, r.branch) for r in await conn.execute(
            select(reports.c.kind, reports.c.branch, reports.c.data)
            .where(reports.c.period == period)) if _final(r.data)}
    written = []
    for kind in SCHEDULED:
        for code in codes:
            if (kind, code) not in final:
                written.append(await issue_month(node, None, kind, period, code))
    return written


def start_report_schedule(node: Node, interval_seconds: float = 86_400,
                          first_delay_seconds: float = 90) -> asyncio.Task[None] | None:
    """At headquarters, issue the previous month's complaint statistics daily until
    they are issued and final (from the 1st, so they are ready long before the 10th)."""
    if node.role != "hq":
        return None

    async def loop() -> None:
        await asyncio.sleep(first_delay_seconds)
        while True:
            try:
                done = await issue_due(node)
                if done:
                    log.info("reports issued: %d", len(done))
            except Exception:  # a bad day must not stop tomorrow's run
                log.exception("issuing monthly reports failed")
            await asyncio.sleep(interval_seconds)
    return asyncio.create_task(loop(), name="report-schedule")


__all__ = ["KINDS", "compute", "due_by", "get_issued", "issue_due", "issue_month",
           "list_issued", "period_range", "previous_period", "report", "report_id",
           "start_report_schedule"]
