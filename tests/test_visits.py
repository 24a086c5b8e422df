"""Visits and care (domain.md §5): plans per class, visit records, return visits and
surveys with scores, reminders for due and overdue visits, birthdays and holidays, the
satisfaction summary with yearly coverage, and the demo seed."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from schema import TABLES, local_day, utcnow
from server import demo_care
from server.node import Node
from server.services import classification, visits
from server.services.principal import Principal
from tests.conftest import add_user, login
from tests.test_classification import TIER, customer

Client = AsyncTestClient[Any]
T = timedelta


async def _setup(node: Node, care: list[str] | None = None) -> Principal:
    """HQ with the tier scheme and plans: key every 30 days, ordinary every 90."""
    gm = await add_user(node, "gm", "general_manager")
    await classification.create_scheme(node, gm, TIER)
    await visits.create_plan(node, gm, {"scheme": "tier", "cls": "key", "every_days": 30,
                                        "care": care or []})
    await visits.create_plan(node, gm, {"scheme": "tier", "cls": "ordinary", "every_days": 90,
                                        "care": []})
    return gm


async def _contact(node: Node, customer_id: str, name: str = "联系人") -> str:
    async with node.db.write(node.node_id, None) as uow:
        row = await uow.insert("contacts", {"customer_id": customer_id, "name": name})
    return str(row["id"])


async def _visit(node: Node, p: Principal, customer_id: str, days_ago: float, **extra: Any
                 ) -> dict[str, Any]:
    return await visits.record_visit(node, p, customer_id, {
        "kind": "visit", "visited_at": utcnow() - T(days=days_ago), **extra})


# -- plans ----------------------------------------------------------------------------

async def test_plans_are_hq_reference_checked_against_the_scheme(
        client: Client, node: Node, backend: str) -> None:
    gm_p = await add_user(node, "gm", "general_manager")
    await classification.create_scheme(node, gm_p, TIER)
    gm = await login(client, "gm")
    body = {"scheme": "tier", "cls": "key", "every_days": 30, "care": ["birthday", "holiday"]}
    r = await client.post("/api/v1/visit-plans", json=body, headers=gm)
    assert r.status_code == 201 and r.json()["care"] == ["birthday", "holiday"], r.text
    plan = r.json()["id"]
    r = await client.post("/api/v1/visit-plans", json=body, headers=gm)
    assert r.status_code == 409  # one active plan per class
    r = await client.post("/api/v1/visit-plans", json={**body, "scheme": "nope"}, headers=gm)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "scheme"
    r = await client.post("/api/v1/visit-plans", json={**body, "cls": "vip"}, headers=gm)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "cls"
    r = await client.post("/api/v1/visit-plans", json={**body, "care": ["karaoke"]}, headers=gm)
    assert r.status_code in (400, 422)
    await add_user(node, "rep", "sales_rep")
    rep = await login(client, "rep")
    r = await client.patch(f"/api/v1/visit-plans/{plan}", json={"every_days": 7}, headers=rep)
    assert r.status_code == 403
    r = await client.patch(f"/api/v1/visit-plans/{plan}", json={"every_days": 14}, headers=gm)
    assert r.status_code == 200 and r.json()["every_days"] == 14
    r = await client.get("/api/v1/visit-plans", params={"scheme": "tier"}, headers=rep)
    assert [p["every_days"] for p in r.json()["items"]] == [14]


# -- visit records --------------------------------------------------------------------

async def test_a_visit_records_when_where_contact_content_result_and_next_step(
        client: Client, node: Node, org: None, backend: str) -> None:
    c = await customer(node, "拜访客户", branch="S001")
    other = await customer(node, "别人", branch="S001")
    contact = await _contact(node, c)
    stranger = await _contact(node, other)
    await add_user(node, "m1", "dept_manager", "S001")
    m1 = await login(client, "m1")
    body = {"kind": "visit", "visited_at": "2026-03-02T02:00:00Z", "place": "客户办公室",
            "contact_id": contact, "content": "介绍新品", "result": "有意向",
            "next_step": "寄样品", "next_visit_on": "2026-03-16"}
    r = await client.post(f"/api/v1/customers/{c}/visits", json=body, headers=m1)
    assert r.status_code == 201, r.text
    v = r.json()
    assert (v["place"], v["contact_id"], v["next_visit_on"], v["branch"]) == (
        "客户办公室", contact, "2026-03-16", "S001")
    assert v["user_id"] is not None and v["satisfaction"] is None
    r = await client.post(f"/api/v1/customers/{c}/visits", headers=m1,
                          json={**body, "contact_id": stranger})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "contact_id"
    r = await client.post(f"/api/v1/customers/{c}/visits", headers=m1,
                          json={**body, "next_visit_on": "2026-03-01"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "next_visit_on"
    future = (utcnow() + T(days=2)).isoformat()
    r = await client.post(f"/api/v1/customers/{c}/visits", headers=m1,
                          json={"kind": "visit", "visited_at": future})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "visited_at"
    r = await client.post(f"/api/v1/customers/{c}/visits", headers=m1,
                          json={"kind": "return_visit", "related_id": stranger,
                                "satisfaction": 5})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "related_id"
    r = await client.get(f"/api/v1/customers/{c}/visits", headers=m1)
    assert [i["id"] for i in r.json()["items"]] == [v["id"]]


async def test_satisfaction_is_required_for_return_visits_and_surveys_only(
        client: Client, node: Node, backend: str) -> None:
    c = await customer(node, "满意度")
    await add_user(node, "cs", "customer_service")
    cs = await login(client, "cs")
    url = f"/api/v1/customers/{c}/visits"
    for kind in ("return_visit", "survey"):
        r = await client.post(url, json={"kind": kind}, headers=cs)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "satisfaction"
        r = await client.post(url, json={"kind": kind, "satisfaction": 6}, headers=cs)
        assert r.status_code == 422
        r = await client.post(url, json={"kind": kind, "satisfaction": 4}, headers=cs)
        assert r.status_code == 201 and r.json()["satisfaction"] == 4
    for kind in ("visit", "care"):
        r = await client.post(url, json={"kind": kind, "satisfaction": 3}, headers=cs)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "satisfaction"
    first = (await client.get(url, headers=cs)).json()["items"][-1]
    r = await client.post(url, headers=cs, json={"kind": "return_visit", "satisfaction": 5,
                                                 "related_id": first["id"]})
    assert r.status_code == 201 and r.json()["related_id"] == first["id"]


async def test_visit_list_filters_by_user_kind_branch_customer_and_days(
        client: Client, node: Node, org: None, backend: str) -> None:
    a = await customer(node, "上海", branch="S001")
    b = await customer(node, "杭州", branch="S002")
    m1 = await add_user(node, "m1", "dept_manager", "S001")
    m2 = await add_user(node, "m2", "dept_manager", "S002")
    gm = await add_user(node, "gm", "general_manager")
    await _visit(node, m1, a, 10)
    await visits.record_visit(node, m1, a, {"kind": "survey", "satisfaction": 5})
    await _visit(node, m2, b, 1)
    await _visit(node, gm, b, 40)
    h = await login(client, "gm")

    async def ids(**params: Any) -> int:
        r = await client.get("/api/v1/visits", params=params, headers=h)
        assert r.status_code == 200, r.text
        return len(r.json()["items"])
    assert await ids() == 4
    assert await ids(user_id=m1.id) == 2
    assert await ids(kind="survey") == 1
    assert await ids(branch="S002") == 2
    assert await ids(customer_id=b) == 2
    since = (local_day(utcnow()) - T(days=15)).isoformat()
    assert await ids(**{"from": since}) == 3
    assert await ids(to=(local_day(utcnow()) - T(days=30)).isoformat()) == 1
    r = await client.get("/api/v1/visits", headers=await login(client, "m2"))
    assert {i["customer_name"] for i in r.json()["items"]} == {"杭州"}  # scope
    r = await client.post(f"/api/v1/customers/{a}/visits", json={"kind": "visit"},
                          headers=await login(client, "m2"))
    assert r.status_code == 404


# -- reminders ------------------------------------------------------------------------

async def test_due_visits_run_from_the_last_visit_or_registration_or_next_visit_on(
        node: Node, backend: str) -> None:
    gm = await _setup(node)
    now = utcnow()
    today = local_day(now)
    overdue = await customer(node, "逾期", customer_class="key", registered_at=now - T(days=40))
    fresh = await customer(node, "刚拜访", customer_class="key", registered_at=now - T(days=90))
    promised = await customer(node, "约定", customer_class="key", registered_at=now - T(days=90))
    soon = await customer(node, "将到期", customer_class="ordinary",
                          registered_at=now - T(days=200))
    kept = await customer(node, "已履约", customer_class="key", registered_at=now - T(days=90))
    await customer(node, "无计划", customer_class="vip", registered_at=now - T(days=900))
    await _visit(node, gm, fresh, 5)
    await _visit(node, gm, promised, 5, next_visit_on=today + T(days=3))
    await _visit(node, gm, soon, 80)
    await _visit(node, gm, kept, 20, next_visit_on=today - T(days=10))
    await _visit(node, gm, kept, 5)
    await visits.record_visit(node, gm, fresh, {"kind": "care"})  # greetings are no visit
    items, cursor = await visits.due_reminders(node, gm, 14, None, 50)
    got = {i["customer_name"]: (i["due_on"], i["overdue"]) for i in items}
    assert got == {
        "逾期": (local_day(now - T(days=40)) + T(days=30), True),
        "约定": (today + T(days=3), False),
        "将到期": (local_day(now - T(days=80)) + T(days=90), False),
    }
    assert cursor is None and {i["kind"] for i in items} == {"visit"}
    assert [i["every_days"] for i in items if i["customer_name"] == "将到期"] == [90]
    assert overdue and kept


async def test_the_strictest_plan_of_a_customer_decides(node: Node, backend: str) -> None:
    gm = await _setup(node)
    await classification.install_defaults(node, gm)  # lifecycle: lost every 60 days
    await visits.install_default_plans(node, gm)
    now = utcnow()
    await customer(node, "流失", customer_class="ordinary", lifecycle_stage="lost",
                   registered_at=now - T(days=70))
    [item] = [i for i in (await visits.due_reminders(node, gm, 0, None, 50))[0]
              if i["kind"] == "visit"]
    assert (item["scheme"], item["cls"], item["every_days"], item["overdue"]) == (
        "lifecycle", "lost", 60, True)


async def test_birthday_reminders_only_for_roles_that_read_birthdays(
        node: Node, backend: str) -> None:
    gm = await _setup(node, care=["birthday"])
    today = local_day(utcnow())
    soon = today + T(days=5)
    c = await customer(node, "寿星", customer_class="key", registered_at=utcnow(),
                       birthday=date(1980, soon.month, min(soon.day, 28)))
    await customer(node, "远", customer_class="key", registered_at=utcnow(),
                   birthday=today + T(days=100))
    manager = await add_user(node, "mgr", "dept_manager")
    auditor = await add_user(node, "aud", "auditor")
    items = (await visits.due_reminders(node, manager, 14, None, 50))[0]
    [b] = [i for i in items if i["kind"] == "birthday"]
    assert b["customer_id"] == c and b["due_on"] == date(soon.year, soon.month,
                                                         min(soon.day, 28))
    audit = TABLES["read_audit"]
    async with node.db.read() as conn:
        reads = (await conn.execute(select(audit.c.customer_id, audit.c.fields).where(
            audit.c.user_id == manager.id))).all()
    assert [(r.customer_id, r.fields) for r in reads] == [(c, ["birthday"])]
    items = (await visits.due_reminders(node, auditor, 14, None, 50))[0]
    assert [i for i in items if i["kind"] == "birthday"] == []
    assert gm


async def test_holiday_care_for_plans_that_include_it(node: Node, backend: str) -> None:
    gm = await _setup(node, care=["holiday"])
    await customer(node, "节日", customer_class="key")
    await customer(node, "普通", customer_class="ordinary")
    items = (await visits.due_reminders(node, gm, 14, None, 50, today=date(2026, 9, 28)))[0]
    assert [(i["customer_name"], i["due_on"], i["holiday"]) for i in items] == [
        ("节日", date(2026, 10, 1), "National Day")]
    assert visits.next_birthday(date(1988, 2, 29), date(2027, 2, 1)) == date(2027, 2, 28)


async def test_due_reminders_over_http_are_paged(client: Client, node: Node,
                                                 backend: str) -> None:
    await _setup(node)
    for i in range(3):
        await customer(node, f"逾期{i}", customer_class="key",
                       registered_at=utcnow() - T(days=60))
    h = await login(client, "gm")
    r = await client.get("/api/v1/visits/due", params={"days": 14, "limit": 2}, headers=h)
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == 2 and r.json()["items"][0]["overdue"] is True
    r = await client.get("/api/v1/visits/due", headers=h,
                         params={"limit": 2, "cursor": r.json()["next_cursor"]})
    assert len(r.json()["items"]) == 1 and r.json()["next_cursor"] is None


# -- satisfaction ---------------------------------------------------------------------

async def test_survey_summary_average_share_below_target_and_coverage(
        client: Client, node: Node, backend: str) -> None:
    cs = await add_user(node, "cs", "customer_service")
    ids = [await customer(node, f"客户{i}") for i in range(4)]
    for c, score in ((ids[0], 5), (ids[1], 3), (ids[1], 2)):
        await visits.record_visit(node, cs, c, {"kind": "survey", "satisfaction": score})
    await visits.record_visit(node, cs, ids[2], {"kind": "return_visit", "satisfaction": 4})
    await visits.record_visit(node, cs, ids[3], {
        "kind": "survey", "satisfaction": 1, "visited_at": utcnow() - T(days=400)})
    h = await login(client, "cs")
    r = await client.get("/api/v1/surveys/summary", headers=h)
    assert r.status_code == 200, r.text
    s = r.json()
    assert (s["count"], s["average"], s["below_target"], s["below_target_share"]) == (
        4, 3.5, 2, 0.5)
    assert [(i["customer_id"], i["satisfaction"]) for i in s["corrective"]] == [
        (ids[1], 2), (ids[1], 3)]
    assert (s["visible_customers"], s["surveyed_365d"], s["coverage"]) == (4, 2, 0.5)
    old = (local_day(utcnow()) - T(days=400)).isoformat()
    r = await client.get("/api/v1/surveys/summary", headers=h,
                         params={"from": old, "to": old})
    assert (r.json()["count"], r.json()["average"], r.json()["from"]) == (1, 1.0, old)
    r = await client.get("/api/v1/surveys/summary", headers=h,
                         params={"from": "2026-02-01", "to": "2026-01-01"})
    assert r.status_code == 422


# -- demo -----------------------------------------------------------------------------

async def test_demo_seed_exercises_every_workflow(node: Node, backend: str) -> None:
    from server.demo import USERS
    from server.services import org
    from server.services.users import create_user

    await org.create_region(node, None, "EAST", "华东区")
    for code in ("S001", "S002", "S003"):
        await org.create_branch(node, None, {"code": code, "name": f"{code}店",
                                             "region": "EAST", "address": None})

    users: dict[str, Principal] = {}
    for username, display, role, branch, department in USERS:
        row = await create_user(node, None, username=username, password="demo-pass-123",
                                role=role, display_name=display, branch=branch,
                                department=department)
        users[username] = Principal.from_row(row)
    now = utcnow()
    for i in range(12):
        c = await customer(node, f"演示{i}", branch=("S001", "S002", "S003")[i % 3],
                           department="销售部", registered_at=now - T(days=30 * i + 5),
                           owner_id=users[("s001.rep1", "s002.rep1", "s003.rep1")[i % 3]].id)
        if i % 2:
            await _contact(node, c)
    counts = await demo_care.seed(node, random.Random(7), users)
    assert counts["schemes"] == 5 and counts["plans"] >= 4
    assert counts["overrides"] >= 1 and counts["reception_expenses"] >= 1
    v = TABLES["visits"]
    async with node.db.read() as conn:
        kinds = set((await conn.execute(select(v.c.kind).distinct())).scalars())
        changes = (await conn.execute(select(func.count()).select_from(
            TABLES["class_changes"]))).scalar_one()
    assert kinds == {"visit", "return_visit", "survey", "care"} and changes >= 12
    due = (await visits.due_reminders(node, users["gm"], 14, None, 500))[0]
    assert any(i["overdue"] for i in due)
    assert isinstance(now, datetime)
