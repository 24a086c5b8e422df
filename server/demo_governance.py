"""Demo data for governance (domain.md §9-§10), made through the services so the
approval inboxes, the retention list, the audit log and the issued reports have
something in them: consents, a top-secret archive, access requests in every state,
archives past their retention end with a destruction request awaiting the general
manager, and last month's complaint statistics issued."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import select

from schema import TABLES, utcnow
from server.node import Node
from server.services import access, customers, reports, retention
from server.services.principal import Principal

CONSENTING = 120


async def _sample(node: Node, branch: str, owner: str | None, n: int) -> list[str]:
    c = TABLES["customers"]
    query = select(c.c.id).where(c.c.branch == branch, c.c.merged_into.is_(None))
    if owner is not None:
        query = query.where(c.c.owner_id == owner)
    async with node.db.read() as conn:
        return [r.id for r in await conn.execute(query.order_by(c.c.id).limit(n))]


async def seed(node: Node, rng: random.Random, users: dict[str, Principal]) -> dict[str, int]:
    """Governance records on the demo customers; returns counts by kind."""
    gm, clerk = users["gm"], users["archivist"]
    rep1, rep2, mgr = users["s001.rep1"], users["s001.rep2"], users["s001.manager"]
    counts = {"consents": 0, "access_requests": 0, "destruction_requests": 0, "reports": 0}
    c = TABLES["customers"]
    async with node.db.read() as conn:
        ids = [r.id for r in await conn.execute(
            select(c.c.id).where(c.c.merged_into.is_(None)).order_by(c.c.id))]
    for cid in rng.sample(ids, min(CONSENTING, len(ids))):
        await customers.update_customer(node, clerk, cid, {
            "consent_marketing": True, "consent_sharing": rng.random() < 0.3})
        counts["consents"] += 1

    colleague = await _sample(node, "S001", rep2.id, 4)
    if len(colleague) >= 4:
        secret = colleague[3]
        await customers.update_customer(node, clerk, secret, {"secrecy": "top_secret"})
        asks = [(rep1, colleague[0], "客户回访", "同事休假, 客户来电咨询"),
                (rep1, colleague[1], "核对送货地址", "客户要求加急配送"),
                (rep1, colleague[2], "投诉跟进", "协助处理售后"),
                (rep1, secret, "年度合同续签", "核对绝密客户的合同条款")]
        made = [await access.create_request(node, who, {
            "kind": "view", "customer_id": cid, "purpose": purpose, "reason": reason,
            "hours": 48}) for who, cid, purpose, reason in asks]
        await access.decide(node, mgr, made[1]["id"], True, "同意, 48 小时内有效")
        await access.decide(node, mgr, made[2]["id"], False, "请由原业务员跟进")
        made.append(await access.create_request(node, users["director"], {
            "kind": "export", "purpose": "季度客户分析", "reason": "总部经营分析会",
            "subject": "上海南京路店销售部客户名单", "department": "销售部",
            "object_branch": "S001", "hours": 24}))
        counts["access_requests"] = len(made)

    ended = utcnow() - timedelta(days=365 * 11)
    for cid in await _sample(node, "S002", users["s002.rep1"].id, 3):
        await customers.update_customer(node, clerk, cid, {
            "lifecycle_stage": "lost", "relationship_ended_at": ended})
    due, _ = await retention.due(node, clerk, None, 3)
    if due:
        first = await retention.request_destruction(
            node, clerk, due[0]["id"], "retention_expired", "保管期满十年, 申请销毁")
        await retention.decide_review(node, users["s002.manager"], first["id"], True,
                                      "已核对, 同意销毁")
        counts["destruction_requests"] = 1

    period = (utcnow().replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    await reports.issue_month(node, gm, "complaints", period, None)
    counts["reports"] = 1
    return counts
