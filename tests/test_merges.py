"""Duplicates and merges (客户合并), ownership collisions (撞单) and edits a merge had
not seen (sync/SPEC.md §16): rule tests on both backends, offline scenarios across
real HQ and branch nodes, and a convergence property over a replica network."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from branches import sync_once
from schema import TABLES, Scope, outgoing, peer_state, utcnow
from server.node import Node
from server.services import merges, registration
from server.services.customers import (
    create_contact,
    create_customers,
    get_customer,
    list_customers,
    update_customer,
)
from server.services.errors import NotFoundError
from server.services.principal import Principal
from server.services.records import survivor_id
from tests._nodes import branch_node, colliding, principal, sync
from tests._sync_net import Net, row, rows
from tests.conftest import add_user, login
from tests.sync_harness import Replica, customer, snapshot

Client = AsyncTestClient[Any]
MOBILE = "+8613800001111"


async def _make(node: Node, p: Principal, **values: Any) -> dict[str, Any]:
    """A customer written without the on-line duplicate check (as sync would bring it)."""
    body = {"name": "张三", "customer_type": "person", "source": "walk_in", **values}
    contacts = body.pop("contacts", [])
    return (await create_customers(node, p, [(body, contacts)]))[0]


async def _conflicts(node: Node, **where: Any) -> list[dict[str, Any]]:
    t = TABLES["conflicts"]
    query = select(t).where(t.c.policy == "merge")
    for k, v in where.items():
        query = query.where(t.c[k] == v)
    async with node.db.read() as conn:
        return [dict(r) for r in (await conn.execute(query)).mappings()]


# -- manual merges ----------------------------------------------------------------------

async def test_merge_redirects_absorbed_to_survivor_and_shows_its_contacts(
        client: Client, node: Node, clerk: dict[str, str]) -> None:
    clerk_p = await principal(node, "clerk")
    a = await _make(node, clerk_p, mobile="13800001111", tags=["会员"],
                    contacts=[{"name": "甲联系人"}])
    b = await _make(node, clerk_p, name="张三", email="zs@example.com", tags=["高净值"],
                    industry="零售", contacts=[{"name": "乙联系人"}])
    r = await client.post(f"/api/v1/customers/{a['id']}/merge", headers=clerk,
                          json={"absorbed_id": b["id"], "reason": "duplicate"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == a["id"] and body["merged_ids"] == [b["id"]]
    assert {c["name"] for c in body["contacts"]} == {"甲联系人", "乙联系人"}
    assert body["email"] == "zs@example.com" and body["industry"] == "零售"  # filled
    assert sorted(body["tags"]) == ["会员", "高净值"]
    r = await client.get(f"/api/v1/customers/{b['id']}", headers=clerk)
    assert r.status_code == 200 and r.json()["id"] == a["id"]
    r = await client.get("/api/v1/customers", headers=clerk)
    assert [c["id"] for c in r.json()["items"]] == [a["id"]]
    r = await client.get(f"/api/v1/customers/{b['id']}/contacts", headers=clerk)
    assert len(r.json()["items"]) == 2
    # Writes addressed to the absorbed id land on the survivor.
    r = await client.post(f"/api/v1/customers/{b['id']}/contacts", headers=clerk,
                          json={"name": "丙联系人"})
    assert r.json()["customer_id"] == a["id"]
    r = await client.patch(f"/api/v1/customers/{b['id']}", headers=clerk,
                           json={"notes": "合并后编辑"})
    assert r.json()["id"] == a["id"] and r.json()["notes"] == "合并后编辑"
    async with node.db.read() as conn:
        merge = (await conn.execute(select(TABLES["customer_merges"]))).mappings().one()
    assert merge["id"] == merges.merge_id(b["id"])
    assert (merge["customer_id"], merge["survivor_id"], merge["reason"]) == (
        b["id"], a["id"], "duplicate")


async def test_merge_records_each_decision_and_keeps_the_survivors_values(
        node: Node, clerk: dict[str, str]) -> None:
    p = await principal(node, "clerk")
    a = await _make(node, p, name="张三", industry="零售")
    b = await _make(node, p, name="张叁", industry="批发", website="zs.example.com")
    await merges.merge_customers(node, p, a["id"], b["id"], "same_person")
    kept = await get_customer(node, p, a["id"])
    assert (kept["name"], kept["industry"], kept["website"]) == (
        "张三", "零售", "zs.example.com")
    decisions = {c["column_name"]: c for c in await _conflicts(node, row_id=a["id"])}
    assert set(decisions) == {"name", "industry", "website"}
    assert all(c["status"] == "resolved" and c["resolved_by"] == p.id
               for c in decisions.values())
    assert (decisions["industry"]["winner_value"], decisions["industry"]["loser_value"]) == (
        "零售", "批发")
    assert decisions["website"]["resolution"] == merges.FILLED


async def test_merge_across_branches_only_by_headquarters(
        client: Client, node: Node, org: None) -> None:
    gm = await add_user(node, "gm", "general_manager")
    mgr = await add_user(node, "mgr1", "dept_manager", "S001")
    await add_user(node, "hqmgr", "dept_manager")  # at HQ, but not headquarters-wide
    a = await _make(node, gm, branch="S001")
    a2 = await _make(node, gm, branch="S001", name="张三二")
    b = await _make(node, gm, branch="S002", contacts=[{"name": "杭州联系人"}])
    # A branch manager does not see the other branch's customer at all.
    with pytest.raises(NotFoundError):
        await merges.merge_customers(node, mgr, a["id"], b["id"], "duplicate")
    r = await client.post(f"/api/v1/customers/{a['id']}/merge",
                          headers=await login(client, "hqmgr"),
                          json={"absorbed_id": b["id"]})
    assert r.status_code == 403, r.text
    # …but merges two of its own.
    await merges.merge_customers(node, mgr, a["id"], a2["id"], "duplicate")
    await merges.merge_customers(node, gm, a["id"], b["id"], "duplicate")
    async with node.db.read() as conn:
        moved = (await conn.execute(select(TABLES["customers"].c.branch).where(
            TABLES["customers"].c.id == b["id"]))).scalar_one()
    assert moved == "S001"  # the absorbed follows the survivor (and so do its contacts)
    shown = await get_customer(node, mgr, b["id"])
    assert shown["id"] == a["id"] and "杭州联系人" in {c["name"] for c in shown["contacts"]}


async def test_merge_refuses_the_already_merged_itself_and_reps(
        client: Client, node: Node, clerk: dict[str, str]) -> None:
    p = await principal(node, "clerk")
    a, b = await _make(node, p), await _make(node, p, name="李四")
    await merges.merge_customers(node, p, a["id"], b["id"], "duplicate")
    url = f"/api/v1/customers/{a['id']}/merge"
    r = await client.post(url, headers=clerk, json={"absorbed_id": b["id"]})
    assert r.status_code == 409 and a["id"] in r.json()["detail"]
    r = await client.post(url, headers=clerk, json={"absorbed_id": a["id"]})
    assert r.status_code == 422
    r = await client.post(url, headers=clerk, json={"absorbed_id": b["id"],
                                                    "reason": "collision"})
    assert r.status_code == 422  # collisions are the resolver's, not a person's
    await add_user(node, "rep", "sales_rep")
    r = await client.post(url, headers=await login(client, "rep"),
                          json={"absorbed_id": b["id"]})
    assert r.status_code == 403


async def test_duplicates_by_blind_index_and_name_similarity(
        client: Client, node: Node, clerk: dict[str, str]) -> None:
    p = await principal(node, "clerk")
    me = await _make(node, p, name="张三", mobile="13800001111",
                     id_number="11010519491231002X")
    same_name = await _make(node, p, name=" 张三 ")
    homophone = await _make(node, p, name="章三")
    similar = await _make(node, p, name="张三丰")
    by_mobile = await _make(node, p, name="李四", mobile="138-0000-1111")
    by_id = await _make(node, p, name="王五", id_number="11010519491231002x")
    await _make(node, p, name="赵六", mobile="13800001112")
    r = await client.get(f"/api/v1/customers/{me['id']}/duplicates", headers=clerk)
    assert r.status_code == 200, r.text
    got = {i["id"]: i["by"] for i in r.json()["items"]}
    assert got == {same_name["id"]: ["same_name"], homophone["id"]: ["same_pinyin"],
                   similar["id"]: ["similar_name"], by_mobile["id"]: ["mobile"],
                   by_id["id"]: ["id_number"]}


# -- collisions (撞单) -------------------------------------------------------------------

async def test_collision_is_confirmed_by_decrypting_not_by_the_shared_index_bucket(
        node: Node, org: None) -> None:
    """The blind index is 16 bits: different numbers share buckets. Only customers whose
    numbers decrypt equal are merged, however many others share their bucket."""
    one, other = colliding(node, "mobile", lambda n: f"+86139{n:08d}")
    rep = await add_user(node, "rep1", "sales_rep", "S001")
    now = utcnow()
    first = await _make(node, rep, mobile=one, registered_at=now - timedelta(hours=3))
    neighbour = await _make(node, rep, mobile=other, registered_at=now - timedelta(hours=2))
    later = await _make(node, rep, mobile=one, registered_at=now - timedelta(hours=1))
    async with node.db.read() as conn:
        got = (await conn.execute(select(TABLES["customers"].c.mobile_bidx).where(
            TABLES["customers"].c.id.in_([first["id"], neighbour["id"], later["id"]]))
        )).scalars().all()
    assert len(set(got)) == 1  # all three in one bucket
    assert await merges.settle(node.db, node.node_id, full=True) == (1, 0)
    async with node.db.read() as conn:
        assert await survivor_id(conn, later["id"]) == first["id"]
        assert await survivor_id(conn, neighbour["id"]) == neighbour["id"]


async def test_collision_earliest_registration_wins_and_the_later_rep_is_told(
        client: Client, node: Node, org: None) -> None:
    rep1 = await add_user(node, "rep1", "sales_rep", "S001")
    rep2 = await add_user(node, "rep2", "sales_rep", "S002")
    await add_user(node, "gm", "general_manager")
    now = utcnow()
    later = await _make(node, rep2, mobile="13800001111", name="李雷",
                        registered_at=now - timedelta(hours=1), contacts=[{"name": "本人"}])
    first = await _make(node, rep1, mobile="+86 138 0000 1111", name="李雷",
                        registered_at=now - timedelta(hours=2))
    r = await client.post("/api/v1/collisions/resolve", headers=await login(client, "gm"))
    assert r.status_code == 200, r.text
    assert r.json()["merged"] == 1
    async with node.db.read() as conn:
        assert await survivor_id(conn, later["id"]) == first["id"]
    shown = await get_customer(node, rep1, later["id"])
    assert shown["id"] == first["id"] and shown["owner_id"] == rep1.id
    assert [c["name"] for c in shown["contacts"]] == ["本人"]
    h2 = await login(client, "rep2")
    r = await client.get("/api/v1/notices", headers=h2)
    [notice] = r.json()["items"]
    assert notice["id"] == merges.notice_id(later["id"]) and notice["kind"] == "collision"
    assert notice["subject_id"] == first["id"] and notice["branch"] == "S002"
    assert "撞单" in notice["message"] and "138****1111" in notice["message"]
    # Resolving again changes nothing.
    r = await client.post("/api/v1/collisions/resolve", headers=await login(client, "gm"))
    assert r.json() == {"merged": 0, "reviewed": 0}
    r = await client.post("/api/v1/collisions/resolve", headers=h2)
    assert r.status_code == 403


async def test_unseen_edit_not_lost_it_fills_the_survivor_or_waits_for_review(
        node: Node, clerk: dict[str, str]) -> None:
    p = await principal(node, "clerk")
    a = await _make(node, p, notes="甲的备注")
    b = await _make(node, p, notes="乙的备注")
    await merges.merge_customers(node, p, a["id"], b["id"], "duplicate")
    await merges.settle(node.db, node.node_id)
    # An edit of B arriving later from a node that had not seen the merge (written here
    # straight to B, as applying it from a peer would).
    async with node.db.write(node.node_id, p.id) as uow:
        await uow.update("customers", b["id"], {"industry": "批发", "notes": "离线改的备注"})
    merged, decided = await merges.settle(node.db, node.node_id)
    assert (merged, decided) == (0, 2)
    kept = await get_customer(node, p, a["id"])
    assert kept["industry"] == "批发" and kept["notes"] == "甲的备注"
    [review] = await _conflicts(node, column_name="notes", status="open")
    assert (review["winner_value"], review["loser_value"]) == ("甲的备注", "离线改的备注")
    assert await merges.settle(node.db, node.node_id) == (0, 0)
    # Choosing the absorbed archive's value writes it into the survivor.
    from server.services.conflicts import resolve
    await resolve(node, p, review["id"], use="loser", note=None)
    assert (await get_customer(node, p, a["id"]))["notes"] == "离线改的备注"


async def test_merge_cycle_earliest_survives(node: Node, clerk: dict[str, str]) -> None:
    p = await principal(node, "clerk")
    a = await _make(node, p, registered_at=utcnow() - timedelta(days=2))
    b = await _make(node, p, registered_at=utcnow() - timedelta(days=1))
    async with node.db.write(node.node_id, None) as uow:  # two nodes, each merging one way
        await uow.update("customers", a["id"], {"merged_into": b["id"]})
        await uow.update("customers", b["id"], {"merged_into": a["id"]})
    await merges.settle(node.db, node.node_id, full=True)
    live, _ = await list_customers(node, p, {}, None, None, 50)
    assert [c["id"] for c in live] == [a["id"]]
    assert (await get_customer(node, p, b["id"]))["id"] == a["id"]


# -- scenarios across real HQ and branch nodes --------------------------------------------

def _replica(node: Node, branch: str | None) -> Replica:
    return Replica(node.db, node.node_id, branch)


async def _same_share(hq: Node, branch: Node, code: str) -> None:
    ours = await snapshot(_replica(branch, code), code)
    theirs = await snapshot(_replica(hq, None), code)
    tables = ("customers", "contacts", "customer_merges", "notices", "conflicts")
    pick = {k: v for k, v in ours.items() if k.split("/")[0] in tables}
    assert pick == {k: v for k, v in theirs.items() if k.split("/")[0] in tables}


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_two_stores_register_the_same_mobile_offline_one_owner_after_sync(
        tmp_path: Path, node: Node, client: Client, backend: str) -> None:
    s1, up1 = await branch_node(tmp_path, node, "S001")
    s2, up2 = await branch_node(tmp_path, node, "S002")
    try:
        await add_user(node, "rep1", "sales_rep", "S001", "销售部")
        await add_user(node, "rep2", "sales_rep", "S002", "销售部")
        gm = await add_user(node, "gm", "general_manager")
        await sync(s1, up1, client)
        await sync(s2, up2, client)
        rep1, rep2 = await principal(s1, "rep1"), await principal(s2, "rep2")
        # HQ unreachable: both stores register the same walk-in.
        first = await registration.register_customer(
            s1, rep1, {"name": "李雷", "mobile": "13800001111", "source": "walk_in",
                       "customer_type": "person"}, [])
        later = await registration.register_customer(
            s2, rep2, {"name": "李雷", "mobile": "138 0000 1111", "source": "call",
                       "customer_type": "person", "industry": "教育"},
            [{"name": "李雷本人"}])
        for b, up in ((s2, up2), (s1, up1)):
            report = await sync(b, up, client)
            assert not report.messages, report.messages
        # HQ: one live owner, the earliest registration; the later one redirects.
        found, _ = await list_customers(node, gm, {"mobile": "13800001111"}, None, None, 50)
        assert [(c["id"], c["owner_id"]) for c in found] == [(first["id"], rep1.id)]
        shown = await get_customer(node, gm, later["id"])
        assert shown["id"] == first["id"] and shown["industry"] == "教育"
        assert [c["name"] for c in shown["contacts"]] == ["李雷本人"]
        # The losing rep is told on their own store's node after its next sync.
        await sync(s2, up2, client)
        notes, _ = await registration.list_notices(s2, rep2, unread=True, kind=None,
                                                   cursor=None, limit=50)
        assert [(n["kind"], n["subject_id"]) for n in notes] == [("collision", first["id"])]
        with pytest.raises(NotFoundError):  # the customer is S001's now
            await get_customer(s2, rep2, later["id"])
        # A second round: the store's view and HQ's agree.
        for b, up in ((s1, up1), (s2, up2), (s1, up1)):
            await sync(b, up, client)
        mine = await get_customer(s1, rep1, later["id"])
        assert mine["id"] == first["id"] and mine["merged_ids"] == [later["id"]]
        await _same_share(node, s1, "S001")
        await _same_share(node, s2, "S002")
    finally:
        await s1.close()
        await s2.close()


async def _store_with_rep(tmp_path: Path, node: Node, client: Client
                          ) -> tuple[Node, Any, Principal]:
    """Store S001 enrolled and synced once, with its sales rep as the store sees them."""
    s1, up1 = await branch_node(tmp_path, node, "S001")
    try:
        await add_user(node, "rep1", "sales_rep", "S001", "销售部")
        await sync(s1, up1, client)
        return s1, up1, await principal(s1, "rep1")
    except BaseException:
        await s1.close()
        raise


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_store_does_not_settle_again_what_hq_settled_from_its_push(
        tmp_path: Path, node: Node, client: Client, backend: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEC §16 settled-upstream: HQ settles what a push round brought when the round
    ends; the store's own pass after the pull examines only what changed after it (here
    what it pulled), not its pushed customers again, and still finds a collision
    between what it pulled and what it holds."""
    s1, up1, rep = await _store_with_rep(tmp_path, node, client)
    try:
        now = utcnow()
        mine = [await _make(s1, rep, mobile=f"+861380000{i:04d}",
                            registered_at=now - timedelta(hours=3)) for i in range(3)]
        hq_rep = await principal(node, "rep1")
        made = await _make(node, hq_rep, mobile="+8613800000001",
                           registered_at=now - timedelta(hours=1), branch="S001")
        seen: list[list[str] | None] = []
        real = merges._collisions

        async def spy(uow: Any, changed: list[str] | None) -> int:
            seen.append(changed)
            return await real(uow, changed)

        monkeypatch.setattr(merges, "_collisions", spy)
        report = await sync(s1, up1, client)
        assert report.settled_upstream > 0 and not report.messages
        ours = seen[-1]  # the store's pass, after the pull
        assert ours is not None and made["id"] in ours
        assert not set(ours) & {m["id"] for m in mine}
        # HQ merged its later registration into the store's earlier one; the store agrees.
        for n in (node, s1):
            async with n.db.read() as conn:
                assert await survivor_id(conn, made["id"]) == mine[1]["id"]
    finally:
        await s1.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_hq_settles_a_push_that_ends_exactly_on_a_page_boundary(
        tmp_path: Path, node: Node, client: Client, backend: str) -> None:
    """A push of exactly one full page ends with an empty page; HQ still hears that the
    push is complete and resolves the collision it brought at once."""
    s1, up1, rep = await _store_with_rep(tmp_path, node, client)
    try:
        now = utcnow()
        first = await _make(s1, rep, mobile="13800001111", registered_at=now - timedelta(hours=2))
        later = await _make(s1, rep, mobile="13800001111", registered_at=now - timedelta(hours=1))
        state = await peer_state(s1.db, up1.hq_node_id)
        pending = await outgoing(s1.db, sender=s1.node_id, peer=up1.hq_node_id, scope=Scope(),
                                 cursor=state["pushed"], limit=10_000)
        assert not pending.more
        report = await sync_once(s1.db, up1, max_skew_ms=60_000,
                                 page_rows=len(pending.rows), client=client)
        assert report.pushed_rows == len(pending.rows) and not report.messages
        async with node.db.read() as conn:
            assert await survivor_id(conn, later["id"]) == first["id"]
    finally:
        await s1.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_customer_merged_at_a_store_while_edited_at_headquarters(
        tmp_path: Path, node: Node, client: Client, backend: str) -> None:
    s1, up1 = await branch_node(tmp_path, node, "S001")
    try:
        await add_user(node, "mgr1", "dept_manager", "S001")
        clerk = await add_user(node, "clerk", "archive_clerk")
        a = await _make(node, clerk, branch="S001", notes="甲的备注")
        b = await _make(node, clerk, branch="S001", notes="乙的备注",
                        contacts=[{"name": "乙联系人"}])
        await sync(s1, up1, client)
        mgr = await principal(s1, "mgr1")
        # Neither side syncs: the store merges B into A, HQ edits B.
        await merges.merge_customers(s1, mgr, a["id"], b["id"], "duplicate")
        await create_contact(node, clerk, b["id"], {"name": "总部加的联系人"})
        await update_customer(node, clerk, b["id"], {"industry": "批发",
                                                     "notes": "总部改的备注"})
        for _ in range(2):
            report = await sync(s1, up1, client)
            assert not report.messages, report.messages
        for where, who in ((node, clerk), (s1, mgr)):
            shown = await get_customer(where, who, b["id"])
            assert shown["id"] == a["id"]  # B redirects to A on every replica
            assert {c["name"] for c in shown["contacts"]} == {"乙联系人", "总部加的联系人"}
            assert shown["industry"] == "批发"  # A had none: it takes HQ's edit
            assert shown["notes"] == "甲的备注"  # A had its own: HQ's is open for review
            [review] = await _conflicts(where, column_name="notes", status="open")
            assert review["loser_value"] == "总部改的备注"
        await _same_share(node, s1, "S001")
    finally:
        await s1.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_collision_resolution_deterministic_two_nodes_write_the_same_rows(
        tmp_path: Path, node: Node, client: Client, backend: str) -> None:
    s1, up1 = await branch_node(tmp_path, node, "S001")
    try:
        rep1 = await add_user(node, "rep1", "sales_rep", "S001", "销售部")
        rep2 = await add_user(node, "rep2", "sales_rep", "S001", "销售部")
        first = await _make(node, rep1, mobile="13800001111", name="韩梅梅", industry="教育")
        later = await _make(node, rep2, mobile="13800001111", name="韩梅",
                            industry="培训", email="hmm@example.com")
        await sync(s1, up1, client)  # the store resolves what it pulled…
        async with s1.db.read() as conn:
            assert await survivor_id(conn, later["id"]) == first["id"]
        assert (await merges.settle(node.db, node.node_id))[0] == 1  # …and so does HQ
        for _ in range(2):
            report = await sync(s1, up1, client)
            assert not report.messages, report.messages
        await _same_share(node, s1, "S001")
        t = TABLES["conflicts"]
        async with node.db.read() as conn:
            found = [dict(r) for r in (await conn.execute(select(t))).mappings()]
            merges_rows = (await conn.execute(select(TABLES["customer_merges"]))).all()
            notices = (await conn.execute(select(TABLES["notices"]))).all()
        assert [c for c in found if c["policy"] != "merge"] == []  # nothing disagreed
        assert {(c["column_name"], c["status"]) for c in found} == {
            ("name", "open"), ("industry", "open"), ("email", "resolved"), ("mobile",
                                                                           "resolved")}
        assert len(merges_rows) == 1 and len(notices) == 1
    finally:
        await s1.close()


