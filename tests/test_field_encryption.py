"""Field-level encryption end to end on a node: who reads what, ciphertext at rest and in
sync payloads, blind-index search, and values that do not move between rows."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select, update

from schema import TABLES, Scope, outgoing
from server.node import Node
from sync import encode
from tests.conftest import add_user, login

Client = AsyncTestClient[Any]
MOBILE = "13812345678"
ID_NUMBER = "11010519491231002X"
CREDIT = "良好-甲级"


async def _customer(client: Client, headers: dict[str, str], **extra: Any) -> dict[str, Any]:
    if "name" in extra and "mobile" not in extra:
        # Another person: registering a mobile number twice is refused (撞单, 409).
        extra["mobile"] = f"137{zlib.crc32(extra['name'].encode()) % 10**8:08d}"
    r = await client.post("/api/v1/customers", headers=headers, json={
        "name": "王秘", "customer_type": "person", "source": "walk_in",
        "mobile": MOBILE, "id_number": ID_NUMBER, "credit_status": CREDIT,
        "address": "上海市黄浦区南京东路100号", "email": "wang@example.com",
        "contacts": [{"name": "王小秘", "mobile": "13900001111"}], **extra})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _as(client: Client, node: Node, role: str) -> dict[str, str]:
    await add_user(node, f"u_{role}", role)
    return await login(client, f"u_{role}")


async def test_each_role_reads_only_its_classes_and_others_get_masks(
        client: Client, node: Node, clerk: dict[str, str], admin_headers: dict[str, str]) -> None:
    c = await _customer(client, clerk)
    assert c["mobile"] == f"+86{MOBILE}" and c["id_number"] == ID_NUMBER  # clerk: all
    seen: dict[str, dict[str, Any]] = {}
    for role in ("sales_director", "customer_service", "finance", "auditor"):
        headers = await _as(client, node, role)
        r = await client.get(f"/api/v1/customers/{c['id']}", headers=headers)
        assert r.status_code == 200, r.text
        seen[role] = r.json()
    r = await client.get(f"/api/v1/customers/{c['id']}", headers=admin_headers)
    seen["admin"] = r.json() if r.status_code == 200 else {}
    assert seen["sales_director"]["id_number"] == ID_NUMBER
    assert seen["customer_service"]["mobile"] == f"+86{MOBILE}"
    assert seen["customer_service"]["id_number"] == "1101**********002X"
    assert seen["customer_service"]["credit_status"] == "***"
    assert seen["finance"]["credit_status"] == CREDIT
    assert seen["finance"]["id_number"] == "1101**********002X"
    assert seen["auditor"]["mobile"] == "138****5678"
    assert seen["auditor"]["contacts"][0]["mobile"] == "139****1111"
    for role in ("auditor", "admin"):
        text = str(seen[role])
        assert MOBILE not in text and ID_NUMBER not in text and CREDIT not in text


async def test_history_shows_changes_of_secret_fields_as_masks_to_other_roles(
        client: Client, node: Node, clerk: dict[str, str]) -> None:
    c = await _customer(client, clerk)
    r = await client.patch(f"/api/v1/customers/{c['id']}", headers=clerk,
                           json={"id_number": "110101199003074514"})
    assert r.status_code == 200, r.text
    rep = await _as(client, node, "customer_service")
    r = await client.get(f"/api/v1/customers/{c['id']}/history", headers=rep)
    change = next(h for h in r.json()["items"] if h["column_name"] == "id_number")
    assert change["old_value"] == "1101**********002X"
    assert change["new_value"] == "1101**********4514"
    r = await client.get(f"/api/v1/customers/{c['id']}/history", headers=clerk)
    change = next(h for h in r.json()["items"] if h["column_name"] == "id_number")
    assert (change["old_value"], change["new_value"]) == (ID_NUMBER, "110101199003074514")
    # The clerk saw plaintext in the history: audited. The service rep saw masks: not.
    audit = TABLES["read_audit"]
    async with node.db.read() as conn:
        reads = (await conn.execute(select(audit).where(
            audit.c.table_name == "field_history"))).mappings().all()
    assert [(r["fields"], r["customer_id"]) for r in reads] == [(["id_number"], c["id"])]


async def test_no_plaintext_in_the_tables_or_in_a_sync_payload(
        client: Client, node: Node, clerk: dict[str, str]) -> None:
    c = await _customer(client, clerk)
    customers, contacts = TABLES["customers"], TABLES["contacts"]
    async with node.db.read() as conn:
        row = (await conn.execute(select(customers).where(customers.c.id == c["id"]))
               ).mappings().one()
        contact = (await conn.execute(select(contacts).where(
            contacts.c.customer_id == c["id"]))).mappings().one()
        history = (await conn.execute(select(TABLES["field_history"]))).all()
    stored = " ".join(map(str, [*row.values(), *contact.values(), *history]))
    for secret in (MOBILE, ID_NUMBER, CREDIT, "13900001111", "南京东路100号", "wang@"):
        assert secret not in stored
    assert row["mobile"].startswith("§") and row["mobile_mask"] == "138****5678"
    payload = b""
    cursor, more = "", True
    while more:
        batch = await outgoing(node.db, sender=node.node_id, peer="peer", scope=Scope(),
                               cursor=cursor, limit=500)
        payload += encode(batch)
        cursor, more = batch.cursor, batch.more
    assert c["id"].encode() in payload  # the customer travelled…
    for secret in (MOBILE, ID_NUMBER, CREDIT, "13900001111"):
        assert secret.encode() not in payload  # …as ciphertext


async def test_search_by_mobile_and_id_number_through_the_blind_index(
        client: Client, clerk: dict[str, str]) -> None:
    c = await _customer(client, clerk)
    other = await _customer(client, clerk, mobile="13700000000", id_number="110101199003074514")
    for params in ({"mobile": "138-1234-5678"}, {"id_number": ID_NUMBER.lower()}):
        r = await client.get("/api/v1/customers", headers=clerk, params=params)
        assert r.status_code == 200, r.text
        assert [x["id"] for x in r.json()["items"]] == [c["id"]]
    r = await client.get("/api/v1/customers", headers=clerk, params={"mobile": "13700000000"})
    assert [x["id"] for x in r.json()["items"]] == [other["id"]]


async def test_a_ciphertext_copied_to_another_row_does_not_decrypt(
        client: Client, node: Node, clerk: dict[str, str]) -> None:
    a = await _customer(client, clerk)
    b = await _customer(client, clerk, mobile="13700000000")
    customers = TABLES["customers"]
    async with node.db.read() as conn:
        token = (await conn.execute(select(customers.c.mobile).where(
            customers.c.id == a["id"]))).scalar_one()
    async with node.db.admin() as conn:  # an attacker with write access to the file
        await conn.execute(update(customers).where(customers.c.id == b["id"])
                           .values(mobile=token))
    r = await client.get(f"/api/v1/customers/{b['id']}", headers=clerk)
    assert r.status_code == 200
    assert r.json()["mobile"] != f"+86{MOBILE}"  # never A's number under B's name


async def test_a_branch_holds_only_the_classes_it_was_granted(
        tmp_path: Any, node: Node, client: Client, clerk: dict[str, str]) -> None:
    from schema import KeyMissingError, utcnow
    from server.services.customers import get_customer
    from tests.conftest import add_user
    from tests.test_sync_http import _branch, _sync

    branch, up = await _branch(tmp_path, node, "S021")  # default grant: confidential only
    try:
        hq_customer = await _customer(client, clerk, branch="S021")
        assert branch.db.vault is not None
        assert branch.db.vault.holds("confidential") and not branch.db.vault.holds("secret")
        await add_user(node, "gm21", "general_manager", "S021")
        await _sync(branch, up, client)
        from server.services.principal import Principal

        gm = Principal(id="gm", username="gm21", display_name="gm", role="general_manager",
                       branch="S021", department=None, token_version=0, created_at=utcnow())
        seen = await get_customer(branch, gm, hq_customer["id"])
        assert seen["mobile"] == f"+86{MOBILE}"  # confidential: granted
        assert seen["id_number"] == "1101**********002X"  # secret: not even for a GM here
        assert seen["credit_status"] == "***"
        # The branch cannot write a secret field; a confidential one it can, and HQ reads it.
        with pytest.raises(KeyMissingError, match="no secret key"):
            async with branch.db.write(branch.node_id, None) as uow:
                await uow.update("customers", hq_customer["id"],
                                 {"id_number": "110101199003074514"})
        async with branch.db.write(branch.node_id, None) as uow:
            c = await uow.insert("customers", {"name": "分店客户", "customer_type": "person",
                                               "source": "call", "registered_at": utcnow(),
                                               "branch": "S021", "mobile": "+8613600000000"})
        await _sync(branch, up, client)
        r = await client.get(f"/api/v1/customers/{c['id']}", headers=clerk)
        assert r.status_code == 200 and r.json()["mobile"] == "+8613600000000"
    finally:
        await branch.close()


async def test_erasure_destroys_the_data_keys_on_every_replica(
        tmp_path: Any, node: Node, client: Client, clerk: dict[str, str]) -> None:
    from schema import data_key_id
    from server.services.erasure import erase_customer
    from tests.test_sync_http import _branch, _sync

    branch, up = await _branch(tmp_path, node, "S031")
    try:
        c = await _customer(client, clerk, branch="S031")
        await _sync(branch, up, client)
        await add_user(node, "dm", "dept_manager")
        await add_user(node, "gm", "general_manager")
        with pytest.raises(Exception, match="not an active general_manager"):
            await erase_customer(node, c["id"], reviewed_by="dm", approved_by="dm",
                                 reason="客户要求销毁")
        record = await erase_customer(node, c["id"], reviewed_by="dm", approved_by="gm",
                                      reason="保管期满，经审批销毁")
        assert "mobile" in record["fields"] and "contacts.mobile" in record["fields"]
        await _sync(branch, up, client)
        for replica in (node, branch):
            async with replica.db.read() as conn:
                keys = (await conn.execute(select(TABLES["data_keys"]).where(
                    TABLES["data_keys"].c.customer_id == c["id"]))).all()
                row = (await conn.execute(select(TABLES["customers"]).where(
                    TABLES["customers"].c.id == c["id"]))).mappings().one()
                old = (await conn.execute(select(TABLES["field_history"].c.old_value).where(
                    TABLES["field_history"].c.row_id == c["id"],
                    TABLES["field_history"].c.column_name == "mobile"))).scalars().all()
                vault = replica.db.vault
                assert vault is not None
                # The old ciphertext is still in the history, and nothing opens it.
                assert [v for v in old if v]
                for v in old:
                    if v:
                        assert await vault.reveal(conn, "customers", "mobile", c["id"],
                                                  c["id"], v, frozenset({"confidential"})
                                                  ) == "(encrypted)"
            assert keys == [] and row["mobile"] is None and row["mobile_mask"] is None
            assert row["mobile_bidx"] is None and row["id_number"] is None
        assert data_key_id(c["id"], "confidential")
        r = await client.get("/api/v1/customers", headers=clerk, params={"mobile": MOBILE})
        assert r.json()["items"] == []
    finally:
        await branch.close()


async def test_every_plaintext_read_is_audited_and_masks_are_not(
        client: Client, node: Node, clerk: dict[str, str]) -> None:
    c = await _customer(client, clerk)
    auditor = await _as(client, node, "auditor")
    assert (await client.get(f"/api/v1/customers/{c['id']}", headers=auditor)).status_code == 200
    assert (await client.get(f"/api/v1/customers/{c['id']}", headers=clerk)).status_code == 200
    r = await client.get("/api/v1/customers", headers=clerk, params={"mobile": MOBILE})
    assert r.status_code == 200
    audit = TABLES["read_audit"]
    async with node.db.read() as conn:
        rows = (await conn.execute(select(audit).order_by(audit.c.id))).mappings().all()
    users = {r["user_id"] for r in rows}
    assert len(users) == 1  # the clerk only: the auditor saw masks, which are not reads
    customer_reads = [r for r in rows if r["table_name"] == "customers"]
    assert len(customer_reads) == 2  # the GET and the search
    assert {"mobile", "id_number", "credit_status"} <= set(customer_reads[0]["fields"])
    assert all(r["customer_id"] == c["id"] and r["node_id"] == node.node_id for r in rows)
    assert any(r["table_name"] == "contacts" and r["fields"] == ["mobile"] for r in rows)


async def test_rotation_rewraps_grants_the_branch_and_destroys_old_versions(
        tmp_path: Any, node: Node, client: Client, clerk: dict[str, str]) -> None:
    from schema import node_meta
    from server.key_jobs import maintain, pending
    from server.keys import rotate
    from server.services.customers import get_customer
    from server.services.nodes import revoke
    from tests.test_sync_http import _branch, _sync

    branch, up = await _branch(tmp_path, node, "S041")
    try:
        c = await _customer(client, clerk, branch="S041")
        await _sync(branch, up, client)
        root = node.settings.root_key
        assert root is not None
        result = await rotate(node.db, hq_node_id=node.node_id, root_key=root,
                              cls="confidential")
        assert result["version"] == 2 and result["nodes_granted"] == 1
        # New writes at HQ use version 2 at once; old data stays readable meanwhile.
        r = await client.get(f"/api/v1/customers/{c['id']}", headers=clerk)
        assert r.json()["mobile"] == f"+86{MOBILE}"
        assert (await pending(node.db))["rewrap"] >= 1
        # The background job rewraps, but keeps version 1 while the branch lacks version 2.
        done = await maintain(node.db, node.node_id)
        assert done["rewrapped"] >= 1 and done["retired"] == []
        async with node.db.read() as conn:
            versions = {r.key_version for r in await conn.execute(
                select(TABLES["data_keys"]).where(TABLES["data_keys"].c.cls == "confidential"))}
        assert versions == {2}
        r = await client.get(f"/api/v1/customers/{c['id']}", headers=clerk)
        assert r.json()["mobile"] == f"+86{MOBILE}"
        from server.services.upstream import refresh_vault

        await _sync(branch, up, client)
        await _sync(branch, up, client)  # its next request acknowledges the grant
        assert (await maintain(node.db, node.node_id))["retired"] == ["class:confidential:1"]
        async with node.db.read() as conn:
            meta = {r.key for r in await conn.execute(select(node_meta.c.key))}
        assert "fkey:class:confidential:2" in meta and "fkey:class:confidential:1" not in meta
        # The branch loses version 1 with its next sync, and reads on.
        await _sync(branch, up, client)
        await refresh_vault(branch.db, node_id=branch.node_id, role="branch", root_key=None)
        assert branch.db.vault is not None
        assert set(branch.db.vault.class_keys["confidential"]) == {2}
        from schema import utcnow
        from server.services.principal import Principal

        rep = Principal(id="x", username="x", display_name="x", role="general_manager",
                        branch="S041", department=None, token_version=0, created_at=utcnow())
        assert (await get_customer(branch, rep, c["id"]))["mobile"] == f"+86{MOBILE}"
        # A revoked node gets no further versions.
        await revoke(node, node_id=branch.node_id, branch=None, reason="stolen")
        again = await rotate(node.db, hq_node_id=node.node_id, root_key=root,
                             cls="confidential")
        assert again["nodes_granted"] == 0
    finally:
        await branch.close()


async def test_erasure_over_http_needs_a_general_manager_and_a_reviewer(
        client: Client, node: Node, clerk: dict[str, str]) -> None:
    c = await _customer(client, clerk)
    await add_user(node, "dm2", "dept_manager")
    gm = await _as(client, node, "general_manager")
    body = {"reviewed_by": "dm2", "reason": "保管期满"}
    r = await client.post(f"/api/v1/customers/{c['id']}/erase", headers=clerk, json=body)
    assert r.status_code == 403
    r = await client.post(f"/api/v1/customers/{c['id']}/erase", headers=gm,
                          json={"reviewed_by": "u_general_manager", "reason": "x"})
    assert r.status_code == 422 and "reviewed_by" in r.text
    r = await client.post(f"/api/v1/customers/{c['id']}/erase", headers=gm, json=body)
    assert r.status_code == 200, r.text
    assert "id_number" in r.json()["fields"]
    r = await client.get(f"/api/v1/customers/{c['id']}", headers=clerk)
    assert r.json()["mobile"] is None and r.json()["id_number"] is None
