"""`branchline demo`: a headquarters with branches, users and thousands of customers."""

from __future__ import annotations

import random
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from faker import Faker
from sqlalchemy import select

from schema import TABLES, normalize_mobile, validate_id_number
from server.config import Settings
from server.node import Node, init_node, open_node
from server.services import custom_fields, customers, org
from server.services.errors import FieldError
from server.services.principal import Principal
from server.services.users import create_user

DEMO_PASSWORD = "branchline-demo"
REGIONS = [("EAST", "华东区"), ("SOUTH", "华南区")]
BRANCHES = [("S001", "上海南京路店", "EAST"), ("S002", "杭州西湖店", "EAST"),
            ("S003", "广州天河店", "SOUTH")]
USERS: list[tuple[str, str, str, str | None, str | None]] = [
    ("gm", "王总经理", "general_manager", None, None),
    ("director", "李销售总监", "sales_director", None, None),
    ("archivist", "赵档案员", "archive_clerk", None, None),
    ("finance", "钱财务", "finance", None, None),
    ("auditor", "孙审计", "auditor", None, None),
    ("s001.manager", "周经理", "dept_manager", "S001", "销售部"),
    ("s001.rep1", "吴晓明", "sales_rep", "S001", "销售部"),
    ("s001.rep2", "郑丽华", "sales_rep", "S001", "销售部"),
    ("s001.service", "冯客服", "customer_service", "S001", "客服部"),
    ("s002.manager", "陈经理", "dept_manager", "S002", "销售部"),
    ("s002.rep1", "褚建国", "sales_rep", "S002", "销售部"),
    ("s002.tech", "卫师傅", "technician", "S002", "维修部"),
    ("s003.manager", "蒋经理", "dept_manager", "S003", "销售部"),
    ("s003.rep1", "沈文静", "sales_rep", "S003", "销售部"),
    ("s003.complaints", "韩投诉", "complaint_handler", "S003", "客服部"),
]
SOURCES = ["walk_in", "call", "own_development", "referral", "agency"]
CLASSES = ["key", "ordinary", "potential"]
STAGES = ["potential", "new", "stable", "old", "lost"]
TAGS = ["高净值", "价格敏感", "老客户", "企业采购", "会员", "线上", "节日礼品"]


def _valid_ric(number: str) -> str | None:
    try:
        return validate_id_number("id_number", number)
    except FieldError:
        return None


def _mobile(fake: Faker) -> str:
    while True:
        try:
            return normalize_mobile("mobile", fake.phone_number())
        except FieldError:
            continue


