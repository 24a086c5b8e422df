"""Purchases (domain.md §5): store, date, items, amount; points earned per yuan."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from schema import TABLES, utcnow
from server.node import Node
from server.services import customers as customer_service
from server.services.principal import Principal
from tests.conftest import add_user, login

Client = AsyncTestClient[Any]


async def new_customer(node: Node, p: Principal, **values: Any) -> dict[str, Any]:
    """A customer registered through the customer service (shared by the account tests)."""
    return await customer_service.create_customer(
        node, p, {"name": "张三", "customer_type": "person", "source": "walk_in", **values}, [])


def when(days_ago: float = 0) -> str:
    """An RFC 3339 instant `days_ago` before now."""
    return (utcnow() - timedelta(days=days_ago)).isoformat().replace("+00:00", "Z")


async def _count(node: Node, table: str) -> int:
    async with node.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(TABLES[table])))
                   .scalar_one())


async def test_purchase_earns_one_point_per_yuan_posted_with_it(
        client: Client, node: Node, org: None) -> None:
    clerk = await add_user(node, "s1clerk", "customer_service", "S001")
    c = await new_customer(node, clerk)
    headers = await login(client, "s1clerk")
    items = [{"sku": "A1", "name": "保温杯", "qty": 2, "price_fen": 4950},
             {"sku": "B2", "name": "茶叶礼盒", "qty": 1, "price_fen": 26880}]
    r = await client.post(f"/api/v1/customers/{c['id']}/purchases", headers=headers,
                          json={"purchased_at": when(), "items": items, "amount_fen": 36780})
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["points"], body["branch"], body["on_credit"]) == (367, "S001", False)
    r = await client.get(f"/api/v1/customers/{c['id']}/points", headers=headers)
    points = r.json()
    assert points["balance"] == 367 and points["unposted_delta"] == 0
    [entry] = points["entries"]
    assert entry["purchase_id"] == body["id"] and entry["delta"] == 367
    assert entry["reason"] == "earn" and entry["posted_at"] is not None


async def test_purchase_amount_must_equal_items_and_bad_input_writes_nothing(
        client: Client, node: Node, org: None) -> None:
    clerk = await add_user(node, "s1clerk", "customer_service", "S001")
    c = await new_customer(node, clerk)
    headers = await login(client, "s1clerk")
    url = f"/api/v1/customers/{c['id']}/purchases"
    item = {"sku": "A1", "name": "保温杯", "qty": 2, "price_fen": 4950}
    bad = [
        {"purchased_at": when(), "items": [item], "amount_fen": 9999},      # sum is 9900
        {"purchased_at": when(-1), "amount_fen": 100},                        # future
        {"purchased_at": "2026-01-01T10:00:00", "amount_fen": 100},           # no offset
        {"purchased_at": when(), "amount_fen": 0},
        {"purchased_at": when(), "amount_fen": 100, "items": [{**item, "qty": 0}]},
        {"purchased_at": when(), "amount_fen": 100, "prepaid_fen": 50},       # not on credit
        {"purchased_at": when(), "amount_fen": 100, "colour": "red"},
    ]
    for body in bad:
        r = await client.post(url, headers=headers, json=body)
        assert 400 <= r.status_code < 500, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert await _count(node, "purchases") == 0
    assert await _count(node, "point_entries") == 0


async def test_purchase_needs_a_visible_customer_and_a_customer_editor(
        client: Client, node: Node, org: None) -> None:
    s1 = await add_user(node, "s1clerk", "customer_service", "S001")
    await add_user(node, "s2clerk", "customer_service", "S002")
    await add_user(node, "tech", "technician", "S001")
    c = await new_customer(node, s1)
    body = {"purchased_at": when(), "amount_fen": 1000}
    r = await client.post(f"/api/v1/customers/{c['id']}/purchases", json=body,
                          headers=await login(client, "s2clerk"))
    assert r.status_code == 404
    r = await client.post(f"/api/v1/customers/{c['id']}/purchases", json=body,
                          headers=await login(client, "tech"))
    assert r.status_code == 403


async def test_purchases_list_filters_by_branch_customer_and_dates_in_pages(
        client: Client, node: Node, org: None) -> None:
    await add_user(node, "hqclerk", "archive_clerk")
    s1 = await add_user(node, "s1clerk", "customer_service", "S001")
    s2 = await add_user(node, "s2clerk", "customer_service", "S002")
    a = await new_customer(node, s1, name="甲")
    b = await new_customer(node, s2, name="乙")
    headers = await login(client, "hqclerk")
    for days in (1, 10, 40):
        for c in (a, b):
            r = await client.post(f"/api/v1/customers/{c['id']}/purchases", headers=headers,
                                  json={"purchased_at": when(days), "amount_fen": 1000 + days})
            assert r.status_code == 201, r.text
    r = await client.get("/api/v1/purchases", headers=headers, params={"branch": "S001"})
    assert {i["customer_id"] for i in r.json()["items"]} == {a["id"]}
    r = await client.get("/api/v1/purchases", headers=headers,
                         params={"from": when(30), "to": when(0), "customer_id": b["id"]})
    assert sorted(i["amount_fen"] for i in r.json()["items"]) == [1001, 1010]
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/purchases", headers=headers, params=params)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 6
    r = await client.get(f"/api/v1/customers/{a['id']}/purchases", headers=headers)
    assert len(r.json()["items"]) == 3
    # A store sees only its own customers' purchases.
    r = await client.get("/api/v1/purchases", headers=await login(client, "s2clerk"))
    assert {i["customer_id"] for i in r.json()["items"]} == {b["id"]}
    r = await client.get("/api/v1/purchases", headers=headers, params={"from": "yesterday"})
    assert r.status_code in (400, 422)


async def test_demo_seed_exercises_purchases_points_and_credit(node: Node, org: None) -> None:
    from server.demo_accounts import seed
    from server.services import loyalty

    users = {
        "finance": await add_user(node, "finance", "finance"),
        "director": await add_user(node, "director", "sales_director"),
        "archivist": await add_user(node, "archivist", "archive_clerk"),
        "s001.service": await add_user(node, "s001.service", "customer_service", "S001", "客服部"),
        "s002.manager": await add_user(node, "s002.manager", "dept_manager", "S002", "销售部"),
    }
    clerk = users["archivist"]
    for i in range(6):
        await new_customer(node, clerk, name=f"顾客{i}", branch="S001", department="销售部",
                           registered_at=utcnow() - timedelta(days=400 + i))
        await new_customer(node, clerk, name=f"某某公司{i}", customer_type="organisation",
                           branch="S001" if i % 2 else "S002", department="销售部")
    counts = await seed(node, random.Random(7), users)
    assert counts["purchases"] >= 10 and counts["credit_limits"] >= 4
    assert (counts["credit_requests"], counts["credit_shipped"]) == (2, 1)
    assert counts["unposted_entries"] == 1
    assert counts["purchases"] == await _count(node, "purchases")
    statuses = [r.status for r in await _rows(node, "credit_requests")]
    assert sorted(statuses) == ["requested", "shipped"]
    flags = await loyalty.flags(node, clerk)
    assert len(flags["stale"]) == 1 and flags["unknown_members"] == []


async def _rows(node: Node, table: str) -> list[Any]:
    async with node.db.read() as conn:
        return list(await conn.execute(select(TABLES[table])))


async def test_account_endpoints_are_in_openapi(client: Client) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    for path in ("/api/v1/customers/{customer_id}/purchases", "/api/v1/purchases",
                 "/api/v1/customers/{customer_id}/points", "/api/v1/points/redeem",
                 "/api/v1/points/earn", "/api/v1/loyalty/flags",
                 "/api/v1/customers/{customer_id}/credit",
                 "/api/v1/customers/{customer_id}/credit/check",
                 "/api/v1/customers/{customer_id}/credit/requests",
                 "/api/v1/customers/{customer_id}/credit-limit",
                 "/api/v1/customers/{customer_id}/credit/history",
                 "/api/v1/credit-requests/{request_id}/approve",
                 "/api/v1/credit-limit-requests/{request_id}/grant"):
        assert path in paths, path
