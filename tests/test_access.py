"""Access approvals (调阅 / 借阅 / 导出, domain.md §9): who approves, what a grant opens
(reading only) and for how long — by the reading node's own clock, also on a branch
that never syncs again. One test per rule, on both backends unless marked."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from crypto import hash_password
from schema import TABLES, utcnow
from server.config import Settings
from server.node import Node, open_node
from server.services import access as service
from server.services import customers as customer_service
from server.services import grants
from server.services import org as org_service
from server.services import users as user_service
from server.services.errors import NotFoundError
from server.services.principal import Principal
from tests._nodes import branch_node, principal, sync
from tests.conftest import PASSWORD, add_user

Client = AsyncTestClient[Any]
API = "/api/v1/access-requests"
USERS = [  # username, role, branch, department
    ("rep", "sales_rep", "S001", "销售部"),
    ("rep2", "sales_rep", "S001", "销售部"),
    ("mgr", "dept_manager", "S001", "销售部"),
    ("mgr_cs", "dept_manager", "S001", "客服部"),
    ("gm", "general_manager", None, None),
]
_HASH: list[str] = []


async def add_users(node: Node, monkeypatch: pytest.MonkeyPatch,
                    specs: list[tuple[str, str, str | None, str | None]]
                    ) -> dict[str, Principal]:
    """Users with the test password, hashed once per session (argon2 is slow by design)."""
    if not _HASH:
        _HASH.append(hash_password(PASSWORD))
    monkeypatch.setattr(user_service, "hash_password", lambda _: _HASH[0])
    return {u: await add_user(node, u, role, branch, dept) for u, role, branch, dept in specs}


async def customer(node: Node, p: Principal, name: str, department: str,
                   owner: Principal | None = None, branch: str = "S001") -> str:
    row = await customer_service.create_customer(node, p, {
        "name": name, "customer_type": "person", "source": "call", "branch": branch,
        "department": department, "owner_id": owner.id if owner else None,
        "mobile": "13800001111"}, [{"name": "联系人", "mobile": "13900002222"}])
    return str(row["id"])


@dataclass
class Archives:
    """Users (headers, principals) and S001 customers: `own` of rep2 in 销售部 (rep's
    department), `other` in 客服部, `secret` of rep2 in 销售部 marked top secret."""

    h: dict[str, dict[str, str]]
    p: dict[str, Principal]
    own: str
    other: str
    secret: str


@pytest.fixture
async def arc(node: Node, client: Client, org: None, monkeypatch: pytest.MonkeyPatch
              ) -> Archives:
    for dept in ("销售部", "客服部"):
        await org_service.create_department(node, None, dept, "S001")
    p = await add_users(node, monkeypatch, USERS)
    h = {u: {"Authorization": "Bearer " + node.signer.issue(
        x.id, x.token_version, int(time.time()) + 3600)} for u, x in p.items()}
    gm = p["gm"]
    secret = await customer(node, gm, "绝密客户", "销售部", p["rep2"])
    await customer_service.update_customer(node, gm, secret, {"secrecy": "top_secret"})
    return Archives(h, p, await customer(node, gm, "本部门客户", "销售部", p["rep2"]),
                    await customer(node, gm, "他部门客户", "客服部"), secret)


async def _request(client: Client, headers: dict[str, str], status: int = 201,
                   **body: Any) -> dict[str, Any]:
    body = {"kind": "view", "purpose": "客户回访", "reason": "原业务员休假", **body}
    r = await client.post(API, json=body, headers=headers)
    assert r.status_code == status, r.text
    return dict(r.json())


async def _act(client: Client, headers: dict[str, str], rid: str, action: str,
               status: int = 200, note: str | None = None) -> dict[str, Any]:
    r = await client.post(f"{API}/{rid}/{action}", json={"note": note} if note else None,
                          headers=headers)
    assert r.status_code == status, r.text
    return dict(r.json())


async def _actions(node: Node) -> list[str]:
    log = TABLES["audit_log"]
    async with node.db.read() as conn:
        return list((await conn.execute(select(log.c.action).where(
            log.c.action.like("access_%")).order_by(log.c.seq))).scalars())


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_own_department_request_goes_to_its_dept_manager(
    arc: Archives, client: Client, node: Node
) -> None:
    req = await _request(client, arc.h["rep"], customer_id=arc.own, hours=8)
    assert req["approver_role"] == "dept_manager" and req["status"] == "requested"
    assert req["branch"] == "S001" and req["department"] == "销售部"
    assert not req["active"]
    pending = await client.get(API, params={"to_approve": "true"}, headers=arc.h["mgr"])
    assert [i["id"] for i in pending.json()["items"]] == [req["id"]]
    for other in ("mgr_cs", "gm"):  # another department's manager; not the GM's to decide
        r = await client.get(API, params={"to_approve": "true"}, headers=arc.h[other])
        assert r.json()["items"] == []
    await _act(client, arc.h["mgr_cs"], req["id"], "approve", 404)  # not theirs to see
    await _act(client, arc.h["gm"], req["id"], "approve", 403)
    await _act(client, arc.h["rep"], req["id"], "approve", 403)  # never one's own
    done = await _act(client, arc.h["mgr"], req["id"], "approve", note="同意")
    assert done["status"] == "approved" and done["active"] is True
    assert done["decided_by"] == arc.p["mgr"].id
    assert _at(done["expires_at"]) - _at(done["decided_at"]) == timedelta(hours=8)
    await _act(client, arc.h["mgr"], req["id"], "approve", 409)
    mine = await client.get(API, params={"mine": "true"}, headers=arc.h["rep"])
    assert [i["id"] for i in mine.json()["items"]] == [req["id"]]
    assert await _actions(node) == ["access_requested", "access_approved"]


async def test_other_department_and_exports_go_to_the_general_manager(
    arc: Archives, client: Client, node: Node
) -> None:
    other = await _request(client, arc.h["rep"], customer_id=arc.other)
    dept = await _request(client, arc.h["rep"], department="客服部", object_branch="S001")
    export = await _request(client, arc.h["rep"], kind="export", department="销售部",
                            object_branch="S001", subject="客户名单")
    for req in (other, dept, export):
        assert req["approver_role"] == "general_manager", req
        assert req["hours"] == 72
    await _act(client, arc.h["mgr"], other["id"], "approve", 404)
    r = await client.get(API, params={"to_approve": "true"}, headers=arc.h["gm"])
    assert {i["id"] for i in r.json()["items"]} == {other["id"], dept["id"], export["id"]}
    await _act(client, arc.h["gm"], export["id"], "approve")
    async with node.db.read() as conn:
        found = await grants.export_grant(conn, arc.p["rep"])
    assert found is not None and found["id"] == export["id"]


async def test_top_secret_archive_needs_the_general_manager(
    arc: Archives, client: Client
) -> None:
    req = await _request(client, arc.h["rep"], customer_id=arc.secret)
    assert req["approver_role"] == "general_manager"
    await _act(client, arc.h["mgr"], req["id"], "approve", 403)
    assert (await _act(client, arc.h["gm"], req["id"], "approve"))["active"] is True
    # Only the general manager or an archive clerk marks an archive top secret.
    r = await client.patch(f"/api/v1/customers/{arc.own}", json={"secrecy": "top_secret"},
                           headers=arc.h["mgr"])
    assert r.status_code == 403, r.text
    r = await client.patch(f"/api/v1/customers/{arc.own}", json={"secrecy": "top_secret"},
                           headers=arc.h["gm"])
    assert r.status_code == 200 and r.json()["secrecy"] == "top_secret"


async def test_view_grant_opens_reading_until_it_expires_by_the_node_clock(
    arc: Archives, client: Client, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"/api/v1/customers/{arc.own}"
    assert (await client.get(url, headers=arc.h["rep"])).status_code == 404
    req = await _request(client, arc.h["rep"], customer_id=arc.own, hours=1)
    await _act(client, arc.h["mgr"], req["id"], "approve")
    r = await client.get(url, headers=arc.h["rep"])
    assert r.status_code == 200 and r.json()["contacts"], r.text
    assert (await client.get(f"{url}/contacts", headers=arc.h["rep"])).status_code == 200
    listed = await client.get("/api/v1/customers", headers=arc.h["rep"])
    assert [c["id"] for c in listed.json()["items"]] == [arc.own]
    reads = TABLES["read_audit"]
    async with node.db.read() as conn:  # plaintext reads are logged as usual
        assert (await conn.execute(select(func.count()).select_from(reads).where(
            reads.c.user_id == arc.p["rep"].id, reads.c.customer_id == arc.own))).scalar()
    later = utcnow() + timedelta(hours=1, minutes=1)
    monkeypatch.setattr(grants, "utcnow", lambda: later)
    assert (await client.get(url, headers=arc.h["rep"])).status_code == 404
    assert (await client.get(f"{url}/contacts", headers=arc.h["rep"])).status_code == 404
    assert (await client.get(f"{API}/{req['id']}", headers=arc.h["rep"])).json()["active"] is False


async def test_grant_never_widens_writes(arc: Archives, client: Client) -> None:
    req = await _request(client, arc.h["rep"], customer_id=arc.own)
    await _act(client, arc.h["mgr"], req["id"], "approve")
    url = f"/api/v1/customers/{arc.own}"
    assert (await client.get(url, headers=arc.h["rep"])).status_code == 200
    r = await client.patch(url, json={"notes": "改一下"}, headers=arc.h["rep"])
    assert r.status_code == 404, r.text
    r = await client.post(f"{url}/contacts", json={"name": "新联系人"}, headers=arc.h["rep"])
    assert r.status_code == 404, r.text


async def test_declined_revoked_or_returned_grant_gives_nothing(
    arc: Archives, client: Client, node: Node
) -> None:
    url = f"/api/v1/customers/{arc.other}"
    declined = await _request(client, arc.h["rep"], customer_id=arc.other)
    assert (await _act(client, arc.h["gm"], declined["id"], "decline", note="无必要")
            )["decision_note"] == "无必要"
    assert (await client.get(url, headers=arc.h["rep"])).status_code == 404
    await _act(client, arc.h["rep"], declined["id"], "return", 409)
    revoked = await _request(client, arc.h["rep"], customer_id=arc.other)
    await _act(client, arc.h["gm"], revoked["id"], "approve")
    assert (await client.get(url, headers=arc.h["rep"])).status_code == 200
    await _act(client, arc.h["rep"], revoked["id"], "revoke", 403)  # an approver revokes
    assert (await _act(client, arc.h["gm"], revoked["id"], "revoke"))["active"] is False
    assert (await client.get(url, headers=arc.h["rep"])).status_code == 404
    lent = await _request(client, arc.h["rep"], kind="lend", customer_id=arc.other, copies=2)
    await _act(client, arc.h["gm"], lent["id"], "approve")
    await _act(client, arc.h["gm"], lent["id"], "return", 403)  # only the requester
    back = await _act(client, arc.h["rep"], lent["id"], "return")
    assert back["status"] == "returned" and back["returned_at"] and back["copies"] == 2
    assert (await client.get(url, headers=arc.h["rep"])).status_code == 404
    assert await _actions(node) == [
        "access_requested", "access_declined", "access_requested", "access_approved",
        "access_revoked", "access_requested", "access_approved", "access_returned"]


async def test_bad_access_request_is_refused_and_writes_nothing(
    arc: Archives, client: Client, node: Node
) -> None:
    rep = arc.h["rep"]
    await _request(client, rep, 422, customer_id=arc.own, purpose="")
    await _request(client, rep, 422, customer_id=arc.own, purpose="   ")
    await _request(client, rep, 422, customer_id=arc.own, hours=73)
    await _request(client, rep, 422, customer_id=arc.own, hours=0)
    await _request(client, rep, 422, customer_id=arc.own, kind="copy")
    await _request(client, rep, 422, customer_id=arc.own, owner="x")
    await _request(client, rep, 422, customer_id="00000000-0000-7000-8000-000000000000")
    await _request(client, rep, 422, department="无此部门", object_branch="S001")
    await _request(client, rep, 422, customer_id=arc.own, department="销售部")
    await _request(client, rep, 422)  # no object at all
    await _request(client, rep, 422, customer_id=arc.own, copies=2)  # copies: lending only
    await _request(client, arc.h["rep2"], 422, customer_id=arc.own)  # already theirs
    await _request(client, arc.h["mgr"], 422, department="销售部", object_branch="S001")
    r = await client.post(f"{API}/00000000-0000-7000-8000-000000000000/approve",
                          headers=arc.h["gm"])
    assert r.status_code == 404, r.text
    async with node.db.read() as conn:
        count = (await conn.execute(select(func.count()).select_from(
            TABLES["access_requests"]))).scalar()
    assert count == 0 and await _actions(node) == []


# --- a real HQ and branch node ----------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_grant_expires_offline_on_a_branch_by_its_own_clock(
    tmp_path: Path, node: Node, client: Client, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    b, up = await branch_node(tmp_path, node, "S001")
    try:
        users = await add_users(node, monkeypatch, [
            ("b.rep", "sales_rep", "S001", "销售部"), ("hq.gm", "general_manager", None, None)])
        cid = await customer(node, users["hq.gm"], "分店客户", "客服部")
        await sync(b, up, client)
        rep = await principal(b, "b.rep")
        with pytest.raises(NotFoundError):
            await customer_service.get_customer(b, rep, cid)
        req = await service.create_request(b, rep, {
            "kind": "view", "customer_id": cid, "purpose": "核对地址", "reason": "送货",
            "hours": 24})
        assert req["approver_role"] == "general_manager"
        await sync(b, up, client)
        approved = await service.decide(node, users["hq.gm"], req["id"], True)
        assert approved["active"]
        await sync(b, up, client)
        shown = await customer_service.get_customer(b, rep, cid)
        assert shown["id"] == cid and shown["contacts"]
        # The branch never syncs again; its clock passes the expiry.
        later = utcnow() + timedelta(hours=24, seconds=1)
        monkeypatch.setattr(grants, "utcnow", lambda: later)
        with pytest.raises(NotFoundError):
            await customer_service.get_customer(b, rep, cid)
        assert (await service.get_request(b, rep, req["id"]))["active"] is False
    finally:
        await b.close()


# --- the command line -------------------------------------------------------------------


async def _cli_setup(settings: Settings) -> str:
    n = await open_node(settings)
    try:
        await org_service.create_branch(n, None, {"code": "S001", "name": "上海店",
                                                  "region": None, "address": None})
        with pytest.MonkeyPatch.context() as mp:
            p = await add_users(n, mp, [("rep", "sales_rep", "S001", "销售部"),
                                        ("gm", "general_manager", None, None)])
        cid = await customer(n, p["gm"], "客户", "客服部")
        req = await service.create_request(n, p["rep"], {
            "kind": "lend", "customer_id": cid, "purpose": "合同核对", "reason": "审计"})
        return str(req["id"])
    finally:
        await n.close()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_cli_lists_pending_and_approves_a_request(settings: Settings, tmp_path: Path,
                                                 backend: str) -> None:
    from click.testing import CliRunner

    from server.cli import main

    rid = asyncio.run(_cli_setup(settings))
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "BRANCHLINE_PASSWORD": PASSWORD}
    data = str(settings.data_dir)

    def cli(*args: str, password: str = PASSWORD) -> Any:
        return CliRunner().invoke(main, ["access", *args, "--data", data],
                                  env={**env, "BRANCHLINE_PASSWORD": password})

    r = cli("list", "--pending", "--as", "gm")
    assert r.exit_code == 0 and rid in r.output and "lend" in r.output, r.output
    r = cli("approve", rid, "--as", "rep")
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
    assert "own request" in r.output
    r = cli("approve", rid, "--as", "gm", "--note", "同意")
    assert r.exit_code == 0 and "approved (active)" in r.output, r.output
    r = cli("return", rid, "--as", "rep")
    assert r.exit_code == 0 and "returned" in r.output, r.output
    r = cli("list", "--pending", "--as", "gm")
    assert r.exit_code == 0 and rid not in r.output
