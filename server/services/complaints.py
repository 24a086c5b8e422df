"""Complaints (客户投诉, domain.md §6): record, accept or decline, assign, investigate,
review, reply, close, return visit; major complaints escalated to HQ; compensation
approved by amount; monthly statistics.

Deadlines run from the time a complaint was *received* (set where it was taken and
immutable), never from when it reached another node, and "overdue" is computed from
the clock when it is read, so a complaint taken offline and synced late shows overdue
at once on every node.

Who may do what (roles of schema/_roles.py):

* record: complaint_handler, customer_service, sales_rep (reps log complaints in the
  field), dept_manager, sales_director, general_manager (`TAKERS`);
* accept / decline, assign, investigate, reply, close, return visit, escalate, ask for
  compensation: complaint_handler, customer_service and the managers (`HANDLERS`); the
  handler a complaint is assigned to may always write its investigation report;
* review and re-open: dept_manager, sales_director, general_manager (`REVIEWERS`);
* approve or reject compensation: per `COMPENSATION_MATRIX` by amount.

Everyone acts only on complaints of customers they may see (404 otherwise).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from schema import ENTITIES, LOCAL_TZ, TABLES, clean_text, normalize_phone, utcnow
from server.node import Node
from server.services import records
from server.services.errors import ConflictError, FieldError, ForbiddenError, NotFoundError
from server.services.principal import Principal
from server.services.scope import customer_scope

complaints = TABLES["complaints"]
customers = TABLES["customers"]
users = TABLES["users"]
departments = TABLES["departments"]

STATES: tuple[str, ...] = ENTITIES["complaints"].field("status").states
"""The flow's states in order (schema/_work.py: the `state` merge policy's order)."""
DEMANDS = ("refund", "return", "exchange", "compensation", "criticism")
"""What the complainant wants: 退款, 退货, 换货, 赔偿, 批评."""
CHANNELS = ("in_person", "phone", "letter", "email", "online", "wechat")
"""How a complaint came in."""
REPLY_CHANNELS = ("written", "oral")
"""A reply is given in writing (书面) or orally (口头)."""

DEADLINE = timedelta(days=7)
"""Closed within 7 days of receipt."""
HQ_DEADLINE = timedelta(hours=24)
"""A major complaint reaches HQ (and legal) within 24 hours of receipt."""
CLOCK_SKEW = timedelta(minutes=5)
"""How far in the future a stated receipt time may lie (clocks of tablets drift)."""
FINISHED = frozenset({"declined", "closed", "return_visited"})
"""States in which a complaint no longer runs against its deadlines."""

_MANAGERS = frozenset({"dept_manager", "sales_director", "general_manager"})
TAKERS = frozenset({"complaint_handler", "customer_service", "sales_rep"}) | _MANAGERS
HANDLERS = frozenset({"complaint_handler", "customer_service"}) | _MANAGERS
REVIEWERS = _MANAGERS

STEPS: dict[str, tuple[frozenset[str], str, frozenset[str]]] = {
    "accept": (frozenset({"received"}), "accepted", HANDLERS),
    "decline": (frozenset({"received"}), "declined", HANDLERS),
    "assign": (frozenset({"accepted", "assigned"}), "assigned", HANDLERS),
    "investigate": (frozenset({"assigned"}), "investigated", HANDLERS),
    "review": (frozenset({"investigated"}), "reviewed", REVIEWERS),
    "reply": (frozenset({"reviewed"}), "replied", HANDLERS),
    "close": (frozenset({"replied"}), "closed", HANDLERS),
    "return_visit": (frozenset({"closed"}), "return_visited", HANDLERS),
    "reopen": (FINISHED, "received", REVIEWERS),
}
"""Each flow action: the states it starts from, the state it leads to, who may take it.
Re-assigning an assigned complaint keeps it assigned; re-opening starts a new cycle."""

COMPENSATION_MATRIX: tuple[tuple[int | None, frozenset[str]], ...] = (
    (50_000, frozenset({"dept_manager", "sales_director", "general_manager"})),
    (500_000, frozenset({"sales_director", "general_manager"})),
    (None, frozenset({"general_manager"})),
)
"""The compensation approval matrix: up to 500 yuan a department manager, up to 5,000
yuan the sales director, above that the general manager (amounts in fen, inclusive);
a more senior role may always approve a lower tier."""

def compensation_approvers(amount_fen: int) -> frozenset[str]:
    """The roles that may approve (or reject) a compensation of `amount_fen`."""
    for ceiling, roles in COMPENSATION_MATRIX:
        if ceiling is None or amount_fen <= ceiling:
            return roles
    raise AssertionError("the matrix ends with an open tier")


def _ms(instant: datetime) -> datetime:
    # Every node stores instants with millisecond precision (like utcnow()).
    return instant.replace(microsecond=(instant.microsecond // 1000) * 1000)


def flags(row: dict[str, Any], now: datetime) -> dict[str, bool]:
    """`overdue`: past the 7-day deadline and not finished; `hq_overdue`: a major
    complaint past its 24-hour HQ deadline and not finished."""
    running = row["status"] not in FINISHED
    hq_deadline = row.get("hq_deadline_at")
    return {"overdue": running and now > row["deadline_at"],
            "hq_overdue": running and bool(row["major"]) and hq_deadline is not None
            and now > hq_deadline}


def overdue_clause(now: datetime, *, hq: bool = False) -> ColumnElement[bool]:
    """The SQL form of `flags`: overdue (or, with `hq`, HQ-overdue) at `now`."""
    running = complaints.c.status.not_in(sorted(FINISHED))
    if hq:
        return and_(running, complaints.c.major.is_(True),
                    complaints.c.hq_deadline_at.is_not(None), complaints.c.hq_deadline_at < now)
    return and_(running, complaints.c.deadline_at < now)


async def _show(node: Node, conn: AsyncConnection, p: Principal, rows: list[dict[str, Any]],
                audit: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    now = utcnow()
    shown = await records.show(node, conn, p, "complaints", rows, audit)
    return [{**r, **flags(r, now)} for r in shown]


async def _visible(conn: AsyncConnection, p: Principal, complaint_id: str) -> dict[str, Any]:
    row = (await conn.execute(
        select(complaints).join(customers, customers.c.id == complaints.c.customer_id)
        .where(complaints.c.id == complaint_id, customer_scope(p)))).mappings().first()
    if row is None:
        raise NotFoundError("complaint not found")
    return dict(row)


def _require(p: Principal, roles: frozenset[str], what: str) -> None:
    if p.role not in roles:
        raise ForbiddenError(f"a {p.role} cannot {what}")


def _text(field: str, value: str | None, *, required: bool = True) -> str | None:
    if value is None:
        if required:
            raise FieldError(field, "must not be empty")
        return None
    return clean_text(field, value, required=required)


def _choice(field: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise FieldError(field, f"must be one of {', '.join(choices)}")
    return value


async def create_complaint(node: Node, p: Principal, values: dict[str, Any]) -> dict[str, Any]:
    """Record a complaint; `received_at` (default now) may name an earlier receipt (a
    complaint taken on paper or offline) but not a future one. The 7-day deadline, and
    for a major complaint the 24-hour HQ deadline, run from receipt."""
    _require(p, TAKERS, "record complaints")
    now = utcnow()
    received = values.get("received_at") or now
    if received > now + CLOCK_SKEW:
        raise FieldError("received_at", "lies in the future")
    received = _ms(received)
    phone = values.get("phone")
    row: dict[str, Any] = {
        "complainant": _text("complainant", values.get("complainant")),
        "phone": normalize_phone("phone", phone) if phone else None,
        "demand": _choice("demand", values.get("demand") or "", DEMANDS),
        "content": _text("content", values.get("content")),
        "channel": _choice("channel", values.get("channel") or "", CHANNELS),
        "received_at": received,
        "deadline_at": received + DEADLINE,
        "status": "received",
        "created_by": p.id,
    }
    if values.get("major"):
        row.update(major=True, escalated_at=now, hq_deadline_at=received + HQ_DEADLINE)
    async with node.db.write(node.node_id, p.id) as uow:
        customer = await records.visible_customer(uow.conn, p, str(values.get("customer_id")))
        branch = p.branch or customer["branch"]
        row.update(customer_id=customer["id"], branch=branch,
                   number=records.new_number("TS", branch))
        inserted = await uow.insert("complaints", row)
        return (await _show(node, uow.conn, p, [inserted]))[0]


async def _advance(node: Node, p: Principal, complaint_id: str, action: str,
                   changes: dict[str, Any]) -> dict[str, Any]:
    """Take flow `action` on a complaint: visible (404), allowed role (403), from an
    allowed state (409), written through the unit of work."""
    sources, target, roles = STEPS[action]
    async with node.db.write(node.node_id, p.id) as uow:
        row = await _visible(uow.conn, p, complaint_id)
        assigned = action == "investigate" and row["handler_id"] == p.id
        if not assigned:
            _require(p, roles, f"{action.replace('_', ' ')} complaints")
        if row["status"] not in sources:
            raise ConflictError(f"cannot {action.replace('_', ' ')} a complaint that is "
                                f"{row['status']} (needs {' or '.join(sorted(sources))})")
        cycle = frozenset({"status"}) if action == "reopen" else frozenset()
        new = await uow.update("complaints", complaint_id, {**changes, "status": target},
                               new_cycle=cycle)
        if action == "return_visit":
            # The return visit is also a visit record, so it counts in the satisfaction
            # survey summary and in visit reminders like any other 回访.
            await uow.insert("visits", {
                "customer_id": row["customer_id"], "kind": "return_visit",
                "visited_at": utcnow(), "content": changes.get("return_visit_note"),
                "satisfaction": changes["satisfaction"], "related_id": complaint_id,
                "user_id": p.id, "branch": row["branch"]})
        return (await _show(node, uow.conn, p, [new]))[0]


async def accept(node: Node, p: Principal, complaint_id: str) -> dict[str, Any]:
    """The store found the complaint valid (受理)."""
    return await _advance(node, p, complaint_id, "accept", {})


async def decline(node: Node, p: Principal, complaint_id: str, reason: str) -> dict[str, Any]:
    """The store declines the complaint, with a reason (不予受理)."""
    return await _advance(node, p, complaint_id, "decline",
                          {"decline_reason": _text("reason", reason)})


async def assign(node: Node, p: Principal, complaint_id: str, department: str,
                 handler_id: str) -> dict[str, Any]:
    """Hand the complaint to a department and a handler (an active user)."""
    department = _text("department", department) or ""
    async with node.db.read() as conn:
        found = (await conn.execute(select(departments.c.id).where(
            departments.c.name == department))).first()
        handler = (await conn.execute(select(users.c.id).where(
            users.c.id == handler_id, users.c.active.is_(True)))).first()
    if found is None:
        raise FieldError("department", f"no department {department!r}")
    if handler is None:
        raise FieldError("handler_id", "no such active user")
    return await _advance(node, p, complaint_id, "assign",
                          {"department": department, "handler_id": handler_id})


REPORT_FIELDS = ("cause", "course", "responsible", "conclusion", "countermeasures",
                 "prevention")
"""The investigation report (调查报告): cause, course of events, responsible person,
conclusion, countermeasures, prevention."""


async def investigate(node: Node, p: Principal, complaint_id: str,
                      report: dict[str, str]) -> dict[str, Any]:
    """File the investigation report; every part of it is required."""
    values = {k: _text(k, report.get(k)) for k in REPORT_FIELDS}
    return await _advance(node, p, complaint_id, "investigate", values)


async def review(node: Node, p: Principal, complaint_id: str, note: str) -> dict[str, Any]:
    """A manager reviews the investigation (审核)."""
    return await _advance(node, p, complaint_id, "review",
                          {"review_note": _text("note", note), "reviewed_by": p.id})


async def reply(node: Node, p: Principal, complaint_id: str, text: str, channel: str
                ) -> dict[str, Any]:
    """Answer the customer in writing or orally (答复)."""
    return await _advance(node, p, complaint_id, "reply", {
        "reply": _text("reply", text), "reply_channel": _choice("channel", channel,
                                                                 REPLY_CHANNELS),
        "replied_at": utcnow()})


async def close(node: Node, p: Principal, complaint_id: str) -> dict[str, Any]:
    """Close a replied complaint (结案)."""
    return await _advance(node, p, complaint_id, "close", {"closed_at": utcnow()})


async def return_visit(node: Node, p: Principal, complaint_id: str, satisfaction: int,
                       note: str | None) -> dict[str, Any]:
    """The return visit after closing (回访): the satisfaction score 1-5 and a note, kept
    on the complaint and recorded as a return visit of its customer."""
    if not 1 <= satisfaction <= 5:
        raise FieldError("satisfaction", "must be 1 to 5")
    return await _advance(node, p, complaint_id, "return_visit", {
        "satisfaction": satisfaction,
        "return_visit_note": _text("note", note, required=False)})


async def reopen(node: Node, p: Principal, complaint_id: str) -> dict[str, Any]:
    """Re-open a declined or closed complaint: a new cycle of the flow starts at
    `received` (its receipt time and deadline stay those of the first receipt)."""
    return await _advance(node, p, complaint_id, "reopen", {"closed_at": None})


async def escalate(node: Node, p: Principal, complaint_id: str, reason: str
                   ) -> dict[str, Any]:
    """Flag a complaint as major (重大投诉) and escalate it to HQ: its HQ deadline is
    24 hours after receipt, however late the escalation."""
    _require(p, HANDLERS, "escalate complaints")
    reason_text = _text("reason", reason)
    async with node.db.write(node.node_id, p.id) as uow:
        row = await _visible(uow.conn, p, complaint_id)
        if row["major"]:
            raise ConflictError("the complaint is already major and escalated")
        if row["status"] in FINISHED:
            raise ConflictError(f"cannot escalate a complaint that is {row['status']}")
        new = await uow.update("complaints", complaint_id, {
            "major": True, "escalated_at": utcnow(),
            "hq_deadline_at": row["received_at"] + HQ_DEADLINE,
            "escalation_reason": reason_text})
        return (await _show(node, uow.conn, p, [new]))[0]


async def request_compensation(node: Node, p: Principal, complaint_id: str, amount_fen: int
                               ) -> dict[str, Any]:
    """Propose a compensation (赔偿) for an accepted, not yet closed complaint; it waits
    for approval by the role the amount needs."""
    _require(p, HANDLERS, "propose compensation")
    if amount_fen <= 0:
        raise FieldError("amount_fen", "must be positive")
    async with node.db.write(node.node_id, p.id) as uow:
        row = await _visible(uow.conn, p, complaint_id)
        if row["status"] in FINISHED or row["status"] == "received":
            raise ConflictError(f"cannot propose compensation on a complaint that is "
                                f"{row['status']}")
        if row["compensation_status"] in ("pending", "approved"):
            raise ConflictError(f"a compensation is already {row['compensation_status']}")
        new = await uow.update("complaints", complaint_id, {
            "compensation_fen": amount_fen, "compensation_status": "pending",
            "compensation_approved_by": None})
        return (await _show(node, uow.conn, p, [new]))[0]


async def decide_compensation(node: Node, p: Principal, complaint_id: str, approve: bool
                              ) -> dict[str, Any]:
    """Approve or reject a pending compensation; only a role the approval matrix names
    for its amount may decide (403 for a too-junior approver)."""
    async with node.db.write(node.node_id, p.id) as uow:
        row = await _visible(uow.conn, p, complaint_id)
        if row["compensation_status"] != "pending":
            raise ConflictError("no compensation is waiting for approval")
        amount = int(row["compensation_fen"])
        roles = compensation_approvers(amount)
        if p.role not in roles:
            raise ForbiddenError(f"a compensation of {amount / 100:.2f} yuan needs "
                                 f"approval by {' or '.join(sorted(roles))}")
        new = await uow.update("complaints", complaint_id, {
            "compensation_status": "approved" if approve else "rejected",
            "compensation_approved_by": p.id if approve else None})
        return (await _show(node, uow.conn, p, [new]))[0]


async def get_complaint(node: Node, p: Principal, complaint_id: str) -> dict[str, Any]:
    """One complaint with its `overdue` and `hq_overdue` flags as of now."""
    async with node.db.read() as conn:
        row = await _visible(conn, p, complaint_id)
        audit: list[dict[str, Any]] = []
        shown = (await _show(node, conn, p, [row], audit))[0]
    await records.log_reads(node, p, audit)
    return shown


async def list_complaints(node: Node, p: Principal, filters: dict[str, Any],
                          cursor: str | None, limit: int
                          ) -> tuple[list[dict[str, Any]], str | None]:
    """Complaints of customers `p` may see, newest first. Filters: `status`, `branch`,
    `customer_id` (with the customers merged into it), `demand`, `major`,
    `compensation_status`, `overdue` and `hq_overdue` (true or false, as of now)."""
    now = utcnow()
    query = (select(complaints)
             .join(customers, customers.c.id == complaints.c.customer_id)
             .where(customer_scope(p)))
    for key in ("status", "branch", "demand", "compensation_status"):
        if filters.get(key) is not None:
            query = query.where(complaints.c[key] == filters[key])
    if filters.get("major") is not None:
        query = query.where(complaints.c.major.is_(bool(filters["major"])))
    for key, hq in (("overdue", False), ("hq_overdue", True)):
        if filters.get(key) is not None:
            clause = overdue_clause(now, hq=hq)
            query = query.where(clause if filters[key] else ~clause)
    async with node.db.read() as conn:
        if filters.get("customer_id") is not None:
            query = query.where(await records.group_clause(
                conn, p, complaints.c.customer_id, filters["customer_id"]))
        rows, next_cursor = await records.page(conn, query, complaints.c.id, cursor, limit)
        audit: list[dict[str, Any]] = []
        shown = await _show(node, conn, p, rows, audit)
    await records.log_reads(node, p, audit)
    return shown, next_cursor


def month_range(month: str) -> tuple[datetime, datetime]:
    """The instants (UTC) from the start of local month `YYYY-MM` (Asia/Shanghai) to
    the start of the next; FieldError for anything else."""
    try:
        year, number = (int(part) for part in month.split("-"))
        start = datetime(year, number, 1, tzinfo=LOCAL_TZ)
    except ValueError:
        raise FieldError("month", "must be YYYY-MM") from None
    following = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=LOCAL_TZ)
    return start.astimezone(UTC), following.astimezone(UTC)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


async def complaint_stats(node: Node, p: Principal, month: str, branch: str | None
                          ) -> dict[str, Any]:
    """Monthly complaint statistics (投诉统计, due by the 10th of the next month) over
    the complaints received in local month `month` that `p` may see: how many, by
    demand and channel, majors, declined; how many of the others were closed within
    7 days of receipt (and the rate); how many missed or are missing the 7-day
    deadline (`overdue`) or, for majors, the 24-hour HQ deadline (`hq_overdue`);
    approved compensation; the average return-visit satisfaction."""
    start, end = month_range(month)
    now = utcnow()
    query = (select(complaints)
             .join(customers, customers.c.id == complaints.c.customer_id)
             .where(customer_scope(p), complaints.c.received_at >= start,
                    complaints.c.received_at < end))
    if branch is not None:
        query = query.where(complaints.c.branch == branch)
    async with node.db.read() as conn:
        rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    handled = [r for r in rows if r["status"] != "declined"]

    def finished_at(r: dict[str, Any]) -> datetime:
        # A closed complaint stopped its clock when it was closed; others run on.
        return r["closed_at"] if r["closed_at"] is not None else now

    in_time = sum(1 for r in handled
                  if r["closed_at"] is not None and r["closed_at"] <= r["deadline_at"])
    scores = [int(r["satisfaction"]) for r in handled if r["satisfaction"] is not None]
    return {
        "month": month, "branch": branch, "count": len(rows),
        "by_demand": {d: sum(1 for r in rows if r["demand"] == d) for d in DEMANDS},
        "by_channel": {c: sum(1 for r in rows if r["channel"] == c) for c in CHANNELS},
        "majors": sum(1 for r in rows if r["major"]),
        "declined": len(rows) - len(handled),
        "closed_within_7_days": in_time,
        "closed_within_7_days_rate": _rate(in_time, len(handled)),
        "overdue": sum(1 for r in handled if finished_at(r) > r["deadline_at"]),
        "hq_overdue": sum(1 for r in handled if r["major"] and r["hq_deadline_at"] is not None
                          and finished_at(r) > r["hq_deadline_at"]),
        "compensation_approved_fen": sum(int(r["compensation_fen"]) for r in rows
                                         if r["compensation_status"] == "approved"),
        "satisfaction_avg": round(sum(scores) / len(scores), 2) if scores else None,
    }
