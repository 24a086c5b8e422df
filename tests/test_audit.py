"""The audit log (sync/SPEC.md §Audit, domain.md §9): a hash chain per node, written by
logins, views, merges, erasures and key events, verified and searched by auditors, who
never see a customer's secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import delete, select, update

from crypto import hash_password
from schema import TABLES, chain_breaks
from server.config import Settings
from server.node import Node, open_node
from server.services import audit, audit_query, erasure, merges
from server.services import customers as customer_service
from server.services import users as user_service
from server.services.principal import Principal
from tests._nodes import branch_node, principal, sync
from tests.conftest import PASSWORD, add_user, login

Client = AsyncTestClient[Any]
API = "/api/v1/audit"
log = TABLES["audit_log"]
MOBILE = "13800001111"
SECRETS = (MOBILE, "+86" + MOBILE, "55550101")
USERS = [  # username, role, branch, department
    ("gm", "general_manager", None, None),
    ("mgr", "dept_manager", "S001", None),
    ("rep", "sales_rep", "S001", None),
    ("auditor", "auditor", None, None),
]
_HASH: list[str] = []


def headers(node: Node, p: Principal) -> dict[str, str]:
    """A bearer token for `p`, issued as a login would (without the slow password check)."""
    token = node.signer.issue(p.id, p.token_version, int(time.time()) + 3600)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def team(node: Node, org: None, monkeypatch: pytest.MonkeyPatch) -> dict[str, Principal]:
    """The users of USERS, with the test password hashed once per session."""
    if not _HASH:
        _HASH.append(hash_password(PASSWORD))
    monkeypatch.setattr(user_service, "hash_password", lambda _: _HASH[0])
    return {u: await add_user(node, u, role, branch, dept) for u, role, branch, dept in USERS}


async def _customer(node: Node, p: Principal, name: str, mobile: str | None = None,
                    owner: Principal | None = None) -> str:
    row = await customer_service.create_customer(node, p, {
        "name": name, "customer_type": "person", "source": "call", "branch": "S001",
        "mobile": mobile, "phone": "021-5555 0101" if mobile else None,
        "owner_id": owner.id if owner else None}, [])
    return str(row["id"])


async def _entries(node: Node) -> list[dict[str, Any]]:
    async with node.db.read() as conn:
        return [dict(r) for r in (await conn.execute(
            select(log).order_by(log.c.node_id, log.c.seq))).mappings()]


async def test_audit_entries_form_an_intact_hash_chain(node: Node) -> None:
    for n in range(3):
        await audit.log(node, None, "test", actor_name="system", detail={"n": n})
    async with node.db.read() as conn:
        rows = [dict(r) for r in (await conn.execute(
            select(log).where(log.c.node_id == node.node_id).order_by(log.c.seq))).mappings()]
    assert [r["action"] for r in rows][-3:] == ["test"] * 3
    assert chain_breaks(rows) == []
    rows[1]["detail"] = {"n": 99}
    assert any("altered" in b for b in chain_breaks(rows))
    del rows[1]
    assert any("missing" in b for b in chain_breaks(rows))


async def test_chain_stays_intact_after_logins_views_merge_and_erasure(
    client: Client, node: Node, team: dict[str, Principal]
) -> None:
    gm = await login(client, "gm")
    assert (await client.post("/api/v1/auth/login", json={
        "username": "gm", "password": "wrong-guess-1"})).status_code == 401
    a = await _customer(node, team["gm"], "审计客户甲", MOBILE)
    b = await _customer(node, team["gm"], "审计客户乙", "13900002222")
    r = await client.get(f"/api/v1/customers/{a}", headers=gm)
    assert r.json()["mobile"] == "+86" + MOBILE  # a real plaintext read, so a `view`
    await merges.merge_customers(node, team["gm"], a, b, "same_person")
    await erasure.erase_customer(node, a, reviewed_by="mgr", approved_by="gm",
                                 reason="retention expired", actor_id=team["gm"].id)
    rows = await _entries(node)
    actions = [r["action"] for r in rows]
    for action in ("user_created", "login", "login_failed", "view", "merge", "erasure"):
        assert action in actions, action
    view = next(r for r in rows if r["action"] == "view")
    assert view["customer_id"] == a and view["actor"] == "gm"
    assert view["detail"]["customers"] == 1 and "customers.mobile" in view["detail"]["fields"]
    erased = next(r for r in rows if r["action"] == "erasure")
    assert erased["actor"] == "gm" and erased["customer_id"] == a
    assert not any(s in json.dumps(rows, default=str) for s in SECRETS)
    chains = await audit_query.verify_log(node, team["auditor"])
    assert [(c["node_id"], c["intact"], c["entries"]) for c in chains] == [
        (node.node_id, True, len(rows))]


async def test_failed_login_is_recorded_without_the_password(
    client: Client, node: Node, team: dict[str, Principal]
) -> None:
    for username in ("GM", "nobody"):
        r = await client.post("/api/v1/auth/login", json={"username": username,
                                                          "password": "Guess-Pass-42"})
        assert r.status_code == 401
    failed = [r for r in await _entries(node) if r["action"] == "login_failed"]
    assert [(r["actor"], r["actor_id"], r["detail"]["reason"]) for r in failed] == [
        ("gm", team["gm"].id, "wrong_password"), ("nobody", None, "unknown_user")]
    assert failed[0]["detail"]["client"]
    assert "Guess-Pass-42" not in json.dumps(failed, default=str)


async def test_tampering_with_an_entry_or_deleting_one_is_detected(
    node: Node, team: dict[str, Principal]
) -> None:
    for n in range(4):
        await audit.log(node, team["gm"], "export", detail={"rows": n})
    exported = [r for r in await _entries(node) if r["action"] == "export"]
    # The attack: someone with the database edits an entry behind the application.
    async with node.db.admin() as conn:
        await conn.execute(update(log).where(log.c.id == exported[1]["id"])
                           .values(detail={"rows": 0}))
    [chain] = await audit_query.verify_log(node, team["auditor"])
    assert not chain["intact"]
    assert chain["breaks"] == [f"seq {exported[1]['seq']}: content does not match its hash "
                               "(altered)"]
    async with node.db.admin() as conn:
        await conn.execute(delete(log).where(log.c.id == exported[2]["id"]))
    [chain] = await audit_query.verify_log(node, team["auditor"])
    assert any("missing" in b for b in chain["breaks"])
    assert chain["head_seq"] == exported[3]["seq"]


async def test_auditor_never_sees_a_phone(client: Client, node: Node,
                                          team: dict[str, Principal]) -> None:
    cid = await _customer(node, team["gm"], "保密客户", MOBILE, owner=team["rep"])
    for viewer in ("gm", "rep"):
        r = await client.get(f"/api/v1/customers/{cid}", headers=headers(node, team[viewer]))
        assert r.status_code == 200
        assert r.json()["mobile"] == "+86" + MOBILE  # they do read it: that is audited
    await client.get("/api/v1/customers", headers=headers(node, team["gm"]))
    h = headers(node, team["auditor"])
    seen = []
    for path in (API, f"{API}/verify", "/api/v1/customers", f"/api/v1/customers/{cid}",
                 f"{API}?customer_id={cid}"):
        r = await client.get(path, headers=h)
        assert r.status_code == 200, (path, r.text)
        seen.append(r.text)
        assert not any(s in r.text for s in SECRETS), path
    views = json.loads(seen[-1])["items"]
    assert {v["actor"] for v in views if v["action"] == "view"} == {"gm", "rep"}


async def test_search_filters_and_pages_newest_first(
    client: Client, node: Node, team: dict[str, Principal]
) -> None:
    c1, c2 = await _customer(node, team["gm"], "甲"), await _customer(node, team["gm"], "乙")
    await audit.log(node, team["gm"], "export", customer_id=c1, detail={"rows": 1})
    await audit.log(node, team["rep"], "view", detail={"customers": 2,
                                                       "customer_ids": [c1, c2]})
    await audit.log(node, team["mgr"], "export", customer_id=c2, detail={"rows": 1})
    p = team["auditor"]

    async def ids(**filters: Any) -> list[str]:
        async with node.db.read() as conn:
            rows, _ = await audit_query.search(conn, p, filters, None, 100)
        return [(r["action"], r["actor"]) for r in rows]

    assert await ids(action="export") == [("export", "mgr"), ("export", "gm")]
    assert await ids(customer_id=c1) == [("view", "rep"), ("export", "gm")]
    assert await ids(actor="REP") == [("view", "rep")]
    assert await ids(actor_id=team["mgr"].id) == [("export", "mgr")]
    assert await ids(branch="S001") == []  # HQ's entries carry no branch
    everything = await ids()
    h = headers(node, p)
    seen: list[str] = []
    cursor = None
    while True:
        r = await client.get(API, params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                             headers=h)
        assert r.status_code == 200, r.text
        seen += [i["id"] for i in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(everything) == len(set(seen)) and seen == sorted(seen)[::-1]
    later = await client.get(API, params={"from": "2999-01-01T00:00:00Z"}, headers=h)
    assert later.json()["items"] == []
    bad = await client.get(API, params={"cursor": "nonsense"}, headers=h)
    assert bad.status_code in (400, 422)


async def test_only_auditors_general_managers_and_admins_read_the_log(
    client: Client, node: Node, team: dict[str, Principal]
) -> None:
    for who in ("rep", "mgr"):
        for path in (API, f"{API}/verify"):
            r = await client.get(path, headers=headers(node, team[who]))
            assert r.status_code == 403, (who, path)
    for who in ("auditor", "gm"):
        assert (await client.get(API, headers=headers(node, team[who]))).status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_branch_entries_sync_to_hq_and_verify_there(
    tmp_path: Path, node: Node, client: Client, team: dict[str, Principal], backend: str
) -> None:
    b, up = await branch_node(tmp_path, node, "S001")
    try:
        cid = await _customer(node, team["gm"], "分店客户", MOBILE, owner=team["rep"])
        local_gm = await add_user(node, "s1.gm", "general_manager", "S001")
        await sync(b, up, client)
        await user_service.login(b, user_service.LoginThrottle(5, 300), "rep", PASSWORD,
                                 "shop-pc")
        await customer_service.get_customer(b, await principal(b, "rep"), cid)
        await sync(b, up, client)
        chains = {c["node_id"]: c for c in await audit_query.verify_log(node, team["auditor"])}
        shop = chains[b.node_id]
        assert shop["branch"] == "S001" and shop["intact"] and shop["entries"] >= 2
        assert chains[node.node_id]["intact"]
        # A general manager bound to the branch sees that branch's entries only.
        async with node.db.read() as conn:
            rows, _ = await audit_query.search(conn, local_gm, {}, None, 100)
        assert {r["action"] for r in rows} == {"login", "view"}
        assert {r["node_id"] for r in rows} == {b.node_id}
        assert [c["node_id"] for c in await audit_query.verify_log(node, local_gm)] == [
            b.node_id]
    finally:
        await b.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_cli_verify_exits_1_with_one_line_per_break(
    tmp_path: Path, settings: Settings, team: dict[str, Principal]
) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHLINE_")}
        env.update(XDG_CONFIG_HOME=str(tmp_path / "cfg"), BRANCHLINE_PASSWORD=PASSWORD)
        return subprocess.run([str(Path(sys.executable).parent / "branchline"), "audit",
                               *args, "--data", str(settings.data_dir), "--as", "auditor"],
                              env=env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    found = cli("search", "--action", "login", "--json")
    assert found.returncode == 0, found.stderr
    assert [json.loads(line)["actor"] for line in found.stdout.splitlines()] == ["auditor"]
    n = await open_node(settings)
    try:
        first = (await _entries(n))[0]
        async with n.db.admin() as conn:
            await conn.execute(update(log).where(log.c.id == first["id"]).values(actor="x"))
    finally:
        await n.close()
    broken = cli("verify")
    assert broken.returncode == 1
    assert "BROKEN (1 breaks)" in broken.stdout
    assert broken.stderr.splitlines() == [
        f"{first['node_id']} (HQ): seq 1: content does not match its hash (altered)"]
