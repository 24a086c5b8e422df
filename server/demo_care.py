"""Demo data for classification, visits, care, surveys and reception expenses
(domain.md §4-§5), made through the services so every workflow runs: the default
schemes and visit plans, a recompute, overrides, visits of every kind (surveys with
scores, some below target), customers left overdue, and reception expenses.

Classes vary with the purchases, complaints and credit requests already seeded; run
this after those demos for a varied pyramid."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import select

from schema import TABLES, local_day, utcnow
from server.node import Node
from server.services import classification, reception, visits
from server.services.principal import Principal

SAMPLE = 60
PLACES = ["客户办公室", "门店", "展厅", "客户工厂", "茶室", "电话", "微信视频"]
CONTENTS = ["介绍新款产品并了解采购计划", "回访上次购买的使用情况", "沟通年度合作框架",
            "了解售后服务满意度", "邀请参加新品发布会", "核对对账单与付款安排"]
RESULTS = ["客户有意向, 需要报价", "客户满意, 暂无新需求", "客户提出价格异议",
           "约定下次详谈", "客户推荐了一位新客户"]
NEXT_STEPS = ["三天内发送报价单", "安排技术人员上门", "寄送样品", "邀请到店体验", "月底再次回访"]
CARE = ["生日祝福短信及小礼品", "节日问候 (中秋礼盒)", "恶劣天气出行提醒", "会员答谢会邀请"]
COMPLAINTS = ["对送货时间不满意", "价格比别家高", "服务人员态度一般"]
PURPOSES = ["商务午餐", "年度合作洽谈晚宴", "新品发布会招待", "客户来访接待"]


def _who(users: dict[str, Principal], owner_id: str | None, branch: str | None
         ) -> Principal:
    """The customer's own rep, else a manager of its branch, else the general manager."""
    for p in users.values():
        if p.id == owner_id:
            return p
    for p in users.values():
        if p.role == "dept_manager" and p.branch == branch:
            return p
    return users["gm"]


async def seed(node: Node, rng: random.Random, users: dict[str, Principal]) -> dict[str, int]:
    """Create classification and care demo records; returns counts by kind."""
    gm, director = users["gm"], users.get("director", users["gm"])
    counts = {"schemes": await classification.install_defaults(node, gm),
              "plans": await visits.install_default_plans(node, gm)}
    changed = 0
    for scheme in await classification.list_schemes(node, gm, active=True):
        changed += (await classification.recompute(node, gm, scheme["code"]))["changed"]
    counts["class_changes"] = changed
    customers, contacts = TABLES["customers"], TABLES["contacts"]
    async with node.db.read() as conn:
        rows = [dict(r) for r in (await conn.execute(
            select(customers.c.id, customers.c.owner_id, customers.c.branch,
                   customers.c.registered_at)
            .where(customers.c.merged_into.is_(None)).order_by(customers.c.id)
            .limit(SAMPLE))).mappings()]
        people: dict[str, list[str]] = {}
        for c in await conn.execute(select(contacts.c.id, contacts.c.customer_id).where(
                contacts.c.customer_id.in_([r["id"] for r in rows]))):
            people.setdefault(c.customer_id, []).append(c.id)
    counts["overrides"] = 0
    for target, (code, cls, reason) in zip(rows[:3], [
            ("tier", "key", "集团战略合作伙伴, 总经理指定为重点客户"),
            ("abc", "A", "行业标杆客户, 品牌影响力大"),
            ("credit", "high_risk", "近期付款多次逾期, 暂停赊销")], strict=False):
        await classification.set_override(node, director, target["id"], code, cls, reason)
        counts["overrides"] += 1
    counts.update({"visits": 0, "return_visits": 0, "surveys": 0, "care": 0})
    now = utcnow()
    # Every third customer gets no visit at all, so plans leave some of them overdue.
    for i, row in enumerate(rows):
        if i % 3 == 2:
            continue
        p = _who(users, row["owner_id"], row["branch"])
        contact = rng.choice(people[row["id"]]) if people.get(row["id"]) else None
        age = max(1, (now - row["registered_at"]).days)
        at = now - timedelta(days=rng.randint(0, min(age, 200)), hours=rng.randint(1, 8))
        at = max(at, row["registered_at"])
        await visits.record_visit(node, p, row["id"], {
            "kind": "visit", "visited_at": at, "place": rng.choice(PLACES),
            "contact_id": contact, "content": rng.choice(CONTENTS),
            "result": rng.choice(RESULTS), "next_step": rng.choice(NEXT_STEPS),
            "next_visit_on": local_day(at) + timedelta(days=rng.choice([7, 14, 30]))})
        counts["visits"] += 1
        if i % 4 == 0:
            await visits.record_visit(node, p, row["id"], {
                "kind": "return_visit", "visited_at": at + timedelta(hours=1),
                "content": rng.choice(COMPLAINTS) + ", 已回访确认处理结果",
                "satisfaction": rng.choice([2, 3, 4, 5, 5])})
            counts["return_visits"] += 1
        if i % 2 == 0:
            await visits.record_visit(node, p, row["id"], {
                "kind": "survey", "visited_at": now - timedelta(days=rng.randint(0, 300)),
                "content": "年度满意度调查", "satisfaction": rng.choice([1, 3, 4, 4, 5, 5])})
            counts["surveys"] += 1
        if i % 5 == 0:
            await visits.record_visit(node, p, row["id"], {
                "kind": "care", "content": rng.choice(CARE)})
            counts["care"] += 1
    counts["reception_expenses"] = 0
    for row in rows[:12]:
        p = _who(users, row["owner_id"], row["branch"])
        guests = rng.choice([1, 2, 3, 6, 12])
        companions = reception.allowed_companions(guests)
        cls = rng.choice(["A", "B", "C", "D"])
        cap = reception.cap_fen(cls, guests, companions)
        await reception.record_expense(node, p, row["id"], {
            "reception_class": cls, "guests": guests, "companions": companions,
            "amount_fen": cap * rng.randint(50, 95) // 100,
            "spent_on": local_day(now) - timedelta(days=rng.randint(0, 90)),
            "purpose": rng.choice(PURPOSES)})
        counts["reception_expenses"] += 1
    return counts