# -- property: merges and edits in any order converge -------------------------------------

NAMES = ("S001", "S001b")
op = st.one_of(
    st.tuples(st.just("merge"), st.sampled_from(("hq", *NAMES)), st.booleans()),
    st.tuples(st.just("edit"), st.sampled_from(("hq", *NAMES)), st.booleans(),
              st.sampled_from(("industry", "notes")), st.sampled_from(("甲", "乙"))),
    st.tuples(st.just("contact"), st.sampled_from(("hq", *NAMES)), st.booleans()),
    st.tuples(st.just("push"), st.sampled_from(NAMES), st.integers(1, 4), st.booleans()),
    st.tuples(st.just("pull"), st.sampled_from(NAMES), st.integers(1, 4), st.booleans()),
)


async def _settle(r: Replica) -> None:
    await merges.settle(r.db, r.id)


async def _step(net: Net, ids: tuple[str, str], step: tuple[Any, ...]) -> bool:
    """Take one step; whether it merged the two customers."""
    kind, where = step[0], step[1]
    r = net[where]
    if kind in ("push", "pull"):
        limit, twice = step[2], step[3]
        if kind == "push":
            await net.push_page(where, limit, times=2 if twice else 1)
            await _settle(net.hq)
        else:
            await net.pull_page(where, limit, times=2 if twice else 1)
            await _settle(r)
        return False
    first, second = ids if step[2] else ids[::-1]
    async with r.db.write(r.id, None) as uow:
        gone = await uow.get("customers", second)
        if kind == "merge":
            kept_id = await survivor_id(uow.conn, first)
            kept = await uow.get("customers", kept_id)
            if gone is None or kept is None or gone["merged_into"] or kept_id == second:
                return False
            await merges.absorb(uow, kept, gone, merges.How("duplicate", None, r.id,
                                                            utcnow(), False))
            return True
        if kind == "edit":  # an edit of the archive this node holds for `second`
            await uow.update("customers", second, {step[3]: step[4] + r.id[:4]})
        else:
            await uow.insert("contacts", {"customer_id": second, "name": f"联系人{r.id[:4]}"})
    return False


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(op, min_size=1, max_size=14))
@example(steps=[("merge", "S001", True), ("merge", "S001b", False),  # opposite, concurrently
                ("edit", "hq", False, "notes", "甲"), ("contact", "S001b", True)])
