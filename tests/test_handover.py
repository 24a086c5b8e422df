"""Handover (客户交接, domain.md §3): a departing rep's customers go to another rep in
bulk, with a log, the customers to notify, key customers short of two contacts, and a
notice for the receiving rep; notices are private to their user."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from schema import TABLES
from server.node import Node
from server.services.customers import create_customers
from server.services.principal import Principal
from tests.conftest import add_user, login

Client = AsyncTestClient[Any]


async def _customers(node: Node, clerk: Principal, owner: Principal, n: int,
                     **extra: Any) -> list[dict[str, Any]]:
    return await create_customers(node, clerk, [(
        {"name": f"客户{i}", "customer_type": "person", "source": "walk_in",
         "owner_id": owner.id, "branch": owner.branch, "department": owner.department,
         "mobile": f"1380000{i:04d}", **extra}, [{"name": f"联系人{i}"}])
        for i in range(n)])


async def _setup(node: Node) -> dict[str, Principal]:
    return {
        "clerk": await add_user(node, "clerk", "archive_clerk"),
        "mgr1": await add_user(node, "mgr1", "dept_manager", "S001"),
        "leaver": await add_user(node, "leaver", "sales_rep", "S001", "销售部"),
        "taker": await add_user(node, "taker", "sales_rep", "S001", "销售部"),
        "other": await add_user(node, "other", "sales_rep", "S002", "销售部"),
        "director": await add_user(node, "director", "sales_director"),
    }


async def test_handover_moves_every_customer_with_a_new_cycle_a_log_and_a_notice(
        client: Client, node: Node, org: None) -> None:
    u = await _setup(node)
    mine = await _customers(node, u["clerk"], u["leaver"], 3)
    h = await login(client, "mgr1")
    r = await client.post("/api/v1/handovers", headers=h, json={
        "from_user": u["leaver"].id, "to_user": u["taker"].id, "reason": "离职",
        "notify": True})
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["count"] == 3 and {c["id"] for c in out["notify"]} == {c["id"] for c in mine}
    ht = await login(client, "taker")
    r = await client.get("/api/v1/customers", headers=ht)
    assert {c["id"] for c in r.json()["items"]} == {c["id"] for c in mine}
    assert (await client.get("/api/v1/customers", headers=await login(client, "leaver"))
            ).json()["items"] == []
    # Ownership changed as a new cycle of the first-write field, kept in the history.
    r = await client.get(f"/api/v1/customers/{mine[0]['id']}/history", headers=h)
    assert any(e["column_name"] == "owner_id" and e["new_value"] == u["taker"].id
               for e in r.json()["items"])
    r = await client.get("/api/v1/handovers", headers=h,
                         params={"from_user": u["leaver"].id})
    log = r.json()["items"]
    assert len(log) == 3 and len({e["batch_id"] for e in log}) == 1
    assert {e["batch_id"] for e in log} == {out["batch_id"]}
    r = await client.get("/api/v1/handovers", headers=ht)  # a rep sees handovers to them
    assert len(r.json()["items"]) == 3
    r = await client.get("/api/v1/notices", headers=ht)
    [notice] = r.json()["items"]
    assert notice["kind"] == "handover" and notice["subject_id"] == out["batch_id"]
    assert "3位客户" in notice["message"] and notice["read_at"] is None


async def test_handover_lists_customers_to_tell_and_key_customers_short_of_contacts(
        client: Client, node: Node, org: None) -> None:
    u = await _setup(node)
    key = await _customers(node, u["clerk"], u["leaver"], 2, customer_class="key")
    async with node.db.write(node.node_id, None) as uow:  # the second has two contacts
        await uow.insert("contacts", {"customer_id": key[1]["id"], "name": "第二联系人"})
    r = await client.post("/api/v1/handovers", headers=await login(client, "director"),
                          json={"from_user": u["leaver"].id, "to_user": u["taker"].id,
                                "customer_ids": [key[0]["id"], key[1]["id"]]})
    assert r.status_code == 201, r.text
    out = r.json()
    assert {c["mobile"] for c in out["notify"]} == {"+8613800000000", "+8613800000001"}
    assert out["needs_contacts"] == [{"id": key[0]["id"], "name": "客户0", "contacts": 1}]
    # A handover without notify lists no one to tell.
    more = await _customers(node, u["clerk"], u["taker"], 1)
    r = await client.post("/api/v1/handovers", headers=await login(client, "mgr1"),
                          json={"from_user": u["taker"].id, "to_user": u["leaver"].id,
                                "customer_ids": [more[0]["id"]], "notify": False})
    assert r.json()["notify"] == [] and r.json()["count"] == 1


async def test_dept_manager_hands_over_only_within_their_branch(
        client: Client, node: Node, org: None) -> None:
    u = await _setup(node)
    await _customers(node, u["clerk"], u["leaver"], 1)
    h = await login(client, "mgr1")
    r = await client.post("/api/v1/handovers", headers=h, json={
        "from_user": u["leaver"].id, "to_user": u["other"].id})
    assert r.status_code == 403
    r = await client.post("/api/v1/handovers", headers=await login(client, "leaver"), json={
        "from_user": u["leaver"].id, "to_user": u["taker"].id})
    assert r.status_code == 403
    # A director may, but a rep of another store cannot own S001's customers.
    r = await client.post("/api/v1/handovers", headers=await login(client, "director"),
                          json={"from_user": u["leaver"].id, "to_user": u["other"].id})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "to_user"


async def test_handover_refuses_customers_not_of_the_leaving_rep_and_writes_nothing(
        client: Client, node: Node, org: None) -> None:
    u = await _setup(node)
    mine = await _customers(node, u["clerk"], u["leaver"], 1)
    theirs = await _customers(node, u["clerk"], u["taker"], 1)
    h = await login(client, "mgr1")
    r = await client.post("/api/v1/handovers", headers=h, json={
        "from_user": u["leaver"].id, "to_user": u["taker"].id,
        "customer_ids": [mine[0]["id"], theirs[0]["id"]]})
    assert r.status_code == 422 and theirs[0]["id"] in r.json()["detail"]
    async with node.db.read() as conn:
        assert (await conn.execute(select(TABLES["handovers"]))).first() is None
        owner = (await conn.execute(select(TABLES["customers"].c.owner_id).where(
            TABLES["customers"].c.id == mine[0]["id"]))).scalar_one()
    assert owner == u["leaver"].id
    r = await client.post("/api/v1/handovers", headers=h, json={
        "from_user": u["taker"].id, "to_user": u["taker"].id})
    assert r.status_code == 422


async def test_notices_are_private_to_their_user_and_marked_read_once(
        client: Client, node: Node, org: None) -> None:
    u = await _setup(node)
    await _customers(node, u["clerk"], u["leaver"], 1)
    r = await client.post("/api/v1/handovers", headers=await login(client, "mgr1"), json={
        "from_user": u["leaver"].id, "to_user": u["taker"].id})
    assert r.status_code == 201
    ht = await login(client, "taker")
    [notice] = (await client.get("/api/v1/notices", headers=ht)).json()["items"]
    other = await login(client, "leaver")
    assert (await client.get("/api/v1/notices", headers=other)).json()["items"] == []
    r = await client.post(f"/api/v1/notices/{notice['id']}/read", headers=other)
    assert r.status_code == 404
    r = await client.post(f"/api/v1/notices/{notice['id']}/read", headers=ht)
    assert r.status_code == 200 and r.json()["read_at"] is not None
    first_read = r.json()["read_at"]
    r = await client.post(f"/api/v1/notices/{notice['id']}/read", headers=ht)
    assert r.json()["read_at"] == first_read
    r = await client.get("/api/v1/notices", headers=ht, params={"unread": "true"})
    assert r.json()["items"] == []
