"""Credit (授信, domain.md §8): preconditions, the rolling 30-day limit, over-limit
shipments signed off by the regional manager, prepayment.

The limit caps what a customer has been billed on credit in the 30 days before a
shipment (rolling daily). A shipment that would go over it is allowed only when the
part over the limit is below one third of the limit and the regional manager (区域经理)
signs it off, or when the customer prepays the excess. Branchline has no role named
regional manager: the regulations' 区域经理 is our `sales_director` (a general manager
may always sign as well).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from schema import CUSTOMER_EDITORS, TABLES, UnitOfWork, clean_text, utcnow
from server.node import Node
from server.services.errors import ConflictError, FieldError, ForbiddenError, NotFoundError
from server.services.principal import Principal
from server.services.records import customer_group, page, visible_customer
from server.services.scope import customer_scope

purchases = TABLES["purchases"]
requests = TABLES["credit_requests"]
customers = TABLES["customers"]

CREDIT_WINDOW = timedelta(days=30)
"""The limit covers what was billed on credit in this window before a shipment."""
OVER_LIMIT_DIVISOR = 3
"""An over-limit shipment's excess must stay below limit / 3 (一次超额低于额度的三分之一)."""
REGIONAL_MANAGER = "sales_director"
"""Our role for the regulations' 区域经理, who signs off over-limit shipments."""
CREDIT_APPROVERS = frozenset({REGIONAL_MANAGER, "general_manager"})
CREDIT_READERS = CUSTOMER_EDITORS | {"finance", "auditor"}
CREDIT_CLERKS = CUSTOMER_EDITORS | {"finance"}
PRECONDITION_SETTERS = frozenset({"finance", "general_manager", "sales_director",
                                  "archive_clerk"})
MAX_FEN = 10**13

PRECONDITIONS: tuple[tuple[str, str], ...] = (
    ("id_copy_on_file", "the archive holds no copy of the ID card or business licence"),
    ("contract_signed", "no contract has been signed"),
    ("last_year_settled", "last year's balance has not been cleared"),
)
"""Each precondition (a customers column) and why credit is refused without it."""


def require_role(p: Principal, roles: frozenset[str], what: str) -> None:
    """Refuse a principal whose role may not do `what`."""
    if p.role not in roles:
        raise ForbiddenError(f"a {p.role} cannot {what}")


