"""Retention, destruction and consent (domain.md §9): one test per rule, on both
backends — retention end, review then approval then crypto-erasure, the retention
basis, consent, the subject access export, the CLI, bad input."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from crypto import hash_password
from schema import TABLES, utcnow
from server.config import Settings
from server.node import Node, open_node
from server.services import complaints as complaint_service
from server.services import customers as customer_service
from server.services import users as user_service
from server.services import visits as visit_service
from server.services.principal import Principal
from server.services.retention import consent_clause
from tests.conftest import PASSWORD, add_user

Client = AsyncTestClient[Any]
MOBILE = "13812345678"
ID_NUMBER = "11010519491231002X"
SALES = "销售部"
USERS = [  # username, role, department
    ("clerk", "archive_clerk", None),
    ("head", "dept_manager", SALES),
    ("other_head", "dept_manager", "客服部"),
    ("gm", "general_manager", None),
    ("rep", "sales_rep", SALES),
    ("auditor", "auditor", None),
]
_HASH: list[str] = []


@dataclass
class Org:
    """Users as principals and bearer headers, and one customer of the sales department
    whose relationship ended in 2010 (its retention ran out in 2020)."""

    p: dict[str, Principal]
    h: dict[str, dict[str, str]]
    customer: str


def _headers(node: Node, p: Principal) -> dict[str, str]:
    """A bearer token for `p`, issued as a login would (without the slow password check)."""
    token = node.signer.issue(p.id, p.token_version, int(time.time()) + 3600)
    return {"Authorization": f"Bearer {token}"}


async def _users(node: Node, monkeypatch: pytest.MonkeyPatch) -> dict[str, Principal]:
    if not _HASH:  # argon2 is slow by design: hash the test password once per session
        _HASH.append(hash_password(PASSWORD))
    monkeypatch.setattr(user_service, "hash_password", lambda _: _HASH[0])
    return {u: await add_user(node, u, role, None, dept) for u, role, dept in USERS}


async def _customer(node: Node, p: Principal, **extra: Any) -> str:
    row = await customer_service.create_customer(node, p, {
        "name": "王档", "customer_type": "person", "source": "call", "department": SALES,
        "mobile": MOBILE, "phone": "021-63211234", "id_number": ID_NUMBER, **extra}, [])
    return str(row["id"])


@pytest.fixture
async def org(node: Node, monkeypatch: pytest.MonkeyPatch) -> Org:
    p = await _users(node, monkeypatch)
    ended = datetime(2010, 3, 1, tzinfo=UTC)
    cid = await _customer(node, p["gm"], lifecycle_stage="lost")
    await customer_service.update_customer(node, p["gm"], cid, {"relationship_ended_at": ended})
    return Org(p, {u: _headers(node, q) for u, q in p.items()}, cid)


async def _count(node: Node, table: str, **where: Any) -> int:
    t = TABLES[table]
    async with node.db.read() as conn:
        query = select(func.count()).select_from(t).where(
            *(t.c[k] == v for k, v in where.items()))
        return int((await conn.execute(query)).scalar_one())


async def test_retention_ends_ten_years_after_the_relationship_ends(
        client: Client, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    p = await _users(node, monkeypatch)
    h = _headers(node, p["clerk"])
    r = await client.post("/api/v1/customers", headers=h, json={
        "name": "流失客户", "customer_type": "person", "source": "call",
        "lifecycle_stage": "lost"})
    assert r.status_code == 201, r.text
    c = r.json()  # lost without an end date: the relationship ends now
    ended = datetime.fromisoformat(c["relationship_ended_at"])
    assert abs(ended - utcnow()) < timedelta(minutes=1)
    assert datetime.fromisoformat(c["retention_until"]) == ended.replace(year=ended.year + 10)
    url = f"/api/v1/customers/{c['id']}"
    r = await client.patch(url, headers=h, json={"relationship_ended_at": "2012-02-29T10:00:00Z"})
    assert r.status_code == 200, r.text
    assert r.json()["retention_until"].startswith("2022-02-28T10:00:00")
    r = await client.get("/api/v1/retention/due", headers=h)
    assert r.status_code == 200 and [i["id"] for i in r.json()["items"]] == [c["id"]]
    assert r.json()["items"][0]["destruction_status"] is None
    r = await client.get("/api/v1/retention/due", headers=_headers(node, p["rep"]))
    assert r.status_code == 403
    r = await client.get("/api/v1/retention/due", headers=_headers(node, p["other_head"]))
    assert r.status_code == 200 and r.json()["items"] == []  # outside their department
    r = await client.patch(url, headers=h, json={"relationship_ended_at": None})
    assert r.json()["relationship_ended_at"] is None and r.json()["retention_until"] is None
    r = await client.get("/api/v1/retention/due", headers=h)
    assert r.json()["items"] == []


async def test_destruction_needs_the_department_heads_review_then_the_general_managers_approval(
        client: Client, node: Node, org: Org) -> None:
    h, cid = org.h, org.customer
    body = {"customer_id": cid, "basis": "customer_request", "reason": "客户要求删除个人信息"}
    r = await client.post("/api/v1/destruction-requests", headers=h["rep"], json=body)
    assert r.status_code == 403
    r = await client.post("/api/v1/destruction-requests", headers=h["clerk"], json=body)
    assert r.status_code == 201, r.text
    req = r.json()
    assert req["status"] == "requested"
    r = await client.post("/api/v1/destruction-requests", headers=h["clerk"], json=body)
    assert r.status_code == 409  # one open request per archive
    url = f"/api/v1/destruction-requests/{req['id']}"
    r = await client.post(f"{url}/approve", headers=h["gm"], json={"approve": True})
    assert r.status_code == 409 and "not reviewed" in r.text
    for who in ("gm", "clerk"):
        r = await client.post(f"{url}/review", headers=h[who], json={"approve": True})
        assert r.status_code == 403
    r = await client.post(f"{url}/review", headers=h["other_head"], json={"approve": True})
    assert r.status_code in (403, 404)  # another department's head: not theirs to review
    r = await client.post(f"{url}/review", headers=h["head"],
                          json={"approve": True, "note": "已核对"})
    assert r.status_code == 200 and r.json()["status"] == "reviewed", r.text
    r = await client.post(f"{url}/approve", headers=h["clerk"], json={"approve": True})
    assert r.status_code == 403
    r = await client.post(f"{url}/approve", headers=h["gm"], json={"approve": True})
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "erased" and done["record_id"]
    # Crypto-erased: the general manager, who reads every class, sees nothing left.
    r = await client.get(f"/api/v1/customers/{cid}", headers=h["gm"])
    assert r.json()["phone"] is None and r.json()["mobile"] is None
    assert r.json()["id_number"] is None
    assert await _count(node, "destruction_records", id=done["record_id"], customer_id=cid) == 1
    assert await _count(node, "data_keys", customer_id=cid) == 0
    async with node.db.read() as conn:
        actions = set((await conn.execute(select(TABLES["audit_log"].c.action).where(
            TABLES["audit_log"].c.customer_id == cid))).scalars())
    assert {"destruction_requested", "destruction_reviewed", "destruction_approved",
            "erasure"} <= actions
    r = await client.get("/api/v1/destruction-requests", headers=h["auditor"],
                         params={"status": "erased", "customer_id": cid})
    assert [i["id"] for i in r.json()["items"]] == [req["id"]]
    r = await client.post(f"{url}/approve", headers=h["gm"], json={"approve": True})
    assert r.status_code == 409  # erased is final


async def test_retention_expired_basis_is_refused_before_the_retention_end(
        client: Client, node: Node, org: Org) -> None:
    h = org.h
    recent = await _customer(node, org.p["gm"], mobile="13812345679", lifecycle_stage="lost")
    current = await _customer(node, org.p["gm"], mobile="13812345670")
    for cid in (recent, current):
        r = await client.post("/api/v1/destruction-requests", headers=h["head"], json={
            "customer_id": cid, "basis": "retention_expired", "reason": "期满"})
        assert r.status_code == 409 and "retention" in r.text
    assert await _count(node, "destruction_requests") == 0
    r = await client.post("/api/v1/destruction-requests", headers=h["head"], json={
        "customer_id": org.customer, "basis": "retention_expired", "reason": "保管期满"})
    assert r.status_code == 201, r.text
    # A decline at the review ends the request; the archive stays as it was.
    url = f"/api/v1/destruction-requests/{r.json()['id']}"
    r = await client.post(f"{url}/review", headers=h["head"], json={"approve": False})
    assert r.status_code == 200 and r.json()["status"] == "declined"
    r = await client.post(f"{url}/approve", headers=h["gm"], json={"approve": True})
    assert r.status_code == 409
    r = await client.get(f"/api/v1/customers/{org.customer}", headers=h["gm"])
    assert r.json()["mobile"] == f"+86{MOBILE}"


async def test_consent_changes_are_stamped_and_consent_clause_filters(
        client: Client, node: Node, org: Org) -> None:
    h = org.h["clerk"]
    r = await client.post("/api/v1/customers", headers=h, json={
        "name": "愿意营销", "customer_type": "person", "source": "call",
        "consent_marketing": True})
    agreed = r.json()
    assert agreed["consent_at"] is not None
    url = f"/api/v1/customers/{org.customer}"
    assert (await client.get(url, headers=h)).json()["consent_at"] is None
    r = await client.patch(url, headers=h, json={"consent_sharing": True})
    stamped = r.json()["consent_at"]
    assert stamped is not None and r.json()["consent_sharing"] is True
    r = await client.patch(url, headers=h, json={"consent_sharing": True, "notes": "x"})
    assert r.json()["consent_at"] == stamped  # not a change of consent
    r = await client.get(f"{url}/history", headers=h)
    assert "consent_sharing" in {e["column_name"] for e in r.json()["items"]}
    customers = TABLES["customers"]
    async with node.db.read() as conn:
        def ids(purpose: str) -> Any:
            return conn.execute(select(customers.c.id).where(consent_clause(purpose)))
        assert set((await ids("marketing")).scalars()) == {agreed["id"]}
        assert set((await ids("sharing")).scalars()) == {org.customer}
        assert set((await ids("internal")).scalars()) == {agreed["id"], org.customer}
    with pytest.raises(Exception, match="purpose"):
        consent_clause("resale")


async def test_subject_export_holds_the_customers_records_and_masks_unread_classes(
        client: Client, node: Node, org: Org) -> None:
    p, cid = org.p, org.customer
    await visit_service.record_visit(node, p["head"], cid, {"kind": "visit", "content": "回访"})
    await complaint_service.create_complaint(node, p["head"], {
        "customer_id": cid, "complainant": "王档", "phone": "021-63211234",
        "demand": "refund", "content": "质量问题", "channel": "phone"})
    url = f"/api/v1/customers/{cid}/subject-export"
    r = await client.get(url, headers=org.h["gm"])
    assert r.status_code == 200, r.text
    doc = r.json()
    assert len(doc["visits"]) == 1 and len(doc["complaints"]) == 1
    assert doc["archive"]["id_number"] == ID_NUMBER
    assert doc["complaints"][0]["phone"] == "+862163211234"
    assert doc["retention"]["retention_until"].startswith("2020-03-01")
    assert {"relationship_ended_at", "retention_until"} <= {
        e["column_name"] for e in doc["field_history"]}
    assert doc["consents"] == {"marketing": False, "sharing": False, "consent_at": None}
    # A department manager reads confidential fields but not secret ones.
    doc = (await client.get(url, headers=org.h["head"])).json()
    assert doc["archive"]["mobile"] == f"+86{MOBILE}"
    assert doc["archive"]["id_number"] not in (None, ID_NUMBER)
    assert ID_NUMBER not in json.dumps(doc)
    assert (await client.get(url, headers=org.h["auditor"])).status_code == 403
    assert (await client.get(url, headers=org.h["other_head"])).status_code == 404
    assert await _count(node, "audit_log", action="subject_export", customer_id=cid) == 2


async def test_bad_destruction_input_is_refused_and_writes_nothing(
        client: Client, node: Node, org: Org) -> None:
    h = org.h["clerk"]
    cid = org.customer
    before = await _count(node, "audit_log")
    for body in ({"customer_id": cid, "basis": "whim", "reason": "x"},
                 {"customer_id": cid, "basis": "customer_request", "reason": ""},
                 {"customer_id": cid, "basis": "customer_request"},
                 {"customer_id": "nope", "basis": "customer_request", "reason": "x"},
                 {"customer_id": cid, "basis": "customer_request", "reason": "x", "x": 1},
                 {"customer_id": cid, "basis": "customer_request", "reason": "   "}):
        r = await client.post("/api/v1/destruction-requests", headers=h, json=body)
        assert 400 <= r.status_code < 500 and r.status_code != 404, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.post("/api/v1/destruction-requests", headers=h, json={
        "customer_id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "basis": "customer_request",
        "reason": "x"})
    assert r.status_code == 404
    missing = "/api/v1/destruction-requests/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
    r = await client.post(f"{missing}/review", headers=org.h["head"], json={"approve": True})
    assert r.status_code == 404
    r = await client.post(f"{missing}/review", headers=org.h["head"], json={"approve": "yes"})
    assert r.status_code in (400, 422)
    r = await client.get("/api/v1/destruction-requests", headers=h,
                         params={"status": "gone"})
    assert r.status_code in (400, 422)
    r = await client.patch(f"/api/v1/customers/{cid}", headers=h,
                           json={"relationship_ended_at": "2015-01-01T00:00:00"})
    assert r.status_code == 422 and "relationship_ended_at" in r.text
    assert await _count(node, "destruction_requests") == 0
    assert await _count(node, "audit_log") == before
    r = await client.get(f"/api/v1/customers/{cid}", headers=h)
    assert r.json()["retention_until"].startswith("2020-03-01")


async def test_retention_cli_requests_reviews_approves_and_exports(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.cli import main

    node = await open_node(settings)
    try:
        p = await _users(node, monkeypatch)
        ended = datetime(2010, 3, 1, tzinfo=UTC)
        cid = await _customer(node, p["gm"], relationship_ended_at=ended)
        fresh = await _customer(node, p["gm"], mobile="13812345679")
    finally:
        await node.close()
    data = str(settings.data_dir)

    async def cli(user: str, *args: str) -> Any:
        runner = CliRunner()
        return await asyncio.to_thread(runner.invoke, main, [*args, "--data", data, "--as", user],
                                       env={"BRANCHLINE_PASSWORD": PASSWORD})

    r = await cli("clerk", "retention", "due")
    assert r.exit_code == 0 and cid in r.output and fresh not in r.output, r.output
    r = await cli("clerk", "retention", "request", "--customer", fresh, "--basis",
                  "retention_expired", "--reason", "期满")
    assert r.exit_code == 1 and "retention has not run out" in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = await cli("clerk", "retention", "request", "--customer", cid, "--basis",
                  "retention_expired", "--reason", "保管期满")
    assert r.exit_code == 0 and "requested" in r.output, r.output
    request_id = r.output.split()[0]
    r = await cli("gm", "retention", "approve", request_id)
    assert r.exit_code == 1 and "not reviewed" in r.output
    r = await cli("head", "retention", "review", request_id, "--note", "同意")
    assert r.exit_code == 0 and "reviewed" in r.output, r.output
    r = await cli("gm", "retention", "approve", request_id)
    assert r.exit_code == 0 and "erased" in r.output and "record" in r.output, r.output
    r = await cli("clerk", "retention", "list", "--status", "erased")
    assert r.exit_code == 0 and request_id in r.output
    out = tmp_path / "export.json"
    r = await cli("clerk", "customer", "subject-export", "--customer", cid, "--out", str(out))
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["customer_id"] == cid and doc["archive"]["mobile"] is None
    assert out.stat().st_mode & 0o077 == 0
