"""Demo data for purchases, loyalty points and credit (domain.md §5, §8), made through
the services: two years of purchases for most customers (so classification has facts
to work on), points earned and redeemed, a cross-store redemption HQ has not posted
yet, organisation customers with credit preconditions and limits, an over-limit
shipment approved and shipped, and one waiting for the sales director."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from schema import CUSTOMER_EDITORS, TABLES, utcnow
from server.node import Node
from server.services import credit, credit_limits, loyalty, purchases
from server.services.errors import ConflictError
from server.services.principal import Principal
from server.services.scope import in_scope

PRODUCTS: list[tuple[str, str, int]] = [
    ("TEA-001", "西湖龙井礼盒", 38_800), ("CUP-010", "真空保温杯", 9_900),
    ("RICE-005", "五常大米 5kg", 12_800), ("OIL-002", "压榨花生油 5L", 15_900),
    ("AIR-100", "空气净化器", 259_900), ("WAT-020", "净水器滤芯", 39_900),
    ("GIFT-050", "中秋月饼礼盒", 29_800), ("WINE-008", "干红葡萄酒", 16_800),
    ("CARE-003", "护肤礼盒套装", 45_900), ("TOOL-011", "电动工具套装", 89_900),
    ("OFF-001", "A4 复印纸（箱）", 18_900), ("PRN-002", "打印机硒鼓", 32_900),
]
TWO_YEARS = timedelta(days=730)
REDEEM_NOTES = ["兑换保温杯", "兑换购物券 50 元", "兑换雨伞", "积分抵现", "兑换中秋礼盒"]
EARN_NOTES = ["会员日双倍积分", "推荐新会员奖励", "生日积分", "参加品鉴会"]


def _items(rng: random.Random, organisation: bool) -> list[dict[str, Any]]:
    lines = rng.sample(PRODUCTS, rng.randint(1, 3))
    return [{"sku": sku, "name": name, "price_fen": price,
             "qty": rng.randint(2, 12) if organisation else rng.randint(1, 3)}
            for sku, name, price in lines]


def _clerk(users: dict[str, Principal], customer: dict[str, Any]) -> Principal:
    """A user of the customer's store who may record its purchases; HQ's archive clerk
    otherwise."""
    for p in users.values():
        if (p.branch is not None and p.branch == customer["branch"]
                and p.role in CUSTOMER_EDITORS and p.role != "sales_rep"
                and in_scope(p, customer)):
            return p
    return next(p for p in users.values() if p.hq_wide and p.role in CUSTOMER_EDITORS)


def _dates(rng: random.Random, since: datetime, now: datetime, n: int) -> list[datetime]:
    span = max(1.0, (now - since).total_seconds() - 3600)
    return sorted(since + timedelta(seconds=rng.uniform(0, span)) for _ in range(n))


async def _customers(node: Node) -> list[dict[str, Any]]:
    c = TABLES["customers"].c
    async with node.db.read() as conn:
        rows = await conn.execute(select(
            c.id, c.name, c.branch, c.department, c.owner_id, c.customer_type, c.registered_at)
            .where(c.merged_into.is_(None)).order_by(c.id))
        return [dict(r) for r in rows.mappings()]


async def _credit_customers(node: Node, users: dict[str, Principal],
                            orgs: list[dict[str, Any]], counts: dict[str, int]
                            ) -> list[dict[str, Any]]:
    """Preconditions and limits (set at HQ by finance) for some organisations; one in
    four lacks a precondition, so its credit is refused."""
    fin = users["finance"]
    ready = []
    for i, org in enumerate(orgs):
        missing = "last_year_settled" if i % 4 == 3 else None
        await credit.set_preconditions(node, fin, org["id"], {
            name: name != missing for name, _ in credit.PRECONDITIONS})
        limit = (5 + i % 6) * 100_000  # 5,000 to 10,000 元
        await credit_limits.set_limit(node, fin, org["id"], limit, "年度授信评审")
        counts["credit_limits"] += 1
        if i % 3 == 0:  # a reviewed and adjusted level (授信等级调整)
            await credit_limits.set_limit(node, fin, org["id"], limit + 200_000,
                                          "回款及时，上调额度")
            counts["credit_limits"] += 1
        if missing is None:
            ready.append({**org, "limit": limit + (200_000 if i % 3 == 0 else 0)})
    return ready


async def _over_limit(node: Node, users: dict[str, Principal], org: dict[str, Any],
                      counts: dict[str, int], *, approve: bool) -> None:
    """Fill 90 % of the limit this month, then ask to ship a fifth of the limit more
    (over by a tenth: below a third, so the sales director may sign it off)."""
    clerk = _clerk(users, org)
    limit = org["limit"]
    now = utcnow()
    await purchases.record_purchase(node, clerk, org["id"], {
        "purchased_at": now - timedelta(days=3), "amount_fen": limit * 9 // 10,
        "on_credit": True, "items": []})
    request = await credit.request_credit(node, clerk, org["id"], limit // 5,
                                          "节前备货，超额部分请区域经理审批")
    counts["credit_requests"] += 1
    if approve:
        await credit.decide_request(node, users["director"], request["id"], True)
        await purchases.record_purchase(node, clerk, org["id"], {
            "purchased_at": utcnow(), "amount_fen": limit // 5, "on_credit": True,
            "items": [], "credit_request_id": request["id"]})
        counts["credit_shipped"] += 1


async def seed(node: Node, rng: random.Random, users: dict[str, Principal]
               ) -> dict[str, int]:
    """Purchases, points and credit for the demo customers; counts by kind."""
    counts = {k: 0 for k in ("purchases", "credit_purchases", "points_earned",
                             "redemptions", "unposted_entries", "credit_limits",
                             "credit_requests", "credit_shipped")}
    everyone = await _customers(node)
    if not everyone:
        return counts
    now = utcnow()
    orgs = [c for c in everyone if c["customer_type"] == "organisation"]
    credit_orgs = await _credit_customers(node, users, orgs[:max(4, len(orgs) // 10)], counts)
    special = {c["id"] for c in credit_orgs[:2]}
    buyers = [c for c in everyone if rng.random() < 0.7 and c["id"] not in special]
    for customer in buyers[:1200]:
        organisation = customer["customer_type"] == "organisation"
        since = max(customer["registered_at"], now - TWO_YEARS)
        n = rng.choice([1, 1, 2, 3, 4, 6, 9, 14]) * (2 if organisation else 1)
        batch = []
        for at in _dates(rng, since, now, n):
            items = _items(rng, organisation)
            batch.append({"purchased_at": at, "items": items, "on_credit": False,
                          "amount_fen": sum(i["qty"] * i["price_fen"] for i in items)})
        clerk = _clerk(users, customer)
        await purchases.record_purchases(node, clerk, customer["id"], batch)
        counts["purchases"] += len(batch)
        counts["points_earned"] += sum(loyalty.points_for(b["amount_fen"]) for b in batch)
        if rng.random() < 0.25:
            balance = sum(loyalty.points_for(b["amount_fen"]) for b in batch)
            points = min(balance, rng.choice([100, 200, 500, 1000]))
            if points:
                await loyalty.change_points(node, clerk, customer["id"], points, "redeem",
                                            rng.choice(REDEEM_NOTES))
                counts["redemptions"] += 1
        elif rng.random() < 0.1:
            await loyalty.change_points(node, clerk, customer["id"], rng.choice([50, 100, 200]),
                                        "earn", rng.choice(EARN_NOTES))
    for org in credit_orgs[2:]:
        clerk = _clerk(users, org)
        for at in _dates(rng, now - timedelta(days=90), now, 4):
            try:  # shipped on credit where the rules allow it, paid in cash otherwise
                await purchases.record_purchase(node, clerk, org["id"], {
                    "purchased_at": at, "amount_fen": org["limit"] // 4, "on_credit": True,
                    "items": []})
                counts["credit_purchases"] += 1
            except ConflictError:
                await purchases.record_purchase(node, clerk, org["id"], {
                    "purchased_at": at, "amount_fen": org["limit"] // 4, "items": []})
            counts["purchases"] += 1
    for i, org in enumerate(credit_orgs[:2]):
        await _over_limit(node, users, org, counts, approve=i == 0)
        counts["purchases"] += 1 + (i == 0)
        counts["credit_purchases"] += 1 + (i == 0)
    await _cross_store_entry(node, users, everyone, counts)
    return counts


async def _cross_store_entry(node: Node, users: dict[str, Principal],
                             everyone: list[dict[str, Any]], counts: dict[str, int]) -> None:
    """A member of one store redeemed points at another while offline two days ago: the
    entry reached HQ, which has not posted it yet (it shows under the loyalty flags until
    HQ's next posting run). Written as sync delivers it: the store's unposted row."""
    member = next((c for c in everyone if c["branch"] not in (None, "S002")), None)
    store = next((p for p in users.values() if p.branch == "S002"), None)
    if member is None or store is None:
        return
    async with node.db.write(node.node_id, store.id) as uow:
        await uow.insert("point_entries", {
            "branch": "S002", "member_id": member["id"], "delta": -60, "reason": "redeem",
            "note": "异店兑换（离线）", "user_id": store.id,
            "at": utcnow() - timedelta(days=2)})
    counts["unposted_entries"] += 1
