"""Service and repair tickets (报修 / 维修单 / 派工, domain.md §7) and the price list
(收费标准) their fees come from.

A ticket runs 未派工 undispatched → 已派工未确认 dispatched → 已确认 confirmed → 已完成
done. On site the technician records the arrival (no more than 10 minutes after the
appointment counts as on time), states the fee from the price list, starts only with
the customer's consent, and the customer signs (a PNG image). A customer-service
spot-check (抽查回访) then marks the job passed or not; monthly timeliness (及时率) and
pass (合格率) rates follow.

Who may do what: take a ticket: `TAKERS`; dispatch and spot-check: `DISPATCHERS`
(customer service and managers); confirm, arrive, complete: only the technician the
ticket is dispatched to. The price list is reference data: only an admin or the
general manager changes it, and only at headquarters.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from schema import TABLES, clean_text, utcnow
from server.node import Node
from server.services import records
from server.services.complaints import month_range
from server.services.errors import ConflictError, FieldError, ForbiddenError, NotFoundError
from server.services.principal import Principal
from server.services.scope import customer_scope, in_scope

tickets = TABLES["tickets"]
price_items = TABLES["price_items"]
customers = TABLES["customers"]
users = TABLES["users"]

CHANNELS = ("front_desk", "phone")
"""A ticket comes from the front desk (前台) or by phone (电话报修)."""
LATE_TOLERANCE = timedelta(minutes=10)
"""Arriving no more than 10 minutes after the appointment is on time."""
SIGNATURE_PREFIX = "data:image/png;base64,"
SIGNATURE_MAX_BYTES = 200 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

_MANAGERS = frozenset({"dept_manager", "sales_director", "general_manager"})
TAKERS = frozenset({"customer_service", "sales_rep"}) | _MANAGERS
DISPATCHERS = frozenset({"customer_service"}) | _MANAGERS
PRICE_EDITORS = frozenset({"admin", "general_manager"})


def _require(p: Principal, roles: frozenset[str], what: str) -> None:
    if p.role not in roles:
        raise ForbiddenError(f"a {p.role} cannot {what}")


def _ms(instant: datetime) -> datetime:
    return instant.replace(microsecond=(instant.microsecond // 1000) * 1000)


def check_signature(value: str) -> str:
    """A customer's signature as a PNG data URL (`data:image/png;base64,…`): valid
    base64, a PNG header, at most 200 KB decoded; FieldError otherwise."""
    if not value.startswith(SIGNATURE_PREFIX):
        raise FieldError("signature", f"must be a {SIGNATURE_PREFIX}… data URL")
    payload = value[len(SIGNATURE_PREFIX):]
    if len(payload) > (SIGNATURE_MAX_BYTES + 2) // 3 * 4:
        raise FieldError("signature", "is larger than 200 KB")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise FieldError("signature", "is not valid base64") from None
    if not raw.startswith(PNG_MAGIC) or raw[12:16] != b"IHDR":
        raise FieldError("signature", "is not a PNG image")
    if len(raw) > SIGNATURE_MAX_BYTES:
        raise FieldError("signature", "is larger than 200 KB")
    return value


def on_time(row: dict[str, Any]) -> bool | None:
    """Whether the technician arrived within the appointment's tolerance; None when
    there is no appointment or no arrival yet."""
    if row["appointment_at"] is None or row["arrived_at"] is None:
        return None
    return bool(row["arrived_at"] <= row["appointment_at"] + LATE_TOLERANCE)


def _out(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "on_time": on_time(row), "signed": row.get("signature") is not None}


# --- the price list ----------------------------------------------------------------------

def _price_editor(node: Node, p: Principal) -> None:
    if node.role != "hq":
        raise ForbiddenError("the price list is reference data published by headquarters; "
                             "change it on the HQ node")
    _require(p, PRICE_EDITORS, "change the price list")


async def create_price_item(node: Node, p: Principal, values: dict[str, Any]
                            ) -> dict[str, Any]:
    """Add an item to the price list (HQ only); codes are unique, upper case."""
    _price_editor(node, p)
    code = (clean_text("code", values["code"], required=True) or "").upper()
    fee = int(values["fee_fen"])
    if fee < 0:
        raise FieldError("fee_fen", "must not be negative")
    row = {"code": code, "name": clean_text("name", values["name"], required=True),
           "fee_fen": fee, "active": bool(values.get("active", True))}
    async with node.db.write(node.node_id, p.id) as uow:
        taken = (await uow.conn.execute(select(price_items.c.id).where(
            price_items.c.code == code))).first()
        if taken is not None:
            raise ConflictError(f"price item {code} exists")
        return await uow.insert("price_items", row)


async def update_price_item(node: Node, p: Principal, item_id: str, changes: dict[str, Any]
                            ) -> dict[str, Any]:
    """Change an item's name, fee or whether it is offered (HQ only); tickets already
    completed keep the fee they were charged."""
    _price_editor(node, p)
    if "name" in changes:
        changes["name"] = clean_text("name", changes["name"] or "", required=True)
    if changes.get("fee_fen") is not None and changes["fee_fen"] < 0:
        raise FieldError("fee_fen", "must not be negative")
    for key in ("fee_fen", "active"):
        if key in changes and changes[key] is None:
            raise FieldError(key, "must not be empty")
    async with node.db.write(node.node_id, p.id) as uow:
        if await uow.get("price_items", item_id) is None:
            raise NotFoundError("price item not found")
        return await uow.update("price_items", item_id, changes)


async def list_price_items(node: Node, active: bool | None, cursor: str | None, limit: int
                           ) -> tuple[list[dict[str, Any]], str | None]:
    """The price list, newest first; `active` filters offered items."""
    query = select(price_items)
    if active is not None:
        query = query.where(price_items.c.active.is_(active))
    async with node.db.read() as conn:
        return await records.page(conn, query, price_items.c.id, cursor, limit)


# --- tickets -----------------------------------------------------------------------------

async def _visible(conn: AsyncConnection, p: Principal, ticket_id: str) -> dict[str, Any]:
    row = (await conn.execute(
        select(tickets).join(customers, customers.c.id == tickets.c.customer_id)
        .where(tickets.c.id == ticket_id, customer_scope(p)))).mappings().first()
    if row is None:
        raise NotFoundError("ticket not found")
    return dict(row)


async def create_ticket(node: Node, p: Principal, values: dict[str, Any]) -> dict[str, Any]:
    """Take a repair request at the front desk or by phone, with an optional
    appointment; it starts undispatched (未派工)."""
    _require(p, TAKERS, "take service tickets")
    if values.get("channel") not in CHANNELS:
        raise FieldError("channel", f"must be one of {', '.join(CHANNELS)}")
    appointment = values.get("appointment_at")
    row: dict[str, Any] = {
        "channel": values["channel"],
        "description": clean_text("description", values.get("description") or "",
                                  required=True),
        "appointment_at": _ms(appointment) if appointment is not None else None,
        "status": "undispatched", "created_by": p.id,
    }
    async with node.db.write(node.node_id, p.id) as uow:
        customer = await records.visible_customer(uow.conn, p, str(values.get("customer_id")))
        branch = p.branch or customer["branch"]
        row.update(customer_id=customer["id"], branch=branch,
                   number=records.new_number("BX", branch))
        return _out(await uow.insert("tickets", row))


Changes = Callable[[dict[str, Any]], dict[str, Any]]


async def _step(node: Node, p: Principal, ticket_id: str, sources: frozenset[str],
                what: str, changes: Changes, *, technician: bool) -> dict[str, Any]:
    """Move a ticket on: visible (404), the dispatched technician when `technician`
    (403), from one of `sources` (409); `changes` gives the values to write from the
    current row (and raises ConflictError when the row does not allow the step)."""
    async with node.db.write(node.node_id, p.id) as uow:
        row = await _visible(uow.conn, p, ticket_id)
        if technician and row["technician_id"] != p.id:
            raise ForbiddenError(f"only the technician the ticket is dispatched to can {what}")
        if row["status"] not in sources:
            raise ConflictError(f"cannot {what} a ticket that is {row['status']} "
                                f"(needs {' or '.join(sorted(sources))})")
        return _out(await uow.update("tickets", ticket_id, changes(row)))


async def dispatch(node: Node, p: Principal, ticket_id: str, technician_id: str
                   ) -> dict[str, Any]:
    """Send a technician (an active user with role technician who may serve the
    customer); a dispatched ticket not yet confirmed may be sent to another."""
    _require(p, DISPATCHERS, "dispatch tickets")
    async with node.db.read() as conn:
        tech = (await conn.execute(select(users).where(
            users.c.id == technician_id, users.c.active.is_(True),
            users.c.role == "technician"))).mappings().first()
        row = await _visible(conn, p, ticket_id)
        customer = (await conn.execute(select(customers).where(
            customers.c.id == row["customer_id"]))).mappings().one()
    if tech is None:
        raise FieldError("technician_id", "no active technician with this id")
    if not in_scope(Principal.from_row(tech), dict(customer)):
        raise FieldError("technician_id", "this technician cannot serve the customer's branch")
    values = {"status": "dispatched", "technician_id": technician_id, "dispatched_at": utcnow()}
    return await _step(node, p, ticket_id, frozenset({"undispatched", "dispatched"}),
                       "dispatch", lambda _: values, technician=False)


async def confirm(node: Node, p: Principal, ticket_id: str) -> dict[str, Any]:
    """The dispatched technician confirms the job (已确认)."""
    values = {"status": "confirmed", "confirmed_at": utcnow()}
    return await _step(node, p, ticket_id, frozenset({"dispatched"}), "confirm",
                       lambda _: values, technician=True)


def _arrival(row: dict[str, Any]) -> dict[str, Any]:
    if row["arrived_at"] is not None:
        raise ConflictError("the arrival is already recorded")
    now = utcnow()
    return {"status": "confirmed", "arrived_at": now, "confirmed_at": row["confirmed_at"] or now}


async def arrive(node: Node, p: Principal, ticket_id: str) -> dict[str, Any]:
    """The technician is on site: the arrival time decides timeliness; arriving on a
    job not yet confirmed confirms it."""
    return await _step(node, p, ticket_id, frozenset({"dispatched", "confirmed"}),
                       "record the arrival", _arrival, technician=True)


async def complete(node: Node, p: Principal, ticket_id: str, values: dict[str, Any]
                   ) -> dict[str, Any]:
    """Finish the job: the fee of `price_code` from the price list (copied onto the
    ticket), the customer's consent (required: no work without it), the customer's
    signature (PNG) and what was done. The arrival must be on record."""
    if values.get("consent") is not True:
        raise FieldError("consent", "work starts only with the customer's consent")
    signature = check_signature(values.get("signature") or "")
    work_done = clean_text("work_done", values.get("work_done") or "", required=True)
    code = str(values.get("price_code") or "").strip().upper()
    async with node.db.read() as conn:
        item = (await conn.execute(select(price_items).where(
            price_items.c.code == code, price_items.c.active.is_(True)))).mappings().first()
    if item is None:
        raise FieldError("price_code", f"no active price item {code!r}")
    done = {"status": "done", "price_code": code, "fee_fen": item["fee_fen"], "consent": True,
            "signature": signature, "work_done": work_done, "completed_at": utcnow()}

    def finish(row: dict[str, Any]) -> dict[str, Any]:
        if row["arrived_at"] is None:
            raise ConflictError("record the arrival on site before completing")
        return done

    return await _step(node, p, ticket_id, frozenset({"confirmed"}), "complete", finish,
                       technician=True)


async def check(node: Node, p: Principal, ticket_id: str, passed: bool) -> dict[str, Any]:
    """The spot-check return visit (抽查回访) of a done ticket: passed or not, once."""
    _require(p, DISPATCHERS, "spot-check tickets")

    def verdict(row: dict[str, Any]) -> dict[str, Any]:
        if row["passed"] is not None:
            raise ConflictError("the ticket is already spot-checked")
        return {"passed": passed, "checked_by": p.id}

    return await _step(node, p, ticket_id, frozenset({"done"}), "spot-check", verdict,
                       technician=False)


async def get_ticket(node: Node, p: Principal, ticket_id: str) -> dict[str, Any]:
    """One ticket, with its signature."""
    async with node.db.read() as conn:
        return _out(await _visible(conn, p, ticket_id))


async def list_tickets(node: Node, p: Principal, filters: dict[str, Any], cursor: str | None,
                       limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """Tickets of customers `p` may see, newest first; filters `status`,
    `technician_id`, `branch`, `customer_id` (with customers merged into it)."""
    query = (select(tickets).join(customers, customers.c.id == tickets.c.customer_id)
             .where(customer_scope(p)))
    for key in ("status", "technician_id", "branch"):
        if filters.get(key) is not None:
            query = query.where(tickets.c[key] == filters[key])
    async with node.db.read() as conn:
        if filters.get("customer_id") is not None:
            query = query.where(await records.group_clause(
                conn, p, tickets.c.customer_id, filters["customer_id"]))
        rows, next_cursor = await records.page(conn, query, tickets.c.id, cursor, limit)
    return [_out(r) for r in rows], next_cursor


async def ticket_stats(node: Node, p: Principal, month: str, branch: str | None,
                       technician_id: str | None) -> dict[str, Any]:
    """Monthly figures over the tickets taken in local month `month` that `p` may see:
    total and done; timeliness (及时率): arrivals within 10 minutes of the appointment
    among tickets with an appointment that was reached or whose tolerance has passed
    (a technician who never came is late); pass rate (合格率): passed among the
    spot-checked; fees charged."""
    start, end = month_range(month)
    now = utcnow()
    query = (select(tickets).join(customers, customers.c.id == tickets.c.customer_id)
             .where(customer_scope(p), tickets.c.created_at >= start,
                    tickets.c.created_at < end))
    if branch is not None:
        query = query.where(tickets.c.branch == branch)
    if technician_id is not None:
        query = query.where(tickets.c.technician_id == technician_id)
    async with node.db.read() as conn:
        rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    judged = [r for r in rows if r["appointment_at"] is not None and (
        r["arrived_at"] is not None or now > r["appointment_at"] + LATE_TOLERANCE)]
    timely = sum(1 for r in judged if on_time(r))
    checked = [r for r in rows if r["passed"] is not None]
    passed = sum(1 for r in checked if r["passed"])
    return {
        "month": month, "branch": branch, "technician_id": technician_id,
        "total": len(rows), "done": sum(1 for r in rows if r["status"] == "done"),
        "with_appointment": len(judged), "on_time": timely,
        "timeliness_rate": round(timely / len(judged), 4) if judged else None,
        "checked": len(checked), "passed": passed,
        "pass_rate": round(passed / len(checked), 4) if checked else None,
        "fees_fen": sum(int(r["fee_fen"] or 0) for r in rows if r["status"] == "done"),
    }