def _amount(field: str, value: Any, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_FEN:
        raise FieldError(field, f"must be a whole number of fen from {minimum}")
    return value


def preconditions(customer: dict[str, Any]) -> list[dict[str, Any]]:
    """Each precondition with whether the customer meets it and, if not, why."""
    return [{"name": name, "ok": bool(customer.get(name)),
             "reason": None if customer.get(name) else reason}
            for name, reason in PRECONDITIONS]


async def billed(conn: AsyncConnection, group: list[str], at: datetime) -> int:
    """What the customers of `group` were billed on credit in [at - 30 days, at): the
    amounts shipped on credit less what was prepaid of them."""
    total = (await conn.execute(select(func.coalesce(
        func.sum(purchases.c.amount_fen - purchases.c.prepaid_fen), 0))
                                .where(purchases.c.customer_id.in_(group),
                                       purchases.c.on_credit == true(),
                                       purchases.c.purchased_at >= at - CREDIT_WINDOW,
                                       purchases.c.purchased_at < at))).scalar()
    return int(total or 0)


def decide(limit: int | None, billed_fen: int, amount: int, prepaid: int,
           conditions: list[dict[str, Any]]) -> dict[str, Any]:
    """The credit decision for shipping `amount` on credit: allowed, needs_approval
    (the regional manager's signature) or refused, with the reasons."""
    cap = limit or 0
    over = max(0, billed_fen + amount - cap)
    rest = max(0, over - prepaid)
    out: dict[str, Any] = {
        "limit_fen": cap, "billed_fen": billed_fen, "available_fen": max(0, cap - billed_fen),
        "amount_fen": amount, "prepaid_fen": prepaid, "over_fen": rest, "approver_role": None,
    }
    failed = [c["reason"] for c in conditions if not c["ok"]]
    if failed:
        return {**out, "decision": "refused", "reasons": failed}
    if over == 0:
        return {**out, "decision": "allowed", "reasons": ["within the credit limit"]}
    if rest == 0:
        return {**out, "decision": "allowed",
                "reasons": [f"the prepayment covers the {over} fen over the limit"]}
    reasons = [] if limit else ["no credit limit has been granted"]
    if rest * OVER_LIMIT_DIVISOR < cap:
        return {**out, "decision": "needs_approval", "approver_role": REGIONAL_MANAGER,
                "reasons": [f"{rest} fen over the limit (below one third of it) needs the "
                            "regional manager's approval"]}
    return {**out, "decision": "refused",
            "reasons": [*reasons, f"{rest} fen over the limit is not below one third of "
                                  f"the limit ({cap} fen)"]}


async def _decision(conn: AsyncConnection, customer: dict[str, Any], amount: int,
                    prepaid: int, at: datetime) -> dict[str, Any]:
    group = await customer_group(conn, customer["id"])
    spent = await billed(conn, group, at)
    return decide(customer["credit_limit_fen"], spent, amount, prepaid, preconditions(customer))


async def credit_status(node: Node, p: Principal, customer_id: str) -> dict[str, Any]:
    """A customer's limit, preconditions, what was billed in the last 30 days, and what
    is still available."""
    require_role(p, CREDIT_READERS, "read credit")
    now = utcnow()
    async with node.db.read() as conn:
        customer = await visible_customer(conn, p, customer_id)
        spent = await billed(conn, await customer_group(conn, customer["id"]), now)
    limit = customer["credit_limit_fen"]
    return {"customer_id": customer["id"], "credit_limit_fen": limit,
            "preconditions": preconditions(customer), "billed_fen": spent,
            "window_from": now - CREDIT_WINDOW, "window_to": now,
            "available_fen": max(0, (limit or 0) - spent)}


async def check_credit(node: Node, p: Principal, customer_id: str, amount_fen: int,
                       prepaid_fen: int) -> dict[str, Any]:
    """Whether a shipment of `amount_fen` on credit (with `prepaid_fen` paid up front)
    may go today."""
    require_role(p, CREDIT_READERS, "check credit")
    amount = _amount("amount_fen", amount_fen, minimum=1)
    prepaid = _amount("prepaid_fen", prepaid_fen)
    if prepaid > amount:
        raise FieldError("prepaid_fen", "cannot exceed the amount")
    async with node.db.read() as conn:
        customer = await visible_customer(conn, p, customer_id)
        return {"customer_id": customer["id"],
                **await _decision(conn, customer, amount, prepaid, utcnow())}


async def authorise(uow: UnitOfWork, customer: dict[str, Any], amount: int, prepaid: int,
                    request_id: str | None, at: datetime) -> dict[str, Any] | None:
    """Inside a purchase's transaction: refuse a shipment on credit the rules do not
    allow. An over-limit shipment needs an approved credit request for this customer
    covering its amount; that request is returned (the caller marks it shipped)."""
    decision = await _decision(uow.conn, customer, amount, prepaid, at)
    if decision["decision"] == "refused":
        raise ConflictError("credit refused: " + "; ".join(decision["reasons"]))
    if request_id is None:
        if decision["decision"] == "needs_approval":
            raise ConflictError("over the credit limit: ask the regional manager's approval "
                                "(POST …/credit/requests) and ship against it")
        return None
    request = await uow.get("credit_requests", request_id)
    group = await customer_group(uow.conn, customer["id"])
    if request is None or request["customer_id"] not in group:
        raise FieldError("credit_request_id", "no credit request of this customer")
    if request["status"] != "approved":
        raise ConflictError(f"the credit request is {request['status']}, not approved")
    if amount > request["amount_fen"]:
        raise ConflictError(f"the credit request covers {request['amount_fen']} fen, "
                            f"not {amount}")
    return request


async def request_credit(node: Node, p: Principal, customer_id: str, amount_fen: int,
                         reason: str | None) -> dict[str, Any]:
    """Ask the regional manager to sign off an over-limit shipment. Only a shipment that
    needs approval can be requested: within the limit it needs none, and an excess of a
    third of the limit or more (or a missing precondition) cannot be approved."""
    require_role(p, CREDIT_CLERKS, "request credit")
    amount = _amount("amount_fen", amount_fen, minimum=1)
    note = clean_text("reason", reason) if reason is not None else None
    async with node.db.write(node.node_id, p.id) as uow:
        customer = await visible_customer(uow.conn, p, customer_id)
        decision = await _decision(uow.conn, customer, amount, 0, utcnow())
        if decision["decision"] != "needs_approval":
            raise ConflictError(f"no approval to ask: credit is {decision['decision']} ("
                                + "; ".join(decision["reasons"]) + ")")
        return await uow.insert("credit_requests", {
            "customer_id": customer["id"], "amount_fen": amount,
            "over_fen": decision["over_fen"], "limit_fen": decision["limit_fen"],
            "reason": note, "requested_by": p.id, "status": "requested"})


async def decide_request(node: Node, p: Principal, request_id: str, approve: bool
                         ) -> dict[str, Any]:
    """The regional manager (sales director) or general manager approves or rejects an
    over-limit shipment; a request is decided once."""
    require_role(p, CREDIT_APPROVERS, "approve over-limit credit")
    async with node.db.write(node.node_id, p.id) as uow:
        row = await uow.get("credit_requests", request_id)
        if row is None:
            raise NotFoundError("credit request not found")
        await visible_customer(uow.conn, p, row["customer_id"])
        if row["status"] != "requested":
            raise ConflictError(f"the credit request is already {row['status']}")
        return await uow.update("credit_requests", request_id, {
            "status": "approved" if approve else "rejected", "decided_by": p.id,
            "decided_at": utcnow()})


async def list_requests(node: Node, p: Principal, status: str | None, customer_id: str | None,
                        cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """Credit requests of customers `p` may see, newest first."""
    require_role(p, CREDIT_READERS | CREDIT_APPROVERS, "read credit requests")
    query = select(requests).join(customers, customers.c.id == requests.c.customer_id).where(
        customer_scope(p))
    if status is not None:
        query = query.where(requests.c.status == status)
    async with node.db.read() as conn:
        if customer_id is not None:
            survivor = await visible_customer(conn, p, customer_id)
            query = query.where(requests.c.customer_id.in_(
                await customer_group(conn, survivor["id"])))
        return await page(conn, query, requests.c.id, cursor, limit)


async def set_preconditions(node: Node, p: Principal, customer_id: str,
                            changes: dict[str, bool]) -> dict[str, Any]:
    """Record that the ID copy is on file, the contract signed, last year settled (or
    no longer so); each change is kept in the customer's field history."""
    require_role(p, PRECONDITION_SETTERS, "change credit preconditions")
    names = {name for name, _ in PRECONDITIONS}
    for name, value in changes.items():
        if name not in names or not isinstance(value, bool):
            raise FieldError(name, "is not a credit precondition (true or false)")
    async with node.db.write(node.node_id, p.id) as uow:
        customer = await visible_customer(uow.conn, p, customer_id)
        if changes:
            await uow.update("customers", customer["id"], changes)
    return await credit_status(node, p, customer_id)
