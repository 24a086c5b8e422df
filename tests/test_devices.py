"""Devices (sync/SPEC.md §20): the offline web app enrolled as a leaf node. One test per
rule, on both backends; the relay through a branch node on SQLite."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from crypto import BoxKey, NodeKey, request_message, response_message, verify
from schema import ENTITIES, TABLES, new_id, nodes, sync_rows, utcnow
from server.node import Node
from server.services import customers as customer_service
from server.services import devices as device_service
from server.services import registration
from server.services import sync as sync_service
from server.services.principal import Principal
from sync import (
    PROTOCOL_VERSION,
    Batch,
    PullRequest,
    PushAck,
    PushRequest,
    Row,
    decode,
    decompress,
    encode,
    pack,
)
from tests._nodes import branch_node, principal, sync
from tests.conftest import add_user

Client = AsyncTestClient[Any]
API = "/api/v1/devices"
VISIT_COLUMNS = list(ENTITIES["visits"].replicated_columns)


@dataclass
class Device:
    """The two key pairs a browser makes at first login, and what enrolment returned."""

    key: NodeKey = field(default_factory=NodeKey.generate)
    box: BoxKey = field(default_factory=BoxKey.generate)
    enrolled: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.enrolled["node_id"])

    def body(self, name: str = "门店平板") -> dict[str, str]:
        return {"name": name, "public_key": self.key.public_hex(),
                "box_public_key": self.box.public_hex()}


def headers(node: Node, p: Principal) -> dict[str, str]:
    """A bearer token for `p`, issued as a login would (without the slow password check)."""
    token = node.signer.issue(p.id, p.token_version, int(time.time()) + 3600)
    return {"Authorization": f"Bearer {token}"}


async def enrol(client: Client, node: Node, p: Principal, device: Device) -> Device:
    r = await client.post(API, json=device.body(), headers=headers(node, p))
    assert r.status_code == 201, r.text
    device.enrolled = r.json()
    return device


async def signed(client: Client, device: Device, path: str, message: Any,
                 identity: bool = True) -> Any:
    """POST a protocol message the way the web app does: uncompressed, signed (SPEC §1)."""
    body = encode(message)
    millis = int(time.time() * 1000)
    h = {"content-type": "application/msgpack", "x-branchline-node": device.id,
         "x-branchline-time": str(millis),
         "x-branchline-signature": device.key.sign(
             request_message("POST", path, device.id, millis, body))}
    if identity:
        h["x-branchline-accept-encoding"] = "identity"
    return await client.post(path, content=body, headers=h)


def pull_request(device: Device) -> PullRequest:
    return PullRequest(protocol=PROTOCOL_VERSION, schema=1, node=device.id, cursor="")


def visit_push(device_id: str, customer_id: str, user: Principal) -> PushRequest:
    """A new visit written on the device, as its outbox sends it (SPEC §7 `Row`)."""
    now = utcnow()
    vid = new_id()
    values = {c: None for c in VISIT_COLUMNS} | {
        "customer_id": customer_id, "kind": "visit", "visited_at": now, "content": "上门拜访",
        "satisfaction": 5, "user_id": user.id, "branch": user.branch, "created_at": now}
    row = Row(tbl="visits", id=vid, cl=1, clock=pack(int(time.time() * 1000)), origin=0,
              values=[values[c] for c in VISIT_COLUMNS])
    batch = Batch(protocol=PROTOCOL_VERSION, schema=1, sender=device_id, nodes=[device_id],
                  columns={"visits": VISIT_COLUMNS}, rows=[row], cursor=f"1:visits:{vid}",
                  more=False)
    return PushRequest(protocol=PROTOCOL_VERSION, schema=1, node=device_id, batch=batch)


async def customer(node: Node, p: Principal, name: str, branch: str,
                   owner: Principal | None = None, mobile: str = "13900001111") -> str:
    row = await customer_service.create_customer(node, p, {
        "name": name, "customer_type": "person", "source": "call", "branch": branch,
        "mobile": mobile, "owner_id": owner.id if owner else None}, [])
    return str(row["id"])


async def origin_of(node: Node, tbl: str, row_id: str) -> str | None:
    async with node.db.read() as conn:
        return (await conn.execute(select(sync_rows.c.origin).where(
            sync_rows.c.tbl == tbl, sync_rows.c.row_id == row_id))).scalar()


async def test_device_grants_readable_only(client: Client, node: Node, org: None) -> None:
    rep = await add_user(node, "rep", "sales_rep", "S001")
    auditor = await add_user(node, "auditor", "auditor")
    dev = await enrol(client, node, rep, Device())
    out = dev.enrolled
    assert out["branch"] == "S001" and out["user_id"] == rep.id and out["role"] == "sales_rep"
    assert out["upstream_node_id"] == node.node_id == out["hq_node_id"]
    assert out["upstream_public_key"] == node.key.public_hex()
    assert (out["protocol"], out["schema"]) == (PROTOCOL_VERSION, 1)
    assert [g["label"] for g in out["grants"]] == ["class:confidential:1"]  # no secret
    vault = node.db.vault
    assert vault is not None
    grant = out["grants"][0]
    assert dev.box.unwrap(grant["wrapped"], label=grant["label"]) == \
        vault.class_keys["confidential"][1]
    assert out["index_grant"]["label"] == "index"
    assert dev.box.unwrap(out["index_grant"]["wrapped"], label="index") == vault.index_root
    # An auditor reads masks only: no class key, and no index to test guessed numbers on.
    blind = await enrol(client, node, auditor, Device())
    assert blind.enrolled["grants"] == [] and blind.enrolled["index_grant"] is None
    assert blind.enrolled["branch"] is None  # HQ-wide: the whole archive, as ciphertext
    audit = TABLES["audit_log"]
    async with node.db.read() as conn:
        entries = (await conn.execute(select(audit.c.actor_id, audit.c.object_id).where(
            audit.c.action == "device_enrolled"))).all()
    assert {(e.actor_id, e.object_id) for e in entries} == {(rep.id, dev.id),
                                                            (auditor.id, blind.id)}


async def test_device_enrol_once(client: Client, node: Node, org: None) -> None:
    rep = await add_user(node, "rep", "sales_rep", "S001")
    other = await add_user(node, "rep2", "sales_rep", "S001")
    dev = await enrol(client, node, rep, Device())
    again = await client.post(API, json=dev.body(), headers=headers(node, rep))
    assert again.status_code == 201 and again.json()["node_id"] == dev.id
    taken = await client.post(API, json=dev.body(), headers=headers(node, other))
    assert taken.status_code == 409 and "another user" in taken.json()["detail"]
    async with node.db.read() as conn:
        count = len((await conn.execute(select(nodes.c.id).where(
            nodes.c.kind == "device"))).all())
    assert count == 1
    for bad, why in (("zz" * 32, "not hexadecimal"), ("ab" * 31, "32 bytes")):
        r = await client.post(API, json={**dev.body(), "public_key": bad},
                              headers=headers(node, rep))
        assert r.status_code == 422 and why in r.json()["detail"], r.text
        assert "\n" not in r.json()["detail"]
    r = await client.post(API, json={**dev.body(), "box_public_key": "00"},
                          headers=headers(node, rep))
    assert r.status_code == 422 and r.json()["detail"].startswith("box_public_key:")
    assert (await client.post(API, json=dev.body())).status_code == 401


async def test_device_identity_encoding(client: Client, node: Node, org: None) -> None:
    gm = await add_user(node, "gm", "general_manager")
    rep = await add_user(node, "rep", "sales_rep", "S001")
    mine = await customer(node, gm, "分店顾客", "S001", rep)
    elsewhere = await customer(node, gm, "杭州顾客", "S002", mobile="13900002222")
    dev = await enrol(client, node, rep, Device())
    r = await signed(client, dev, "/sync/v1/pull", pull_request(dev))
    assert r.status_code == 200, r.text
    assert r.headers["x-branchline-encoding"] == "identity"
    verify(dev.enrolled["upstream_public_key"], r.headers["x-branchline-signature"],
           response_message(200, dev.enrolled["upstream_node_id"],
                            int(r.headers["x-branchline-time"]), r.content))
    batch = decode(r.content)  # plain MessagePack: no zstd in a browser
    assert isinstance(batch, Batch)
    held = {row.id for row in batch.rows if row.tbl == "customers"}
    assert mine in held and elsewhere not in held  # the device's branch share only
    cols = batch.columns["customers"]
    values = next(row.values for row in batch.rows if row.id == mine)
    assert values is not None and str(values[cols.index("mobile")]).startswith("§")
    # Without the header a node still answers zstd, as branches expect.
    z = await signed(client, dev, "/sync/v1/pull", pull_request(dev), identity=False)
    assert z.headers["x-branchline-encoding"] == "zstd"
    assert isinstance(decode(decompress(z.content)), Batch)


async def test_device_push_keeps_origin(client: Client, node: Node, org: None) -> None:
    gm = await add_user(node, "gm", "general_manager")
    rep = await add_user(node, "rep", "sales_rep", "S001")
    mine = await customer(node, gm, "分店顾客", "S001", rep)
    elsewhere = await customer(node, gm, "杭州顾客", "S002", mobile="13900002222")
    dev = await enrol(client, node, rep, Device())
    push = visit_push(dev.id, mine, rep)
    r = await signed(client, dev, "/sync/v1/push", push)
    assert r.status_code == 200, r.text
    ack = decode(r.content)
    assert isinstance(ack, PushAck) and ack.applied == 1 and ack.quarantined == []
    vid = push.batch.rows[0].id
    assert await origin_of(node, "visits", vid) == dev.id
    listed = await client.get(f"/api/v1/customers/{mine}/visits", headers=headers(node, rep))
    assert [v["id"] for v in listed.json()["items"]] == [vid]
    # A visit to another branch's customer is quarantined, like a branch's (SPEC §9).
    stray = visit_push(dev.id, elsewhere, rep)
    ack = decode((await signed(client, dev, "/sync/v1/push", stray)).content)
    assert isinstance(ack, PushAck) and [q.tbl for q in ack.quarantined] == ["visits"]


async def test_device_hq_wide_writes_no_hq_only_tables(client: Client, node: Node) -> None:
    gm = await add_user(node, "gm", "general_manager")
    dev = await enrol(client, node, gm, Device())
    users = list(ENTITIES["users"].replicated_columns)
    uid = new_id()
    row = Row(tbl="users", id=uid, cl=1, clock=pack(int(time.time() * 1000)), origin=0,
              values=[None] * len(users))
    batch = Batch(protocol=PROTOCOL_VERSION, schema=1, sender=dev.id, nodes=[dev.id],
                  columns={"users": users}, rows=[row], cursor=f"1:users:{uid}", more=False)
    r = await signed(client, dev, "/sync/v1/push", PushRequest(
        protocol=PROTOCOL_VERSION, schema=1, node=dev.id, batch=batch))
    ack = decode(r.content)
    assert isinstance(ack, PushAck) and ack.applied == 0
    assert [(q.tbl, q.reason) for q in ack.quarantined] == [
        ("users", "a device cannot change users")]


async def test_device_revoked_wipes(client: Client, node: Node, org: None) -> None:
    rep = await add_user(node, "rep", "sales_rep", "S001")
    other = await add_user(node, "rep2", "sales_rep", "S001")
    mgr = await add_user(node, "mgr", "dept_manager", "S001")
    dev = await enrol(client, node, rep, Device())
    kept = await enrol(client, node, other, Device())
    own = await client.get(API, headers=headers(node, rep))
    assert [d["id"] for d in own.json()["items"]] == [dev.id]
    branch = await client.get(API, headers=headers(node, mgr))
    assert len(branch.json()["items"]) == 2
    url = f"{API}/{dev.id}/revoke"
    r = await client.post(url, json={"reason": "lost"}, headers=headers(node, other))
    assert r.status_code == 403
    r = await client.post(url, json={"reason": "平板丢失"}, headers=headers(node, mgr))
    assert r.status_code == 200 and r.json()["revoked_reason"] == "平板丢失", r.text
    refused = await signed(client, dev, "/sync/v1/pull", pull_request(dev))
    assert refused.status_code == 403 and "revoked" in refused.json()["detail"]
    again = await client.post(API, json=dev.body(), headers=headers(node, rep))
    assert again.status_code == 403 and "revoked" in again.json()["detail"]
    twice = await client.post(url, json={}, headers=headers(node, rep))
    assert twice.status_code == 409
    audit = TABLES["audit_log"]
    async with node.db.read() as conn:
        actor = (await conn.execute(select(audit.c.actor_id).where(
            audit.c.action == "device_revoked", audit.c.object_id == dev.id))).scalar()
    assert actor == mgr.id
    # A deactivated user's device is refused the same way, so it wipes itself too.
    async with node.db.write(node.node_id, None) as uow:
        await uow.update("users", other.id, {"active": False})
    gone = await signed(client, kept, "/sync/v1/pull", pull_request(kept))
    assert gone.status_code == 403 and "revoked" in gone.json()["detail"]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_device_push_relayed_by_branch(tmp_path: Path, client: Client, node: Node,
                                             backend: str) -> None:
    b, up = await branch_node(tmp_path, node, "S001")
    try:
        gm = await add_user(node, "gm", "general_manager")
        rep_hq = await add_user(node, "rep", "sales_rep", "S001")
        mine = await customer(node, gm, "分店顾客", "S001", rep_hq)
        await sync(b, up, client)
        rep = await principal(b, "rep")
        dev = Device()
        dev.enrolled = await device_service.enrol(
            b, rep, name="柜台电脑", public_key=dev.key.public_hex(),
            box_public_key=dev.box.public_hex())
        assert dev.enrolled["upstream_node_id"] == b.node_id
        assert dev.enrolled["hq_node_id"] == node.node_id
        assert [g["label"] for g in dev.enrolled["grants"]] == ["class:confidential:1"]
        async with b.db.read() as conn:
            peer = dict((await conn.execute(select(nodes).where(nodes.c.id == dev.id))
                         ).mappings().one())
        pulled = await sync_service.pull(b, peer, pull_request(dev))
        assert mine in {r.id for r in pulled.rows if r.tbl == "customers"}
        push = visit_push(dev.id, mine, rep)
        ack = await sync_service.push(b, peer, push)
        assert ack.applied == 1 and ack.quarantined == []
        await sync(b, up, client)  # the branch relays the device's row, origin kept
        vid = push.batch.rows[0].id
        assert await origin_of(node, "visits", vid) == dev.id
        visits = TABLES["visits"]
        async with node.db.read() as conn:
            user = (await conn.execute(select(visits.c.user_id).where(visits.c.id == vid))
                    ).scalar()
        assert user == rep.id
    finally:
        await b.close()


async def _pull_all(client: Client, dev: Device, cursor: str = "") -> list[Batch]:
    batches = []
    while True:
        r = await signed(client, dev, "/sync/v1/pull", PullRequest(
            protocol=PROTOCOL_VERSION, schema=1, node=dev.id, cursor=cursor))
        assert r.status_code == 200, r.text
        batch = decode(r.content)
        assert isinstance(batch, Batch)
        batches.append(batch)
        cursor = batch.cursor
        if not batch.more:
            return batches


async def test_device_rep_holds_own_customers(client: Client, node: Node, org: None) -> None:
    """[device-rep-holds-own-customers] A sales rep's device holds the customers the rep
    owns (and their children), as the API shows them; a handover moves a customer onto
    the new owner's device whole and evicts it from the old one. No device holds the
    audit trail or other nodes' key grants, and users arrive without password hashes."""
    gm = await add_user(node, "gm", "general_manager")
    rep = await add_user(node, "rep", "sales_rep", "S001")
    rep2 = await add_user(node, "rep2", "sales_rep", "S001")
    mine = await customer(node, gm, "我的顾客", "S001", rep)
    theirs = await customer(node, gm, "同事的顾客", "S001", rep2, mobile="13900003333")
    await customer_service.create_contact(node, gm, theirs, {"name": "同事顾客联系人"})
    dev, dev2 = await enrol(client, node, rep, Device()), await enrol(client, node, rep2, Device())
    first = await _pull_all(client, dev)
    rows = [row for b in first for row in b.rows]
    held = {(row.tbl, row.id) for row in rows}
    assert ("customers", mine) in held and ("customers", theirs) not in held
    assert not any(row.tbl == "contacts" for row in rows)  # only the colleague's has one
    assert not {row.tbl for row in rows} & {"audit_log", "read_audit", "key_grants"}
    users_cols = first[0].columns.get("users") or next(
        b.columns["users"] for b in first if "users" in b.columns)
    hashes = {row.values[users_cols.index("password_hash")] for row in rows
              if row.tbl == "users" and row.values is not None}
    assert hashes == {""}
    # rep2 hands the customer to rep: it arrives on rep's device with its contact, and
    # leaves rep2's.
    await _pull_all(client, dev2)
    cursor2 = (await _pull_all(client, dev2))[-1].cursor
    await registration.hand_over(node, gm, from_user=rep2.id, to_user=rep.id,
                                 customer_ids=[theirs], reason="离职交接", notify=False)
    later = await _pull_all(client, dev, first[-1].cursor)
    got = {(row.tbl, row.id) for b in later for row in b.rows}
    assert ("customers", theirs) in got
    assert any(row.tbl == "contacts" for b in later for row in b.rows)
    gone = await _pull_all(client, dev2, cursor2)
    assert ("customers", theirs) in {tuple(e) for b in gone for e in b.evictions}


async def test_device_manager_holds_own_department(client: Client, node: Node, org: None
                                                   ) -> None:
    """[device-rep-holds-own-customers] A department manager's device holds their
    department's customers, as the API shows them, not the whole branch."""
    gm = await add_user(node, "gm", "general_manager")
    mgr = await add_user(node, "mgr", "dept_manager", "S001", "销售部")
    ids = {}
    for dept, mobile in (("销售部", "13900004444"), ("客服部", "13900005555")):
        row = await customer_service.create_customer(node, gm, {
            "name": f"{dept}顾客", "customer_type": "person", "source": "call",
            "branch": "S001", "department": dept, "mobile": mobile}, [])
        ids[dept] = row["id"]
    dev = await enrol(client, node, mgr, Device())
    held = {row.id for b in await _pull_all(client, dev) for row in b.rows
            if row.tbl == "customers"}
    assert ids["销售部"] in held and ids["客服部"] not in held
