"""Issue 7's "done when": a general manager, a branch manager and an auditor each do
their monthly work (domain.md §9-§10) — through the API, and through the CLI on the
same node. One month of a small chain: customers, a visit, purchases, a complaint
taken to its close, an access request; then each role's month-end."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from litestar.testing import AsyncTestClient

from schema import local_day, utcnow
from server.config import Settings
from server.node import Node
from server.services import org as org_service
from tests.conftest import PASSWORD
from tests.test_access import add_users

Client = AsyncTestClient[Any]
PHONE = "13812345678"
USERS = [  # username, role, branch, department
    ("gm", "general_manager", None, None),
    ("auditor", "auditor", None, None),
    ("mgr", "dept_manager", "S001", "销售部"),
    ("rep", "sales_rep", "S001", "销售部"),
    ("desk", "customer_service", "S001", "客服部"),
]


def _cli(settings: Settings, user: str, *args: str) -> Any:
    from server.cli import main

    env = {"BRANCHLINE_PASSWORD": PASSWORD,
           "XDG_CONFIG_HOME": str(settings.data_dir.parent / "cfg")}
    return CliRunner().invoke(main, [*args, "--data", str(settings.data_dir), "--as", user],
                              env=env)


async def _month(node: Node, client: Client, monkeypatch: pytest.MonkeyPatch
                 ) -> dict[str, Any]:
    """A month of work at S001, through the API as each user would do it."""
    await org_service.create_region(node, None, "EAST", "华东区")
    for code, name in (("S001", "上海店"), ("S002", "杭州店")):
        await org_service.create_branch(node, None, {"code": code, "name": name,
                                                     "region": "EAST", "address": None})
    for dept in ("销售部", "客服部"):
        await org_service.create_department(node, None, dept, "S001")
    p = await add_users(node, monkeypatch, USERS)
    h = {u: {"Authorization": "Bearer " + node.signer.issue(
        x.id, x.token_version, int(time.time()) + 3600)} for u, x in p.items()}

    async def ok(method: str, url: str, user: str, body: Any = None, status: int = 200
                 ) -> Any:
        r = await client.request(method, url, json=body, headers=h[user])
        assert r.status_code == status, f"{method} {url}: {r.text}"
        return r.json()

    mine = await ok("POST", "/api/v1/customers", "rep", {
        "name": "王小明", "source": "call", "mobile": PHONE, "consent_marketing": True},
        status=201)
    other = await ok("POST", "/api/v1/customers", "desk", {
        "name": "李华", "source": "walk_in", "mobile": "13987654321"}, status=201)
    await ok("POST", f"/api/v1/customers/{mine['id']}/purchases", "rep", {
        "purchased_at": utcnow().isoformat(), "amount_fen": 880_00,
        "items": [{"sku": "BX-1", "name": "冰箱", "qty": 1, "price_fen": 880_00}]},
        status=201)
    await ok("POST", f"/api/v1/customers/{mine['id']}/visits", "rep", {
        "content": "上门回访", "result": "满意"}, status=201)
    c = await ok("POST", "/api/v1/complaints", "desk", {
        "customer_id": other["id"], "complainant": "李华", "phone": "13987654321",
        "demand": "refund", "content": "空调不制冷", "channel": "phone"}, status=201)
    away = await ok("POST", "/api/v1/customers", "gm", {
        "name": "赵敏", "source": "call", "branch": "S002"}, status=201)
    await ok("POST", "/api/v1/complaints", "gm", {
        "customer_id": away["id"], "complainant": "赵敏", "phone": "13700001111",
        "demand": "refund", "content": "送货延误", "channel": "phone"}, status=201)
    return {"h": h, "p": p, "ok": ok, "mine": mine, "other": other, "complaint": c}


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_gm_branch_manager_and_auditor_do_their_monthly_work_by_api_and_cli(
        node: Node, client: Client, settings: Settings, backend: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    m = await _month(node, client, monkeypatch)
    ok = m["ok"]
    month = local_day(utcnow()).strftime("%Y-%m")

    # The branch manager: their branch's reports, and access to another department's
    # archive for a customer callback, approved by the general manager.
    for kind in ("complaints", "visits", "reps", "sla", "tickets"):
        report = await ok("GET", f"/api/v1/reports/{kind}?period={month}", "mgr")
        assert json.dumps(report).count("S002") == 0
    complaints = await ok("GET", f"/api/v1/reports/complaints?period={month}", "mgr")
    assert complaints["total"]["received"] == 1  # S002's complaint is not theirs
    hq_wide = await ok("GET", f"/api/v1/reports/complaints?period={month}", "gm")
    assert hq_wide["total"]["received"] == 2
    req = await ok("POST", "/api/v1/access-requests", "mgr", {
        "kind": "view", "customer_id": m["other"]["id"], "purpose": "投诉回访",
        "reason": "客服部人手不足", "hours": 24}, status=201)
    assert req["approver_role"] == "general_manager"

    # The general manager: approvals, reports issued, analytics, a consented export.
    pending = await ok("GET", "/api/v1/access-requests?to_approve=true", "gm")
    assert [r["id"] for r in pending["items"]] == [req["id"]]
    await ok("POST", f"/api/v1/access-requests/{req['id']}/approve", "gm", {"note": "同意"})
    seen = await ok("GET", f"/api/v1/customers/{m['other']['id']}", "mgr")
    assert seen["id"] == m["other"]["id"]
    issued = await ok("POST", "/api/v1/reports/issued", "gm",
                      {"kind": "complaints", "period": month}, status=201)
    assert issued["period"] == month
    rfm = await ok("GET", "/api/v1/analytics/rfm", "gm")
    assert rfm["customers"] == 1
    r = await client.get("/api/v1/exports/customers?format=csv&purpose=marketing",
                         headers=m["h"]["gm"])
    assert r.status_code == 200, r.text
    assert "王小明" in r.text and "李华" not in r.text  # only the customer who consented
    assert PHONE not in r.text  # no export grant: masked

    # The auditor: the chain is intact and the month's events are there, no phone.
    verify = await ok("GET", "/api/v1/audit/verify", "auditor")
    assert verify["nodes"] and all(n["intact"] for n in verify["nodes"])
    log = await ok("GET", "/api/v1/audit?limit=200", "auditor")
    actions = {e["action"] for e in log["items"]}
    assert {"access_requested", "access_approved", "view", "export",
            "report_issued"} <= actions
    assert PHONE not in json.dumps(log, ensure_ascii=False)

    # The same month-end from the terminal.
    run = asyncio.to_thread
    r = await run(_cli, settings, "mgr", "report", "complaints", "--month", month, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["total"]["received"] == 1
    r = await run(_cli, settings, "gm", "access", "list", "--pending")
    assert r.exit_code == 0, r.output
    r = await run(_cli, settings, "gm", "report", "issue", "--kind", "visits", "--month", month)
    assert r.exit_code == 0, r.output
    r = await run(_cli, settings, "gm", "analytics", "pyramid", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["customers"] == 3, r.output
    out = Path(settings.data_dir.parent / "customers.csv")
    r = await run(_cli, settings, "gm", "export", "customers", "--format", "csv",
                  "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "王小明" in out.read_text(encoding="utf-8-sig") and PHONE not in out.read_text(
        encoding="utf-8-sig")
    r = await run(_cli, settings, "auditor", "audit", "verify")
    assert r.exit_code == 0, r.output
    r = await run(_cli, settings, "auditor", "audit", "search", "--action", "export", "--json")
    assert r.exit_code == 0 and len(r.output.strip().splitlines()) == 2, r.output
    assert PHONE not in r.output
    r = await run(_cli, settings, "auditor", "analytics", "rfm")
    assert r.exit_code == 0, r.output  # analysts include the auditor (read-only figures)
    r = await run(_cli, settings, "rep", "audit", "search")
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
