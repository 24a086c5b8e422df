"""Registration (客户登记), ownership rules, filing (备案) deadlines and import with
de-duplication (domain.md §3)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from schema import LOCAL_TZ, TABLES, utcnow
from server.node import Node
from server.services import registration
from tests.conftest import add_user, login

Client = AsyncTestClient[Any]


async def _register(client: Client, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await client.post("/api/v1/customers", headers=headers, json={"name": "张三", **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _count(node: Node) -> int:
    async with node.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(
            TABLES["customers"]))).scalar_one())


async def test_registration_records_source_intention_agency_and_referrers(
        client: Client, node: Node, org: None) -> None:
    await add_user(node, "rep1", "sales_rep", "S001", "销售部")
    h = await login(client, "rep1")
    old = await _register(client, h, name="老客户")
    c = await _register(client, h, name="新客户", source="agency", intention=True,
                        agency=True, referrer_customer_id=old["id"])
    assert (c["source"], c["intention"], c["agency"]) == ("agency", True, True)
    assert c["referrer_customer_id"] == old["id"]
    assert c["filing_status"] == "registered" and c["filing_deadline"] is not None
    r = await client.post("/api/v1/customers", headers=h,
                          json={"name": "x", "source": "newspaper"})
    assert r.status_code == 422


async def test_referral_goes_to_referring_rep_only_if_customer_asks(
        client: Client, node: Node, org: None) -> None:
    rep1 = await add_user(node, "rep1", "sales_rep", "S001", "销售部")
    rep2 = await add_user(node, "rep2", "sales_rep", "S001", "销售部")
    rep9 = await add_user(node, "rep9", "sales_rep", "S002", "销售部")
    h = await login(client, "rep1")
    plain = await _register(client, h, name="未指定", source="referral",
                            referrer_user_id=rep2.id)
    assert plain["owner_id"] == rep1.id and plain["referrer_user_id"] == rep2.id
    asked = await _register(client, h, name="点名要", source="referral",
                            referrer_user_id=rep2.id, asked_for_referrer=True)
    assert asked["owner_id"] == rep2.id
    # rep1 registered it but it is rep2's now: rep1 no longer sees it.
    r = await client.get(f"/api/v1/customers/{asked['id']}", headers=h)
    assert r.status_code == 404
    for body, field in (({"source": "walk_in", "asked_for_referrer": True},
                         "asked_for_referrer"),
                        ({"source": "referral", "asked_for_referrer": True},
                         "referrer_user_id")):
        r = await client.post("/api/v1/customers", headers=h, json={"name": "x", **body})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
    # The referring rep works at another store: register the customer there.
    r = await client.post("/api/v1/customers", headers=h, json={
        "name": "跨店", "source": "referral", "asked_for_referrer": True,
        "referrer_user_id": rep9.id})
    assert r.status_code == 422 and "S002" in r.json()["detail"]


async def test_manager_registering_names_the_owner_or_owns_it(
        client: Client, node: Node, org: None) -> None:
    mgr = await add_user(node, "mgr1", "dept_manager", "S001", "销售部")
    rep = await add_user(node, "rep1", "sales_rep", "S001", "销售部")
    h = await login(client, "mgr1")
    assert (await _register(client, h, name="甲"))["owner_id"] == mgr.id
    assert (await _register(client, h, name="乙", owner_id=rep.id))["owner_id"] == rep.id


async def test_registering_a_registered_mobile_is_409_naming_the_earlier_registration(
        client: Client, node: Node, org: None) -> None:
    await add_user(node, "rep1", "sales_rep", "S001", "销售部")
    await add_user(node, "rep2", "sales_rep", "S001", "销售部")
    first = await _register(client, await login(client, "rep1"), name="王五",
                            mobile="13800001111")
    before = await _count(node)
    r = await client.post("/api/v1/customers", headers=await login(client, "rep2"),
                          json={"name": "王五", "mobile": "+86 138-0000-1111"})
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert first["id"] in detail and "rep1" in detail and "138****1111" in detail
    assert await _count(node) == before  # nothing written
    # Another number is fine.
    await _register(client, await login(client, "rep2"), name="王五", mobile="13800001112")


async def test_filing_sets_status_and_time_once(client: Client, node: Node,
                                                 clerk: dict[str, str]) -> None:
    c = await _register(client, clerk)
    r = await client.post(f"/api/v1/customers/{c['id']}/file", headers=clerk)
    assert r.status_code == 200, r.text
    assert r.json()["filing_status"] == "filed" and r.json()["filed_at"] is not None
    r = await client.post(f"/api/v1/customers/{c['id']}/file", headers=clerk)
    assert r.status_code == 409


async def test_filing_deadline_is_five_working_days_after_registration() -> None:
    # Monday 2025-09-29; National Day 1-8 Oct; Saturday 11 Oct is a working day (调休).
    registered = datetime(2025, 9, 29, 10, 0, tzinfo=LOCAL_TZ)
    flags = registration.deadline_flags(registered, registered)
    deadline = flags["filing_deadline"].astimezone(LOCAL_TZ)
    assert (deadline.date().isoformat(), deadline.hour) == ("2025-10-13", 23)
    assert not flags["overdue"] and not flags["due_soon"]
    late = registration.deadline_flags(registered, datetime(2025, 10, 14, 9, tzinfo=LOCAL_TZ))
    assert late["overdue"]
    soon = registration.deadline_flags(registered, datetime(2025, 10, 11, 9, tzinfo=LOCAL_TZ))
    assert soon["due_soon"] and not soon["overdue"]


async def test_due_list_flags_overdue_and_due_soon_for_the_callers_customers(
        client: Client, node: Node, org: None) -> None:
    await add_user(node, "rep1", "sales_rep", "S001", "销售部")
    await add_user(node, "rep2", "sales_rep", "S001", "销售部")
    h1, h2 = await login(client, "rep1"), await login(client, "rep2")
    now = utcnow()
    soon_at = next(now - timedelta(days=k) for k in range(15)
                   if registration.deadline_flags(now - timedelta(days=k), now)["due_soon"])
    made = {
        "overdue": await _register(client, h1, name="逾期",
                                   registered_at=(now - timedelta(days=30)).isoformat()),
        "soon": await _register(client, h1, name="将到期", registered_at=soon_at.isoformat()),
        "fresh": await _register(client, h1, name="新登记"),
        "filed": await _register(client, h1, name="已备案"),
    }
    await _register(client, h2, name="别人的")
    await client.post(f"/api/v1/customers/{made['filed']['id']}/file", headers=h1)
    r = await client.get("/api/v1/registrations/due", headers=h1)
    assert r.status_code == 200, r.text
    items = {i["name"]: i for i in r.json()["items"]}
    assert set(items) == {"逾期", "将到期", "新登记"}
    assert items["逾期"]["overdue"] and not items["逾期"]["due_soon"]
    assert items["将到期"]["due_soon"] and not items["将到期"]["overdue"]
    assert not items["新登记"]["overdue"] and not items["新登记"]["due_soon"]
    for params, names in (({"overdue": "true"}, {"逾期"}), ({"due_soon": "true"}, {"将到期"}),
                          ({"overdue": "false", "due_soon": "false"}, {"新登记"})):
        r = await client.get("/api/v1/registrations/due", headers=h1, params=params)
        assert {i["name"] for i in r.json()["items"]} == names, params


async def test_import_dry_run_reports_each_item_and_writes_nothing(
        client: Client, node: Node, clerk: dict[str, str]) -> None:
    existing = await _register(client, clerk, name="老王", mobile="13900000001")
    items = [
        {"name": "新甲", "mobile": "13900000002"},
        {"name": "重复", "mobile": "139 0000 0001"},
        {"name": "批内一", "mobile": "13900000003"},
        {"name": "批内二", "mobile": "13900000003"},
        {"name": "坏号码", "mobile": "12345"},
        {"name": "", "source": "walk_in"},
        {"name": "老王", "mobile": "13900000004"},
        {"name": "怪字段", "nope": 1},
    ]
    before = await _count(node)
    r = await client.post("/api/v1/customers/import", headers=clerk,
                          json={"items": items, "dry_run": True})
    assert r.status_code == 200, r.text
    got = r.json()["items"]
    assert [i["status"] for i in got] == ["ok", "duplicate", "ok", "duplicate", "invalid",
                                          "invalid", "ok", "invalid"]
    assert (got[1]["duplicate_of"], got[1]["by"]) == (existing["id"], "mobile")
    assert (got[3]["duplicate_of"], got[3]["by"]) == ("item 2", "mobile")
    assert got[4]["field"] == "mobile" and got[5]["field"] == "name"
    assert got[7]["field"] == "nope"
    assert got[6]["similar_to"] == [existing["id"]]
    assert r.json()["created"] == 0 and await _count(node) == before


async def test_import_writes_only_non_duplicates_in_one_transaction(
        client: Client, node: Node, clerk: dict[str, str]) -> None:
    await _register(client, clerk, name="老王", mobile="13900000001")
    items = [{"name": "新甲", "mobile": "13900000002",
              "contacts": [{"name": "甲联系人"}]},
             {"name": "重复", "mobile": "13900000001"},
             {"name": "坏", "email": "not-an-email"}]
    before = await _count(node)
    r = await client.post("/api/v1/customers/import", headers=clerk, json={"items": items})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["created"] == 1 and await _count(node) == before + 1
    created = body["items"][0]["id"]
    r = await client.get(f"/api/v1/customers/{created}", headers=clerk)
    assert r.json()["name"] == "新甲" and len(r.json()["contacts"]) == 1
    # Importing the same again: now a duplicate of what was written.
    r = await client.post("/api/v1/customers/import", headers=clerk,
                          json={"items": items[:1]})
    assert r.json()["items"][0] == {"index": 0, "status": "duplicate",
                                    "duplicate_of": created, "by": "mobile"}


async def test_demo_seed_exercises_registration_merges_and_handover(
        node: Node, org: None, backend: str) -> None:
    from server.demo_registration import seed
    from server.services.customers import create_customers
    from server.services.principal import Principal

    users: dict[str, Principal] = {}
    for name, role, branch in (("archivist", "archive_clerk", None),
                               ("gm", "general_manager", None),
                               ("s001.manager", "dept_manager", "S001"),
                               ("s001.rep1", "sales_rep", "S001"),
                               ("s001.rep2", "sales_rep", "S001"),
                               ("s002.manager", "dept_manager", "S002"),
                               ("s002.rep1", "sales_rep", "S002")):
        users[name] = await add_user(node, name, role, branch, "销售部" if branch else None)
    reps = [users["s001.rep1"], users["s001.rep2"], users["s002.rep1"]]
    await create_customers(node, users["archivist"], [
        ({"name": f"演示客户{i}", "customer_type": "person", "source": "walk_in",
          "mobile": f"1380000{i:04d}", "owner_id": reps[i % 3].id, "branch": reps[i % 3].branch,
          "department": "销售部", "customer_class": "key" if i % 4 == 0 else "ordinary",
          "registered_at": utcnow() - timedelta(days=i)}, [])
        for i in range(24)])
    counts = await seed(node, random.Random(7), users)
    assert counts["filed"] >= 3 and counts["overdue"] >= 2
    assert counts["collisions"] >= 2 and counts["merges"] == 1
    assert counts["handovers"] >= 1 and counts["notices"] >= 3
    async with node.db.read() as conn:
        merged = (await conn.execute(select(func.count()).select_from(
            TABLES["customer_merges"]))).scalar_one()
        notes = (await conn.execute(select(func.count()).select_from(
            TABLES["notices"]))).scalar_one()
    assert merged == counts["collisions"] + counts["merges"]
    assert notes == counts["notices"]