@example(steps=[("merge", "S001", True), ("edit", "hq", False, "industry", "乙"),
                ("contact", "hq", False), ("pull", "S001", 2, True),
                ("push", "S001", 1, True), ("edit", "S001b", False, "notes", "甲")])
@example(steps=[("edit", "hq", False, "industry", "甲"), ("contact", "S001b", True),
                ("contact", "S001", True), ("merge", "S001", False),
                ("merge", "S001b", True), ("merge", "hq", True), ("merge", "hq", False),
                ("merge", "hq", False), ("merge", "hq", False),
                ("edit", "S001", True, "industry", "甲"), ("pull", "S001", 3, True),
                ("pull", "S001", 4, True), ("pull", "S001b", 1, True),
                ("push", "S001b", 4, False)])
def test_merges_and_edits_in_any_order_converge(steps: list[tuple[Any, ...]]) -> None:
    async def scenario() -> None:
        with tempfile.TemporaryDirectory() as folder:
            net = await Net.open(Path(folder), {n: "S001" for n in NAMES})
            try:
                async with await net.hq.write() as uow:
                    a = await uow.insert("customers", customer("张三", "S001"))
                    b = await uow.insert("customers", customer("张叁", "S001"))
                for name in NAMES:
                    await net.sync(name)
                merged = [await _step(net, (a["id"], b["id"]), step) for step in steps]
                for _ in range(3):
                    for name in NAMES:
                        await net.push(name)
                        await _settle(net.hq)
                        await net.pull(name)
                        await _settle(net[name])
                assert await net.converged(), {n: await net.diff(n) for n in NAMES}
                every = (net.hq, *net.nodes.values())
                heads = set()
                for r in every:
                    async with r.db.read() as conn:
                        heads.add((await survivor_id(conn, a["id"]),
                                   await survivor_id(conn, b["id"])))
                    live = [c for c in await rows(r, "customers") if not c["merged_into"]]
                    assert len(live) == (1 if any(merged) else 2)
                assert len(heads) == 1  # every replica redirects the same way
                contacts = {c["id"] for c in await rows(net.hq, "contacts")}
                for r in every:
                    assert {c["id"] for c in await rows(r, "contacts")} == contacts
                assert await row(net.hq, "customers", a["id"]) is not None
            finally:
                await net.close()

    asyncio.run(scenario())
