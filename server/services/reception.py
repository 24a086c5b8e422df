"""Reception expenses (招待费, domain.md §3 and §5): per-person caps by reception class,
the companions a reception may bring, and no reimbursement for a customer who was never
registered (客户未登记)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import select

from schema import CUSTOMER_EDITORS, TABLES, clean_text, local_day, utcnow
from server.node import Node
from server.services.errors import FieldError, ForbiddenError, NotFoundError
from server.services.principal import Principal
from server.services.records import customer_group, page, visible_customer
from server.services.scope import customer_scope

customers = TABLES["customers"]
expenses = TABLES["reception_expenses"]

CAP_PER_PERSON_FEN: dict[str, int] = {"A": 50_000, "B": 30_000, "C": 20_000, "D": 15_000}
"""Per-person cost caps of the reception classes: 500, 300, 200 and 150 元."""
RECORDERS = CUSTOMER_EDITORS | {"finance"}
UNREGISTERED = "expenses for unregistered customers are not reimbursed (客户未登记)"


def allowed_companions(guests: int) -> int:
    """Companions (陪同) a reception may bring: under 5 guests 1, 5-10 guests 2, over
    10 guests 3. The regulation's "3 or more" for over 10 guests is read as 3 by rule;
    more needs a manager's exception that this record does not carry, so it is refused."""
    if guests < 5:
        return 1
    if guests <= 10:
        return 2
    return 3


def cap_fen(reception_class: str, guests: int, companions: int) -> int:
    """The most a reception may cost: the class's per-person cap × everyone present."""
    return CAP_PER_PERSON_FEN[reception_class] * (guests + companions)


def _yuan(fen: int) -> str:
    return f"{fen // 100:,}.{fen % 100:02d} 元"


def check_expense(reception_class: str, guests: int, companions: int, amount_fen: int) -> None:
    """Refuse a reception outside the rules, naming the field at fault."""
    if reception_class not in CAP_PER_PERSON_FEN:
        raise FieldError("reception_class", "must be A, B, C or D")
    if guests < 1:
        raise FieldError("guests", "a reception has at least one guest")
    allowed = allowed_companions(guests)
    if companions < 0 or companions > allowed:
        raise FieldError("companions", f"{guests} guests allow at most {allowed} companions")
    if amount_fen < 0:
        raise FieldError("amount_fen", "must not be negative")
    cap = cap_fen(reception_class, guests, companions)
    if amount_fen > cap:
        raise FieldError("amount_fen", (
            f"{_yuan(amount_fen)} exceeds the class {reception_class} cap of "
            f"{_yuan(CAP_PER_PERSON_FEN[reception_class])} per person × "
            f"{guests + companions} persons = {_yuan(cap)}"))


def with_cap(row: dict[str, Any]) -> dict[str, Any]:
    """An expense row with the cap it was checked against."""
    return {**row, "cap_fen": cap_fen(row["reception_class"], row["guests"],
                                      row["companions"])}


async def record_expense(node: Node, p: Principal, customer_id: str, values: dict[str, Any]
                         ) -> dict[str, Any]:
    """Record a reception for a registered customer `p` may see; its class defaults
    to the customer's A/B/C/D class. Nothing is written if a rule is broken."""
    if p.role not in RECORDERS:
        raise ForbiddenError(f"a {p.role} does not record reception expenses")
    spent_on: date = values["spent_on"]
    if spent_on > local_day(utcnow()) + timedelta(days=1):
        raise FieldError("spent_on", "is in the future")
    async with node.db.write(node.node_id, p.id) as uow:
        try:
            customer = await visible_customer(uow.conn, p, customer_id)
        except NotFoundError:
            raise NotFoundError(UNREGISTERED) from None
        cls = values.get("reception_class") or customer["abc_class"]
        if cls is None:
            raise FieldError("reception_class", "the customer has no A/B/C/D class yet; "
                             "name the reception class")
        check_expense(cls, values["guests"], values["companions"], values["amount_fen"])
        row = await uow.insert("reception_expenses", {
            "customer_id": customer["id"], "reception_class": cls, "guests": values["guests"],
            "companions": values["companions"], "amount_fen": values["amount_fen"],
            "spent_on": spent_on.isoformat(),
            "purpose": clean_text("purpose", values["purpose"]) if values.get("purpose")
            else None, "user_id": p.id, "branch": customer["branch"]})
        return with_cap(row)


async def list_expenses(node: Node, p: Principal, filters: dict[str, Any], cursor: str | None,
                        limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """Reception expenses of customers `p` may see, newest first; filters: customer_id,
    branch, user_id, reception_class, from / to (the day spent)."""
    query = select(expenses, customers.c.name.label("customer_name")).select_from(
        expenses.join(customers, customers.c.id == expenses.c.customer_id)
    ).where(customer_scope(p))
    for key in ("branch", "user_id", "reception_class"):
        if filters.get(key) is not None:
            query = query.where(expenses.c[key] == filters[key])
    if filters.get("from") is not None:
        query = query.where(expenses.c.spent_on >= filters["from"].isoformat())
    if filters.get("to") is not None:
        query = query.where(expenses.c.spent_on <= filters["to"].isoformat())
    async with node.db.read() as conn:
        if filters.get("customer_id") is not None:
            customer = await visible_customer(conn, p, filters["customer_id"])
            query = query.where(expenses.c.customer_id.in_(
                await customer_group(conn, customer["id"])))
        rows, next_cursor = await page(conn, query, expenses.c.id, cursor, limit)
    return [with_cap(r) for r in rows], next_cursor
