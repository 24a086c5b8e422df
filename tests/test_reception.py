"""Reception expenses (招待费, domain.md §3, §5): per-person caps by class, companions by
guest count, and no reimbursement for customers never registered (客户未登记)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from schema import TABLES, FieldError, new_id
from server.node import Node
from server.services import reception
from tests.conftest import add_user, login
from tests.test_classification import customer

Client = AsyncTestClient[Any]
UNREGISTERED = "expenses for unregistered customers are not reimbursed (客户未登记)"


async def _count(node: Node) -> int:
    async with node.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(
            TABLES["reception_expenses"]))).scalar_one())


@pytest.mark.parametrize(("guests", "allowed"), [
    (1, 1), (4, 1), (5, 2), (10, 2), (11, 3), (30, 3),
])
def test_companions_allowed_by_guest_count(guests: int, allowed: int) -> None:
    """Under 5 guests 1, 5-10 guests 2, over 10 guests 3: "3 or more" is read as 3 by
    rule (more needs a manager's exception outside this record)."""
    assert reception.allowed_companions(guests) == allowed
    reception.check_expense("D", guests, allowed, 0)
    with pytest.raises(FieldError) as err:
        reception.check_expense("D", guests, allowed + 1, 0)
    assert err.value.field == "companions"


@pytest.mark.parametrize(("cls", "per_person"), [
    ("A", 50_000), ("B", 30_000), ("C", 20_000), ("D", 15_000),
])
def test_cap_is_per_person_over_guests_and_companions(cls: str, per_person: int) -> None:
    cap = per_person * 7  # 5 guests + 2 companions
    assert reception.cap_fen(cls, 5, 2) == cap
    reception.check_expense(cls, 5, 2, cap)
    with pytest.raises(FieldError) as err:
        reception.check_expense(cls, 5, 2, cap + 1)
    assert err.value.field == "amount_fen" and f"{per_person // 100}.00 元 per person" in \
        err.value.message


async def test_an_expense_within_the_cap_is_recorded_with_its_cap(
        client: Client, node: Node, org: None, backend: str) -> None:
    c = await customer(node, "招待客户", branch="S001", abc_class="B")
    await add_user(node, "m1", "dept_manager", "S001")
    h = await login(client, "m1")
    url = f"/api/v1/customers/{c}/reception-expenses"
    body = {"guests": 3, "companions": 1, "amount_fen": 120_000, "spent_on": "2026-05-20",
            "purpose": "商务午餐"}
    r = await client.post(url, json=body, headers=h)
    assert r.status_code == 201, r.text
    e = r.json()
    assert (e["reception_class"], e["cap_fen"], e["branch"]) == ("B", 120_000, "S001")
    r = await client.post(url, json={**body, "amount_fen": 120_001}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "amount_fen"
    assert "1,200.00 元" in r.json()["detail"]
    r = await client.post(url, json={**body, "reception_class": "A", "amount_fen": 200_000},
                          headers=h)
    assert r.status_code == 201 and r.json()["cap_fen"] == 200_000
    r = await client.post(url, json={**body, "companions": 2}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "companions"
    assert await _count(node) == 2


async def test_class_defaults_to_the_customers_abc_class_or_must_be_named(
        client: Client, node: Node, backend: str) -> None:
    unclassed = await customer(node, "未分类")
    await add_user(node, "cs", "customer_service")
    h = await login(client, "cs")
    body = {"guests": 1, "amount_fen": 10_000, "spent_on": "2026-05-20"}
    r = await client.post(f"/api/v1/customers/{unclassed}/reception-expenses", json=body,
                          headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reception_class"
    r = await client.post(f"/api/v1/customers/{unclassed}/reception-expenses",
                          json={**body, "reception_class": "D"}, headers=h)
    assert r.status_code == 201 and r.json()["cap_fen"] == 15_000


async def test_expenses_for_unregistered_customers_are_refused_and_nothing_is_written(
        client: Client, node: Node, org: None, backend: str) -> None:
    elsewhere = await customer(node, "杭州客户", branch="S002", abc_class="A")
    await add_user(node, "m1", "dept_manager", "S001")
    h = await login(client, "m1")
    body = {"guests": 2, "amount_fen": 1_000, "spent_on": "2026-05-20"}
    for cid in (new_id(), elsewhere):
        r = await client.post(f"/api/v1/customers/{cid}/reception-expenses", json=body,
                              headers=h)
        assert r.status_code == 404 and r.json()["detail"] == UNREGISTERED
    assert await _count(node) == 0
    await add_user(node, "aud", "auditor")
    r = await client.post(f"/api/v1/customers/{elsewhere}/reception-expenses", json=body,
                          headers=await login(client, "aud"))
    assert r.status_code == 403


async def test_an_absorbed_customer_is_registered_through_its_survivor(
        node: Node, backend: str) -> None:
    survivor = await customer(node, "存续", abc_class="C")
    absorbed = await customer(node, "被合并")
    async with node.db.write(node.node_id, None) as uow:
        await uow.update("customers", absorbed, {"merged_into": survivor})
    rep = await add_user(node, "gm", "general_manager")
    from datetime import date
    row = await reception.record_expense(node, rep, absorbed, {
        "guests": 1, "companions": 0, "amount_fen": 100, "spent_on": date(2026, 5, 1)})
    assert (row["customer_id"], row["reception_class"]) == (survivor, "C")


async def test_expense_list_filters(client: Client, node: Node, org: None,
                                    backend: str) -> None:
    from datetime import date
    a = await customer(node, "上海", branch="S001", abc_class="A")
    b = await customer(node, "杭州", branch="S002", abc_class="D")
    gm = await add_user(node, "gm", "general_manager")
    for cid, day in ((a, date(2026, 1, 5)), (a, date(2026, 3, 5)), (b, date(2026, 3, 9))):
        await reception.record_expense(node, gm, cid, {
            "guests": 1, "companions": 0, "amount_fen": 100, "spent_on": day})
    h = await login(client, "gm")

    async def n(url: str = "/api/v1/reception-expenses", **params: Any) -> int:
        r = await client.get(url, params=params, headers=h)
        assert r.status_code == 200, r.text
        return len(r.json()["items"])
    assert await n() == 3
    assert await n(branch="S002") == 1
    assert await n(reception_class="A") == 2
    assert await n(customer_id=a) == 2
    assert await n(**{"from": "2026-03-01", "to": "2026-03-06"}) == 1
    assert await n(f"/api/v1/customers/{b}/reception-expenses") == 1
    await add_user(node, "m2", "dept_manager", "S002")
    r = await client.get("/api/v1/reception-expenses", headers=await login(client, "m2"))
    assert [i["customer_name"] for i in r.json()["items"]] == ["杭州"]