def _customer(fake: Faker, rnd: random.Random, owner: Principal, now: datetime
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    organisation = rnd.random() < 0.2
    registered = now - timedelta(days=rnd.randint(0, 5 * 365), minutes=rnd.randint(0, 1440))
    ssn = fake.ssn()
    values: dict[str, Any] = {
        "name": fake.company() if organisation else fake.name(),
        "customer_type": "organisation" if organisation else "person",
        "source": rnd.choice(SOURCES),
        "industry": fake.company_suffix() if organisation else None,
        # Faker's zh_CN address() sometimes fails on a missing `county`; compose it.
        "address": f"{fake.province()}{fake.city()}{fake.district()}区{fake.street_address()}",
        "mobile": _mobile(fake),
        "email": fake.free_email() if rnd.random() < 0.5 else None,
        "id_number": None if organisation else _valid_ric(ssn),
        "birthday": None if organisation else fake.date_of_birth(minimum_age=20, maximum_age=75),
        "intention": rnd.random() < 0.3,
        "agency": rnd.random() < 0.05,
        "customer_class": rnd.choices(CLASSES, weights=[1, 5, 3])[0],
        "lifecycle_stage": rnd.choice(STAGES),
        "tags": rnd.sample(TAGS, rnd.randint(0, 2)),
        "branch": owner.branch,
        "department": owner.department,
        "owner_id": owner.id,
        "registered_at": registered,
        "custom": {"wechat": f"wx_{fake.user_name()}"} if rnd.random() < 0.4 else {},
    }
    contacts = [{"name": fake.name(), "mobile": _mobile(fake),
                 "title": rnd.choice(["采购经理", "总经理", "财务", "本人", "家属"]),
                 "is_primary": i == 0} for i in range(rnd.randint(1, 2))]
    return values, contacts


async def _principal(node: Node, username: str) -> Principal:
    users = TABLES["users"]
    async with node.db.read() as conn:
        row = (await conn.execute(select(users).where(users.c.username == username))
               ).mappings().one()
    return Principal.from_row(row)


async def build_demo(data_dir: Path, count: int, environ: Mapping[str, str]
                     ) -> list[tuple[str, str, str | None]]:
    """Create the demo node and its data; return (username, role, branch) logins."""
    env = {**environ, "BRANCHLINE_ADMIN_PASSWORD": DEMO_PASSWORD}
    node, result = await init_node(data_dir, role="hq", name="演示总部", environ=env)
    try:
        return await _populate(node, count)
    except BaseException:
        await node.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        if result.key_file is not None:
            result.key_file.unlink(missing_ok=True)
        raise
    finally:
        await node.close()


async def _populate(node: Node, count: int) -> list[tuple[str, str, str | None]]:
    for code, name in REGIONS:
        await org.create_region(node, None, code, name)
    for code, name, region in BRANCHES:
        await org.create_branch(node, None, {"code": code, "name": name, "region": region,
                                             "address": None})
    for dept in ("销售部", "客服部", "市场部"):
        await org.create_department(node, None, dept, None)
    for code, _, _ in BRANCHES:
        for dept in ("销售部", "客服部", "维修部"):
            await org.create_department(node, None, dept, code)
    for username, display, role, branch, department in USERS:
        await create_user(node, None, username=username, password=DEMO_PASSWORD, role=role,
                          display_name=display, branch=branch, department=department)
    archivist = await _principal(node, "archivist")
    await custom_fields.create_field(node, archivist, {
        "entity": "customer", "name": "wechat", "label": "微信号", "field_type": "text",
        "required": False, "choices": [], "max_length": 64})
    await custom_fields.create_field(node, archivist, {
        "entity": "customer", "name": "vip_level", "label": "会员等级",
        "field_type": "choice", "required": False, "choices": ["普通", "银卡", "金卡"],
        "max_length": None})
    reps = [await _principal(node, u[0]) for u in USERS if u[2] == "sales_rep"]
    fake = Faker("zh_CN")
    fake.seed_instance(2026)
    rnd = random.Random(2026)
    now = datetime.now(UTC)
    batch: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for i in range(count):
        batch.append(_customer(fake, rnd, reps[i % len(reps)], now))
        if len(batch) == 250 or i == count - 1:
            await customers.create_customers(node, archivist, batch)
            batch = []
    users = {u[0]: await _principal(node, u[0]) for u in USERS}
    await seed_work(node, random.Random(2026), users)
    return await _logins(node)


async def seed_work(node: Node, rng: random.Random, users: dict[str, Principal]
                    ) -> dict[str, dict[str, int]]:
    """Everyday customer work on the demo customers, every workflow of domain.md §3-§8:
    registration, collisions and merges, handover; purchases, points and credit;
    complaints and service tickets; then classification (which reads the purchases and
    complaints), visits, care and reception expenses; then governance (consents, access
    requests, retention and destruction, an issued report). Returns counts by area and
    kind."""
    from server import (
        demo_accounts,
        demo_care,
        demo_governance,
        demo_registration,
        demo_service_desk,
    )

    return {area: await module.seed(node, rng, users) for area, module in (
        ("registration", demo_registration), ("accounts", demo_accounts),
        ("service_desk", demo_service_desk), ("care", demo_care),
        ("governance", demo_governance))}


async def _logins(node: Node) -> list[tuple[str, str, str | None]]:
    users = TABLES["users"]
    async with node.db.read() as conn:
        rows = await conn.execute(select(users.c.username, users.c.role, users.c.branch)
                                  .order_by(users.c.branch.is_not(None), users.c.branch,
                                            users.c.username))
        return [(r[0], r[1], r[2]) for r in rows]


async def read_logins(settings: Settings) -> list[tuple[str, str, str | None]]:
    """The logins of an existing demo node."""
    node = await open_node(settings)
    try:
        return await _logins(node)
    finally:
        await node.close()
