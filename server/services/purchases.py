"""Purchase records (购买记录, domain.md §5): store, date, items, amount.

A purchase earns loyalty points (one per yuan) posted in its own transaction, feeds
classification and analytics, and — bought on credit — must pass the credit check of
domain.md §8 (or ship against an approved over-limit request, which it marks shipped).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from schema import TABLES, clean_text, utcnow
from server.node import Node
from server.services import credit, loyalty
from server.services.errors import FieldError
from server.services.principal import Principal
from server.services.records import customer_group, page, visible_customer
from server.services.scope import customer_scope, require_editor

purchases = TABLES["purchases"]
customers = TABLES["customers"]

MAX_ITEMS = 200
FUTURE_SLACK = timedelta(minutes=5)
"""A till's clock may run a little ahead; a purchase further in the future is refused."""


def _items(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or len(raw) > MAX_ITEMS:
        raise FieldError("items", f"must be a list of at most {MAX_ITEMS} items")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) != {"sku", "name", "qty", "price_fen"}:
            raise FieldError(f"items[{i}]", "needs exactly sku, name, qty, price_fen")
        qty, price = item["qty"], item["price_fen"]
        if (isinstance(qty, bool) or not isinstance(qty, int) or not 0 < qty <= 1_000_000
                or isinstance(price, bool) or not isinstance(price, int)
                or not 0 <= price <= credit.MAX_FEN):
            raise FieldError(f"items[{i}]", "qty must be a positive and price_fen a "
                                            "non-negative whole number")
        sku = clean_text(f"items[{i}].sku", str(item["sku"]), required=True)
        name = clean_text(f"items[{i}].name", str(item["name"]), required=True)
        out.append({"sku": sku, "name": name, "qty": qty, "price_fen": price})
    return out


def _validate(values: dict[str, Any]) -> dict[str, Any]:
    items = _items(values.get("items") or [])
    amount = values.get("amount_fen")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= credit.MAX_FEN:
        raise FieldError("amount_fen", "must be a positive whole number of fen")
    if items and amount != sum(i["qty"] * i["price_fen"] for i in items):
        raise FieldError("amount_fen", "must equal the sum of qty × price_fen of the items")
    at = values.get("purchased_at")
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise FieldError("purchased_at", "must be an instant with its offset")
    if at > utcnow() + FUTURE_SLACK:
        raise FieldError("purchased_at", "is in the future")
    on_credit = bool(values.get("on_credit", False))
    prepaid = int(values.get("prepaid_fen") or 0)
    request_id = values.get("credit_request_id")
    if not on_credit and (prepaid or request_id):
        raise FieldError("on_credit", "a prepayment or credit request needs on_credit")
    if not 0 <= prepaid <= amount:
        raise FieldError("prepaid_fen", "must be between 0 and the amount")
    return {"items": items, "amount_fen": amount, "purchased_at": at, "on_credit": on_credit,
            "prepaid_fen": prepaid, "credit_request_id": request_id}


async def record_purchase(node: Node, p: Principal, customer_id: str,
                          values: dict[str, Any]) -> dict[str, Any]:
    """Record one purchase of a visible customer (see `record_purchases`)."""
    return (await record_purchases(node, p, customer_id, [values]))[0]


async def record_purchases(node: Node, p: Principal, customer_id: str,
                           many: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Record purchases of one customer in one transaction, each with its earned points
    posted to the customer's balance; a purchase on credit is checked against the
    credit rules as of its own date (the 30 days before it)."""
    require_editor(p)
    prepared = [_validate(v) for v in many]
    out: list[dict[str, Any]] = []
    async with node.db.write(node.node_id, p.id) as uow:
        customer = await visible_customer(uow.conn, p, customer_id)
        store = loyalty.store_of(node, p, customer)
        def values(v: dict[str, Any]) -> dict[str, Any]:
            return {"customer_id": customer["id"], "branch": store,
                    "purchased_at": v["purchased_at"], "items": v["items"],
                    "amount_fen": v["amount_fen"], "on_credit": v["on_credit"],
                    "prepaid_fen": v["prepaid_fen"],
                    "points": loyalty.points_for(v["amount_fen"]), "user_id": p.id}

        if not any(v["on_credit"] for v in prepared):  # nothing to check: one statement
            out = await uow.insert_many("purchases", [values(v) for v in prepared])
        for v in prepared if not out else ():
            # Each credit check sees the purchases written before it in this transaction.
            request = None
            if v["on_credit"]:
                request = await credit.authorise(uow, customer, v["amount_fen"],
                                                 v["prepaid_fen"], v["credit_request_id"],
                                                 v["purchased_at"])
            row = await uow.insert("purchases", values(v))
            if request is not None:
                await uow.update("credit_requests", request["id"],
                                 {"status": "shipped", "purchase_id": row["id"]})
            out.append(row)
        await loyalty.post_many(uow, customer["id"], [{
            "branch": store, "member_id": customer["id"], "delta": row["points"],
            "reason": "earn", "note": None, "purchase_id": row["id"], "user_id": p.id,
            "at": row["purchased_at"]} for row in out if row["points"]], p.id)
    return out


async def list_purchases(node: Node, p: Principal, filters: dict[str, Any],
                         cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """Purchases of customers `p` may see, most recently recorded first; `customer_id`
    takes in the archives merged into it; `from`/`to` bound `purchased_at` as [from, to)."""
    for key in ("from", "to"):
        bound = filters.get(key)
        if bound is not None and (not isinstance(bound, datetime) or bound.tzinfo is None):
            raise FieldError(key, "must be an instant with its offset")
    query = select(purchases).join(customers, customers.c.id == purchases.c.customer_id).where(
        customer_scope(p))
    if filters.get("branch") is not None:
        query = query.where(purchases.c.branch == filters["branch"])
    if filters.get("from") is not None:
        query = query.where(purchases.c.purchased_at >= filters["from"])
    if filters.get("to") is not None:
        query = query.where(purchases.c.purchased_at < filters["to"])
    if filters.get("on_credit") is not None:
        query = query.where(purchases.c.on_credit == filters["on_credit"])
    async with node.db.read() as conn:
        if filters.get("customer_id") is not None:
            survivor = await visible_customer(conn, p, filters["customer_id"])
            query = query.where(purchases.c.customer_id.in_(
                await customer_group(conn, survivor["id"])))
        return await page(conn, query, purchases.c.id, cursor, limit)
