"""Demo data for registration and ownership (domain.md §3): new registrations (one a
referral that asked for its rep), filings and overdue filings, collisions (撞单) of two
stores registering the same mobile number, a manual merge of a duplicate, and a
handover (客户交接) with its notices — all through the services."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from schema import TABLES, utcnow
from server.node import Node
from server.services import customers as archive
from server.services import merges, registration
from server.services.errors import ConflictError
from server.services.principal import Principal

customers = TABLES["customers"]
notices = TABLES["notices"]
FILE_SAMPLE = 200
WALK_INS = ["林志强", "黄佳怡", "周子轩", "徐梦婷", "马俊杰"]


async def _unfiled(node: Node, branch: str | None, limit: int) -> list[dict[str, Any]]:
    query = select(customers).where(customers.c.filing_status == "registered",
                                    customers.c.merged_into.is_(None))
    if branch is not None:
        query = query.where(customers.c.branch == branch)
    async with node.db.read() as conn:
        return [dict(r) for r in (await conn.execute(
            query.order_by(customers.c.registered_at).limit(limit))).mappings()]


async def _register(node: Node, rng: random.Random, users: dict[str, Principal]) -> int:
    rep1, rep2 = users["s001.rep1"], users["s001.rep2"]
    made = 0
    for name in WALK_INS:
        try:
            await registration.register_customer(node, rep1, {
                "name": name, "customer_type": "person",
                "source": rng.choice(["walk_in", "call"]),
                "mobile": f"1570000{rng.randint(0, 9999):04d}", "intention": rng.random() < 0.5,
                "notes": "到店咨询, 留下联系方式"}, [])
            made += 1
        except ConflictError:  # that number was registered before: its owner keeps it
            continue
    await registration.register_customer(node, rep1, {
        "name": "钱慧敏", "customer_type": "person", "source": "referral",
        "referrer_user_id": rep2.id, "asked_for_referrer": True,
        "notes": "老客户介绍, 点名要郑丽华跟进"}, [])
    return made + 1


async def _file(node: Node, rng: random.Random, clerk: Principal) -> int:
    """File three in four of the oldest registrations; the rest stay overdue (逾期未备案)
    for the reminders to show."""
    filed = 0
    for i, row in enumerate(await _unfiled(node, None, FILE_SAMPLE)):
        if i % 4 or rng.random() < 0.1:
            await registration.file_customer(node, clerk, row["id"])
            filed += 1
    return filed


async def _collisions(node: Node, rng: random.Random, users: dict[str, Principal]) -> int:
    """A second store registers customers of the first one while offline (simulated: a
    registration without the on-line 409 check), then the resolver runs."""
    other, first_branch = users["s002.rep1"], users["s001.rep1"].branch
    async with node.db.read() as conn:
        taken = [dict(r) for r in (await conn.execute(select(customers).where(
            customers.c.branch == first_branch, customers.c.mobile_bidx.is_not(None),
            customers.c.merged_into.is_(None)).order_by(customers.c.id).limit(3)
        )).mappings()]
        plain = await merges.plaintext(conn, node.db.vault, taken)
    later = []
    for row in taken:
        mobile = plain[row["id"]]["mobile"]
        if not isinstance(mobile, str):
            continue
        later.append(({"name": row["name"], "customer_type": row["customer_type"],
                       "source": "walk_in", "mobile": mobile, "owner_id": other.id,
                       "branch": other.branch, "department": other.department,
                       "registered_at": row["registered_at"] + timedelta(
                           hours=rng.randint(1, 72)),
                       "notes": "门店离线时登记"}, [{"name": row["name"], "title": "本人"}]))
    if later:
        await archive.create_customers(node, users["archivist"], later)
    merged, _ = await merges.resolve_now(node, users["gm"])
    return merged


async def _manual_merge(node: Node, users: dict[str, Principal]) -> int:
    rep, manager = users["s001.rep2"], users["s001.manager"]
    # The same person registered twice under two numbers (a duplicate by name).
    first = await registration.register_customer(node, rep, {
        "name": "欧阳明", "customer_type": "person", "source": "call",
        "industry": "零售", "tags": ["老客户"]}, [])
    second = await registration.register_customer(node, rep, {
        "name": "欧阳明", "customer_type": "person", "source": "walk_in",
        "email": "ouyang.ming@example.com", "tags": ["高净值"]},
        [{"name": "欧阳明", "title": "本人"}])
    await merges.merge_customers(node, manager, first["id"], second["id"], "same_person")
    return 1


async def _handover(node: Node, users: dict[str, Principal]) -> int:
    """吴晓明 leaves: the manager hands (up to 30 of) his customers to 郑丽华."""
    leaver = users["s001.rep1"]
    async with node.db.read() as conn:
        ids = [r[0] for r in await conn.execute(select(customers.c.id).where(
            customers.c.owner_id == leaver.id, customers.c.merged_into.is_(None))
            .order_by(customers.c.id).limit(30))]
    out = await registration.hand_over(
        node, users["s001.manager"], from_user=leaver.id, to_user=users["s001.rep2"].id,
        customer_ids=ids or None, reason="吴晓明离职, 客户交接", notify=True)
    return int(out["count"])


async def seed(node: Node, rng: random.Random, users: dict[str, Principal]) -> dict[str, int]:
    """Registration and ownership demo records for existing demo customers; counts by
    kind."""
    counts = {"registered": await _register(node, rng, users)}
    counts["filed"] = await _file(node, rng, users["archivist"])
    counts["collisions"] = await _collisions(node, rng, users)
    counts["merges"] = await _manual_merge(node, users)
    counts["handovers"] = await _handover(node, users)
    now = utcnow()
    overdue = [r for r in await _unfiled(node, None, 10_000)
               if registration.deadline_flags(r["registered_at"], now)["overdue"]]
    counts["overdue"] = len(overdue)
    async with node.db.read() as conn:
        counts["notices"] = int((await conn.execute(
            select(func.count()).select_from(notices))).scalar_one())
    return counts
