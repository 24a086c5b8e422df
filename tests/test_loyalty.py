"""Loyalty points (domain.md §5): earned and redeemed at any store, online or offline,
never lost or counted twice; a balance below zero after sync is flagged, not clamped."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from schema import TABLES, new_id, utcnow
from server.node import Node
from server.services import loyalty
from server.services.errors import ConflictError
from server.services.principal import Principal
from tests._nodes import branch_node, principal, sync
from tests.conftest import add_user, login
from tests.test_purchases import new_customer

Client = AsyncTestClient[Any]
entries = TABLES["point_entries"]


async def _arrived(node: Node, member_id: str, delta: int, *, days_ago: float = 0,
                   branch: str = "S002") -> str:
    """An unposted entry as it arrives at HQ from a store that did not hold the member."""
    async with node.db.write(node.node_id, None) as uow:
        row = await uow.insert("point_entries", {
            "branch": branch, "member_id": member_id, "delta": delta,
            "reason": "redeem" if delta < 0 else "earn", "note": "离线兑换",
            "at": utcnow() - timedelta(days=days_ago)})
    return str(row["id"])


async def _balance(node: Node, customer_id: str) -> int:
    async with node.db.read() as conn:
        return await loyalty.balance(conn, customer_id)


async def test_points_earned_and_redeemed_at_holding_store_post_at_once(
        client: Client, node: Node, org: None) -> None:
    clerk = await add_user(node, "s1clerk", "customer_service", "S001")
    c = await new_customer(node, clerk)
    headers = await login(client, "s1clerk")
    r = await client.post("/api/v1/points/earn", headers=headers,
                          json={"member_id": c["id"], "points": 100, "note": "会员日活动"})
    assert r.status_code == 201, r.text
    assert (r.json()["posted"], r.json()["balance"]) == (True, 100)
    r = await client.post("/api/v1/points/redeem", headers=headers,
                          json={"member_id": c["id"], "points": 30, "note": "兑换雨伞"})
    body = r.json()
    assert body["posted"] and body["balance"] == 70 and body["entry"]["delta"] == -30
    assert body["entry"]["branch"] == "S001" and body["entry"]["posted_by"] == clerk.id
    assert await _balance(node, c["id"]) == 70


async def test_redeem_below_known_balance_is_refused_and_writes_nothing(
        client: Client, node: Node, org: None) -> None:
    clerk = await add_user(node, "s1clerk", "customer_service", "S001")
    c = await new_customer(node, clerk)
    await loyalty.change_points(node, clerk, c["id"], 50, "earn", None)
    r = await client.post("/api/v1/points/redeem", headers=await login(client, "s1clerk"),
                          json={"member_id": c["id"], "points": 51})
    assert r.status_code == 409 and "insufficient points" in r.json()["detail"]
    async with node.db.read() as conn:
        assert len((await conn.execute(select(entries.c.id))).all()) == 1
    assert await _balance(node, c["id"]) == 50


async def test_points_need_store_staff_and_positive_whole_points(
        client: Client, node: Node, org: None) -> None:
    clerk = await add_user(node, "s1clerk", "customer_service", "S001")
    await add_user(node, "tech", "technician", "S001")
    c = await new_customer(node, clerk)
    r = await client.post("/api/v1/points/earn", headers=await login(client, "tech"),
                          json={"member_id": c["id"], "points": 5})
    assert r.status_code == 403
    headers = await login(client, "s1clerk")
    for body in ({"member_id": c["id"], "points": 0}, {"member_id": c["id"], "points": 1.5},
                 {"member_id": "not-a-card", "points": 5}, {"member_id": c["id"]}):
        r = await client.post("/api/v1/points/redeem", headers=headers, json=body)
        assert r.status_code in (400, 422), body


async def test_post_pending_posts_each_entry_exactly_once_even_concurrently(
        node: Node, org: None) -> None:
    clerk = await add_user(node, "s1clerk", "customer_service", "S001")
    c = await new_customer(node, clerk)
    await loyalty.change_points(node, clerk, c["id"], 100, "earn", None)
    for delta in (-10, -20, 5):
        await _arrived(node, c["id"], delta)
    unknown = new_id()
    await _arrived(node, unknown, -7)
    counts = await asyncio.gather(loyalty.post_pending(node), loyalty.post_pending(node))
    assert sum(counts) == 3  # each entry posted by exactly one of the runs
    assert await loyalty.post_pending(node) == 0
    assert await _balance(node, c["id"]) == 75
    async with node.db.read() as conn:
        left = [r.member_id for r in await conn.execute(
            select(entries.c.member_id).where(entries.c.posted_at.is_(None)))]
    assert left == [unknown]  # an unknown member's entry waits, and is listed
    hq = await add_user(node, "hqservice", "customer_service")
    flags = await loyalty.flags(node, hq)
    assert [e["member_id"] for e in flags["unknown_members"]] == [unknown]


async def test_negative_balance_after_sync_is_flagged_never_clamped(
        client: Client, node: Node, org: None) -> None:
    clerk = await add_user(node, "s1clerk", "customer_service", "S001")
    await add_user(node, "hqservice", "customer_service")
    c = await new_customer(node, clerk, name="李四")
    await loyalty.change_points(node, clerk, c["id"], 100, "earn", None)
    await _arrived(node, c["id"], -150)
    stale = await _arrived(node, new_id(), -5, days_ago=2)
    assert await loyalty.post_pending(node) == 1
    assert await _balance(node, c["id"]) == -50
    r = await client.get("/api/v1/loyalty/flags", headers=await login(client, "hqservice"))
    assert r.status_code == 200, r.text
    flags = r.json()
    assert flags["negative"] == [{"customer_id": c["id"], "name": "李四", "branch": "S001",
                                  "balance": -50}]
    assert [e["id"] for e in flags["stale"]] == [stale]
    r = await client.get("/api/v1/loyalty/flags", headers=await login(client, "s1clerk"))
    assert r.status_code == 403


async def test_balance_of_merged_archives_is_the_sum_of_the_group(
        client: Client, node: Node, org: None) -> None:
    clerk = await add_user(node, "s1clerk", "customer_service", "S001")
    survivor = await new_customer(node, clerk, name="王五")
    absorbed = await new_customer(node, clerk, name="王五")
    await loyalty.change_points(node, clerk, survivor["id"], 30, "earn", None)
    await loyalty.change_points(node, clerk, absorbed["id"], 45, "earn", None)
    async with node.db.write(node.node_id, clerk.id) as uow:
        await uow.update("customers", absorbed["id"], {"merged_into": survivor["id"]})
    headers = await login(client, "s1clerk")
    r = await client.get(f"/api/v1/customers/{absorbed['id']}/points", headers=headers)
    body = r.json()
    assert body["customer_id"] == survivor["id"] and body["balance"] == 75
    assert len(body["entries"]) == 2
    # A redemption on the old card counts against the merged balance.
    out = await loyalty.change_points(node, clerk, absorbed["id"], 70, "redeem", None)
    assert out["balance"] == 5


async def _redeem(node: Node, p: Principal, member: str, points: int) -> dict[str, Any]:
    return await loyalty.change_points(node, p, member, points, "redeem", "离线兑换")


async def test_points_redeemed_at_two_stores_offline_converge_and_are_flagged(
        tmp_path: Path, node: Node, client: Client, backend: str) -> None:
    """Scenario: HQ unreachable; S001 (holds C) redeems 80 of 100, S002 redeems 60 for
    C's card. After sync (each round repeated; HQ posts what a push brings), HQ and S001
    show -40, no entry counted twice, and C is flagged at HQ."""
    s1, up1 = await branch_node(tmp_path, node, "S001")
    s2, up2 = await branch_node(tmp_path, node, "S002")
    try:
        await add_user(node, "s1clerk", "customer_service", "S001")
        await add_user(node, "s2clerk", "customer_service", "S002")
        hq_staff = await add_user(node, "hqservice", "customer_service")
        await sync(s1, up1, client)
        await sync(s2, up2, client)
        clerk1, clerk2 = await principal(s1, "s1clerk"), await principal(s2, "s2clerk")
        c = await new_customer(s1, clerk1, name="赵六")
        await loyalty.change_points(s1, clerk1, c["id"], 100, "earn", "开卡礼")
        await sync(s1, up1, client)
        assert await _balance(node, c["id"]) == 100
        # HQ unreachable from here on.
        out1 = await _redeem(s1, clerk1, c["id"], 80)
        assert (out1["posted"], out1["balance"]) == (True, 20)
        out2 = await _redeem(s2, clerk2, c["id"], 60)
        assert (out2["posted"], out2["balance"]) == (False, None)
        with pytest.raises(ConflictError):  # S001 knows its balance: 20 is too little
            await _redeem(s1, clerk1, c["id"], 21)
        for b, up in ((s1, up1), (s1, up1), (s2, up2), (s2, up2)):
            await sync(b, up, client)
        # HQ posted S002's entry when the push that brought it was applied.
        assert await loyalty.post_pending(node) == 0
        for b, up in ((s1, up1), (s2, up2), (s1, up1), (s2, up2)):
            await sync(b, up, client)
        assert await loyalty.post_pending(node) == 0
        assert await _balance(node, c["id"]) == -40
        assert await _balance(s1, c["id"]) == -40
        async with node.db.read() as conn:
            rows = (await conn.execute(select(entries))).mappings().all()
        assert sorted(r["delta"] for r in rows) == [-80, -60, 100]
        assert all(r["posted_at"] is not None for r in rows)
        async with s2.db.read() as conn:  # the store learns its entry was posted
            posted = (await conn.execute(select(entries.c.posted_at).where(
                entries.c.id == out2["entry"]["id"]))).scalar_one()
        assert posted is not None
        flags = await loyalty.flags(node, hq_staff)
        assert [(f["customer_id"], f["balance"]) for f in flags["negative"]] == [(c["id"], -40)]
    finally:
        await s1.close()
        await s2.close()
