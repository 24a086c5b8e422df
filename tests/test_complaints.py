"""Complaints (客户投诉, domain.md §6): one test per rule, on both backends; and the
offline scenarios across a real HQ and branch node."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from crypto import hash_password, is_token
from schema import TABLES, local_day, sync_cells, utcnow
from server.node import Node
from server.services import complaints as service
from server.services import customers as customer_service
from server.services import org as org_service
from server.services import users as user_service
from server.services.principal import Principal
from tests._nodes import branch_node, principal, sync
from tests.conftest import PASSWORD, add_user, login

Client = AsyncTestClient[Any]
API = "/api/v1/complaints"
USERS = [  # username, role, branch, department
    ("svc", "customer_service", "S001", "客服部"),
    ("handler", "complaint_handler", "S001", "客服部"),
    ("mgr", "dept_manager", "S001", None),
    ("rep", "sales_rep", "S001", "销售部"),
    ("tech", "technician", "S001", "维修部"),
    ("svc2", "customer_service", "S002", "客服部"),
    ("director", "sales_director", None, None),
    ("gm", "general_manager", None, None),
    ("auditor", "auditor", None, None),
]


@dataclass
class Desk:
    """Users (as headers and principals) and customers of S001 and S002."""

    h: dict[str, dict[str, str]]
    p: dict[str, Principal]
    c1: str
    c2: str


async def customer(node: Node, p: Principal, name: str, branch: str,
                    owner: Principal | None = None) -> str:
    row = await customer_service.create_customer(node, p, {
        "name": name, "customer_type": "person", "source": "call", "branch": branch,
        "owner_id": owner.id if owner else None,
        "department": owner.department if owner else None}, [])
    return str(row["id"])


_HASH: list[str] = []


def headers(node: Node, p: Principal) -> dict[str, str]:
    """A bearer token for `p`, issued as a login would (without the slow password check)."""
    token = node.signer.issue(p.id, p.token_version, int(time.time()) + 3600)
    return {"Authorization": f"Bearer {token}"}


async def add_users(node: Node, monkeypatch: pytest.MonkeyPatch,
                    specs: list[tuple[str, str, str | None, str | None]]
                    ) -> dict[str, Principal]:
    """Users with the test password, hashed once per session (argon2 is slow by design)."""
    if not _HASH:
        _HASH.append(hash_password(PASSWORD))
    monkeypatch.setattr(user_service, "hash_password", lambda _: _HASH[0])
    return {u: await add_user(node, u, role, branch, dept) for u, role, branch, dept in specs}


@pytest.fixture
async def desk(node: Node, client: Client, org: None, monkeypatch: pytest.MonkeyPatch) -> Desk:
    for branch in ("S001", "S002"):
        for dept in ("客服部", "销售部", "维修部"):
            await org_service.create_department(node, None, dept, branch)
    p = await add_users(node, monkeypatch, USERS)
    h = {u: headers(node, principal) for u, principal in p.items()}
    return Desk(h, p, await customer(node, p["director"], "投诉客户甲", "S001", p["rep"]),
                await customer(node, p["director"], "投诉客户乙", "S002"))


def _body(customer_id: str, **extra: Any) -> dict[str, Any]:
    return {"customer_id": customer_id, "complainant": "张先生", "phone": "138 0000 1111",
            "demand": "refund", "content": "买的冰箱不制冷", "channel": "phone", **extra}


async def _create(client: Client, headers: dict[str, str], customer_id: str, **extra: Any
                  ) -> dict[str, Any]:
    r = await client.post(API, json=_body(customer_id, **extra), headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _iso(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


async def _act(client: Client, headers: dict[str, str], cid: str, action: str,
               body: dict[str, Any] | None = None, status: int = 200) -> dict[str, Any]:
    r = await client.post(f"{API}/{cid}/{action}", json=body, headers=headers)
    assert r.status_code == status, r.text
    return dict(r.json())


REPORT = {"cause": "运输途中压缩机受损", "course": "顾客来电, 上门检查", "responsible": "物流部",
          "conclusion": "产品质量问题", "countermeasures": "更换新机",
          "prevention": "加强出库检验"}


async def _to(client: Client, d: Desk, cid: str, state: str) -> dict[str, Any]:
    """Take complaint `cid` through the flow until `state`."""
    steps: list[tuple[str, str, dict[str, Any] | None]] = [
        ("accepted", "accept", None),
        ("assigned", "assign", {"department": "客服部", "handler_id": d.p["handler"].id}),
        ("investigated", "investigate", REPORT),
        ("reviewed", "review", {"note": "同意处理意见"}),
        ("replied", "reply", {"reply": "为您更换新机", "channel": "written"}),
        ("closed", "close", None),
        ("return_visited", "return-visit", {"satisfaction": 4, "note": "顾客满意"}),
    ]
    row: dict[str, Any] = {}
    for reached, action, body in steps:
        who = "mgr" if action == "review" else "handler"
        row = await _act(client, d.h[who], cid, action, body)
        assert row["status"] == reached
        if reached == state:
            break
    return row


async def test_complaint_deadline_runs_from_receipt_and_phone_is_sealed(
    client: Client, node: Node, desk: Desk
) -> None:
    received = utcnow() - timedelta(days=2)
    body = await _create(client, desk.h["handler"], desk.c1, received_at=_iso(received))
    assert body["number"].startswith("TS-S001-") and body["branch"] == "S001"
    assert body["status"] == "received" and body["major"] is False
    assert _at(body["received_at"]) == received
    assert _at(body["deadline_at"]) == received + timedelta(days=7)
    assert body["phone"] == "+8613800001111"  # a complaint handler reads confidential
    assert (body["overdue"], body["hq_overdue"]) == (False, False)
    complaints = TABLES["complaints"]
    async with node.db.read() as conn:
        stored = (await conn.execute(select(complaints.c.phone, complaints.c.phone_mask)
                                     .where(complaints.c.id == body["id"]))).one()
    assert is_token(stored.phone) and stored.phone_mask == "****1111"
    r = await client.get(f"{API}/{body['id']}", headers=desk.h["auditor"])
    assert r.status_code == 200 and r.json()["phone"] == "****1111"


async def test_received_at_may_be_earlier_but_not_in_the_future(
    client: Client, desk: Desk
) -> None:
    late = utcnow() + timedelta(hours=1)
    r = await client.post(API, json=_body(desk.c1, received_at=_iso(late)),
                          headers=desk.h["handler"])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "received_at"
    skew = await _create(client, desk.h["handler"], desk.c1,
                         received_at=_iso(utcnow() + timedelta(minutes=2)))
    assert skew["status"] == "received"
    r = await client.post(API, json=_body(desk.c1, received_at="2026-01-01T08:00:00"),
                          headers=desk.h["handler"])
    assert r.status_code in (400, 422)  # an instant needs its offset


async def test_complaint_flow_runs_in_order_to_the_return_visit(
    client: Client, desk: Desk
) -> None:
    c = await _create(client, desk.h["svc"], desk.c1)
    row = await _to(client, desk, c["id"], "return_visited")
    assert row["department"] == "客服部" and row["handler_id"] == desk.p["handler"].id
    assert row["cause"] == REPORT["cause"] and row["prevention"] == REPORT["prevention"]
    assert row["reviewed_by"] == desk.p["mgr"].id and row["review_note"] == "同意处理意见"
    assert row["reply_channel"] == "written" and row["replied_at"] is not None
    assert row["closed_at"] is not None and row["satisfaction"] == 4
    assert row["return_visit_note"] == "顾客满意"
    assert row["overdue"] is False
    r = await client.get(f"/api/v1/customers/{desk.c1}/visits", headers=desk.h["director"])
    visits = [v for v in r.json()["items"] if v["related_id"] == c["id"]]
    assert [(v["kind"], v["satisfaction"]) for v in visits] == [("return_visit", 4)]
    r = await client.get(f"/api/v1/customers/{desk.c1}/history", headers=desk.h["director"])
    assert r.status_code == 200  # the customer's own history is untouched by complaints


async def test_flow_step_out_of_order_is_a_409_problem(client: Client, desk: Desk) -> None:
    c = await _create(client, desk.h["handler"], desk.c1)
    r = await client.post(f"{API}/{c['id']}/close", headers=desk.h["handler"])
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "received" in r.json()["detail"]
    await _act(client, desk.h["handler"], c["id"], "investigate", REPORT, status=409)
    await _to(client, desk, c["id"], "replied")
    await _act(client, desk.h["handler"], c["id"], "accept", status=409)
    await _act(client, desk.h["handler"], c["id"], "return-visit",
               {"satisfaction": 5}, status=409)  # not closed yet
    assert (await _act(client, desk.h["handler"], c["id"], "close"))["status"] == "closed"


async def test_flow_roles_are_enforced(client: Client, desk: Desk) -> None:
    r = await client.post(API, json=_body(desk.c1), headers=desk.h["tech"])
    assert r.status_code == 403  # a technician does not record complaints
    c = await _create(client, desk.h["rep"], desk.c1)  # a rep logs one in the field
    await _act(client, desk.h["rep"], c["id"], "accept", status=403)
    await _to(client, desk, c["id"], "investigated")
    await _act(client, desk.h["handler"], c["id"], "review", {"note": "可以"}, status=403)
    await _act(client, desk.h["mgr"], c["id"], "review", {"note": "可以"})
    await _act(client, desk.h["mgr"], c["id"], "reopen", status=409)  # not finished


async def test_assigned_handler_may_file_the_report_whatever_their_role(
    client: Client, desk: Desk
) -> None:
    c = await _create(client, desk.h["handler"], desk.c1)
    await _act(client, desk.h["handler"], c["id"], "accept")
    await _act(client, desk.h["handler"], c["id"], "assign",
               {"department": "销售部", "handler_id": desk.p["rep"].id})
    row = await _act(client, desk.h["rep"], c["id"], "investigate", REPORT)
    assert row["status"] == "investigated"
    r = await client.post(f"{API}/{c['id']}/assign", headers=desk.h["handler"],
                          json={"department": "不存在部", "handler_id": desk.p["rep"].id})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "department"


async def test_decline_needs_a_reason_and_reopening_starts_a_new_cycle(
    client: Client, node: Node, desk: Desk
) -> None:
    c = await _create(client, desk.h["handler"], desk.c1)
    r = await client.post(f"{API}/{c['id']}/decline", json={}, headers=desk.h["handler"])
    assert r.status_code in (400, 422)
    row = await _act(client, desk.h["handler"], c["id"], "decline", {"reason": "非本店商品"})
    assert row["status"] == "declined" and row["decline_reason"] == "非本店商品"
    await _act(client, desk.h["handler"], c["id"], "accept", status=409)
    await _act(client, desk.h["handler"], c["id"], "reopen", status=403)  # managers only
    row = await _act(client, desk.h["mgr"], c["id"], "reopen")
    assert row["status"] == "received"
    await _to(client, desk, c["id"], "closed")
    row = await _act(client, desk.h["mgr"], c["id"], "reopen")
    assert row["status"] == "received" and row["closed_at"] is None
    async with node.db.read() as conn:
        rank = (await conn.execute(select(sync_cells.c.rank).where(
            sync_cells.c.row_id == c["id"], sync_cells.c.col == "status"))).scalar_one()
    assert rank >> 8 == 2  # the third cycle of the flow


async def test_complaint_of_a_customer_not_visible_is_404(client: Client, desk: Desk) -> None:
    r = await client.post(API, json=_body(desk.c2), headers=desk.h["handler"])
    assert r.status_code == 404
    c = await _create(client, desk.h["svc2"], desk.c2)
    assert c["branch"] == "S002"
    r = await client.get(f"{API}/{c['id']}", headers=desk.h["handler"])
    assert r.status_code == 404
    await _act(client, desk.h["handler"], c["id"], "accept", status=404)
    r = await client.get(API, headers=desk.h["handler"])
    assert c["id"] not in {i["id"] for i in r.json()["items"]}


async def test_major_complaint_hq_deadline_is_24_hours_after_receipt(
    client: Client, desk: Desk
) -> None:
    received = utcnow() - timedelta(hours=3)
    c = await _create(client, desk.h["handler"], desk.c1, major=True,
                      received_at=_iso(received))
    assert c["major"] is True and c["escalated_at"] is not None
    assert _at(c["hq_deadline_at"]) == received + timedelta(hours=24)
    assert c["hq_overdue"] is False
    old = await _create(client, desk.h["handler"], desk.c1,
                        received_at=_iso(utcnow() - timedelta(hours=30)))
    row = await _act(client, desk.h["handler"], old["id"], "escalate", {"reason": "媒体曝光"})
    assert row["major"] is True and row["hq_overdue"] is True  # late at once
    assert _at(row["hq_deadline_at"]) == _at(old["received_at"]) + timedelta(hours=24)
    await _act(client, desk.h["handler"], old["id"], "escalate", {"reason": "再次"},
               status=409)
    r = await client.get(API, params={"major": "true"}, headers=desk.h["gm"])
    assert {i["id"] for i in r.json()["items"]} == {c["id"], old["id"]}
    r = await client.get(API, params={"hq_overdue": "true"}, headers=desk.h["gm"])
    assert [i["id"] for i in r.json()["items"]] == [old["id"]]


async def test_overdue_is_computed_from_the_clock_at_read_time(
    client: Client, desk: Desk
) -> None:
    late = await _create(client, desk.h["handler"], desk.c1,
                         received_at=_iso(utcnow() - timedelta(days=8)))
    fresh = await _create(client, desk.h["handler"], desk.c1)
    done = await _create(client, desk.h["handler"], desk.c1,
                         received_at=_iso(utcnow() - timedelta(days=9)))
    await _to(client, desk, done["id"], "closed")
    assert late["overdue"] is True and fresh["overdue"] is False
    r = await client.get(API, params={"overdue": "true"}, headers=desk.h["handler"])
    assert [i["id"] for i in r.json()["items"]] == [late["id"]]
    r = await client.get(API, params={"overdue": "false"}, headers=desk.h["handler"])
    assert {i["id"] for i in r.json()["items"]} == {fresh["id"], done["id"]}
    assert all(not i["overdue"] for i in r.json()["items"])


async def test_list_filters_by_status_branch_customer_and_pages(
    client: Client, desk: Desk
) -> None:
    a = await _create(client, desk.h["handler"], desk.c1, demand="exchange")
    b = await _create(client, desk.h["handler"], desk.c1)
    await _act(client, desk.h["handler"], b["id"], "accept")
    other = await _create(client, desk.h["svc2"], desk.c2)
    gm = desk.h["gm"]
    r = await client.get(API, params={"status": "accepted"}, headers=gm)
    assert [i["id"] for i in r.json()["items"]] == [b["id"]]
    r = await client.get(API, params={"branch": "S002"}, headers=gm)
    assert [i["id"] for i in r.json()["items"]] == [other["id"]]
    r = await client.get(API, params={"customer_id": desk.c1}, headers=gm)
    assert {i["id"] for i in r.json()["items"]} == {a["id"], b["id"]}
    r = await client.get(API, params={"demand": "exchange"}, headers=gm)
    assert [i["id"] for i in r.json()["items"]] == [a["id"]]
    r = await client.get(API, params={"limit": 2}, headers=gm)
    first = r.json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    r = await client.get(API, params={"limit": 2, "cursor": first["next_cursor"]}, headers=gm)
    assert [i["id"] for i in r.json()["items"]] == [a["id"]] and r.json()["next_cursor"] is None


def test_compensation_approval_matrix_names_a_role_for_every_amount() -> None:
    assert "dept_manager" in service.compensation_approvers(50_000)
    assert "dept_manager" not in service.compensation_approvers(50_001)
    assert "sales_director" in service.compensation_approvers(500_000)
    assert service.compensation_approvers(500_001) == frozenset({"general_manager"})
    assert all("general_manager" in roles for _, roles in service.COMPENSATION_MATRIX)


@pytest.mark.parametrize(("amount", "junior", "approver"), [
    (50_000, "handler", "mgr"),          # up to 500 yuan: a department manager
    (500_000, "mgr", "director"),        # up to 5,000 yuan: the sales director
    (500_001, "director", "gm"),         # above: the general manager
])
async def test_compensation_approval_by_amount_refuses_a_too_junior_approver(
    client: Client, desk: Desk, amount: int, junior: str, approver: str
) -> None:
    c = await _create(client, desk.h["handler"], desk.c1, demand="compensation")
    await _act(client, desk.h["handler"], c["id"], "compensation", {"amount_fen": 100},
               status=409)  # not accepted yet
    await _act(client, desk.h["handler"], c["id"], "accept")
    row = await _act(client, desk.h["handler"], c["id"], "compensation",
                     {"amount_fen": amount})
    assert (row["compensation_fen"], row["compensation_status"]) == (amount, "pending")
    await _act(client, desk.h["handler"], c["id"], "compensation", {"amount_fen": 1},
               status=409)  # one pending request at a time
    r = await client.post(f"{API}/{c['id']}/compensation/approve", headers=desk.h[junior])
    assert r.status_code == 403 and "needs approval by" in r.json()["detail"]
    row = await _act(client, desk.h[approver], c["id"], "compensation/reject")
    assert row["compensation_status"] == "rejected"
    await _act(client, desk.h[approver], c["id"], "compensation/approve", status=409)
    await _act(client, desk.h["handler"], c["id"], "compensation", {"amount_fen": amount})
    row = await _act(client, desk.h[approver], c["id"], "compensation/approve")
    assert row["compensation_status"] == "approved"
    assert row["compensation_approved_by"] == desk.p[approver].id


async def test_monthly_complaint_statistics(client: Client, desk: Desk) -> None:
    h = desk.h["handler"]
    quick = await _create(client, h, desk.c1, demand="exchange", channel="in_person")
    await _to(client, desk, quick["id"], "return_visited")
    declined = await _create(client, h, desk.c1)
    await _act(client, h, declined["id"], "decline", {"reason": "无效投诉"})
    await _create(client, h, desk.c1, major=True)
    now = utcnow()
    month = local_day(now).strftime("%Y-%m")
    r = await client.get(f"{API}/stats", params={"month": month}, headers=desk.h["gm"])
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["count"] == 3 and s["majors"] == 1 and s["declined"] == 1
    assert s["by_demand"]["refund"] == 2 and s["by_demand"]["exchange"] == 1
    assert s["by_channel"] == {"in_person": 1, "phone": 2, "letter": 0, "email": 0,
                               "online": 0, "wechat": 0}
    assert s["closed_within_7_days"] == 1 and s["closed_within_7_days_rate"] == 0.5
    assert (s["overdue"], s["hq_overdue"]) == (0, 0) and s["satisfaction_avg"] == 4.0
    r = await client.get(f"{API}/stats", params={"month": "1999-01"}, headers=desk.h["gm"])
    assert r.json()["count"] == 0 and r.json()["closed_within_7_days_rate"] is None
    r = await client.get(f"{API}/stats", params={"month": "2026-13"}, headers=desk.h["gm"])
    assert r.status_code in (400, 422) and "month" in r.json()["detail"]


async def test_overdue_statistics_count_complaints_that_missed_the_deadline(
    client: Client, desk: Desk
) -> None:
    received = utcnow() - timedelta(days=8)
    await _create(client, desk.h["handler"], desk.c1, received_at=_iso(received))
    month = local_day(received).strftime("%Y-%m")
    s = (await client.get(f"{API}/stats", params={"month": month},
                          headers=desk.h["gm"])).json()
    assert s["overdue"] == 1 and s["closed_within_7_days"] == 0


async def test_bad_input_is_refused_and_writes_nothing(
    client: Client, node: Node, desk: Desk
) -> None:
    h = desk.h["handler"]
    for body, field in (
        (_body(desk.c1, demand="apology"), "demand"),
        (_body(desk.c1, phone="12"), "phone"),
        (_body(desk.c1, complainant=""), "complainant"),
        (_body(desk.c1, surprise=1), "surprise"),
        (_body("not-a-uuid"), "customer_id"),
    ):
        r = await client.post(API, json=body, headers=h)
        assert r.status_code in (400, 422), (field, r.text)
        assert r.json()["errors"][0]["field"] == field
    r = await client.get(f"{API}/stats", headers=h)
    assert r.status_code in (400, 422)  # month is required
    c = await _create(client, h, desk.c1)
    await _act(client, h, c["id"], "accept")
    await _act(client, h, c["id"], "compensation", {"amount_fen": 0}, status=422)
    await _act(client, h, c["id"], "assign", {"department": "客服部",
                                             "handler_id": "01a00000-0000-7000-8000-000000000000"},
               status=422)
    async with node.db.read() as conn:
        count = (await conn.execute(select(func.count()).select_from(
            TABLES["complaints"]))).scalar_one()
    assert count == 1


# --- offline scenarios across a real HQ and branch node -------------------------------------


async def _branch_setup(tmp_path: Path, node: Node, client: Client
                        ) -> tuple[Node, Any, str]:
    b, up = await branch_node(tmp_path, node, "S001")
    await org_service.create_department(node, None, "客服部", "S001")
    await add_user(node, "b.handler", "complaint_handler", "S001", "客服部")
    await add_user(node, "b.mgr", "dept_manager", "S001", None)
    gm = await add_user(node, "hq.gm", "general_manager")
    cid = await customer(node, gm, "分店顾客", "S001")
    await sync(b, up, client)
    return b, up, cid


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_complaint_received_offline_and_synced_after_its_24h_deadline_is_hq_overdue(
    tmp_path: Path, node: Node, client: Client, backend: str
) -> None:
    b, up, cid = await _branch_setup(tmp_path, node, client)
    try:
        handler = await principal(b, "b.handler")
        # HQ is unreachable: the store takes a major complaint 30 hours before the sync.
        received = utcnow() - timedelta(hours=30)
        row = await service.create_complaint(b, handler, {
            "customer_id": cid, "complainant": "李女士", "phone": "13900002222",
            "demand": "return", "content": "门店堵门, 要求退货", "channel": "in_person",
            "received_at": received, "major": True})
        assert row["hq_overdue"] is True and row["number"].startswith("TS-S001-")
        await sync(b, up, client)
        gm = await login(client, "hq.gm")
        r = await client.get(API, params={"hq_overdue": "true", "major": "true"}, headers=gm)
        items = r.json()["items"]
        assert [i["id"] for i in items] == [row["id"]]
        assert items[0]["hq_overdue"] is True and items[0]["phone"] == "+8613900002222"
        assert _at(items[0]["received_at"]) == received.replace(
            microsecond=received.microsecond // 1000 * 1000)
        assert _at(items[0]["hq_deadline_at"]) == _at(items[0]["received_at"]) + timedelta(
            hours=24)
    finally:
        await b.close()


_COMPARED = ("status", "major", "hq_deadline_at", "escalated_at", "department", "handler_id",
             "cause", "review_note", "reply", "closed_at", "compensation_fen",
             "compensation_status", "received_at", "deadline_at", "number", "updated_at")


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_complaint_progressed_offline_at_the_branch_converges_with_hq(
    tmp_path: Path, node: Node, client: Client, backend: str
) -> None:
    b, up, cid = await _branch_setup(tmp_path, node, client)
    try:
        handler, mgr = await principal(b, "b.handler"), await principal(b, "b.mgr")
        c = await service.create_complaint(b, handler, {
            "customer_id": cid, "complainant": "王先生", "phone": None, "demand": "exchange",
            "content": "洗衣机漏水", "channel": "phone"})
        await sync(b, up, client)
        # Offline: the store works the complaint through to closed; meanwhile HQ
        # escalates it as major (a media report reached HQ directly).
        await service.accept(b, handler, c["id"])
        await service.assign(b, handler, c["id"], "客服部", handler.id)
        await service.investigate(b, handler, c["id"], REPORT)
        await service.request_compensation(b, handler, c["id"], 30_000)
        await service.decide_compensation(b, mgr, c["id"], approve=True)
        await service.review(b, mgr, c["id"], "同意")
        await service.reply(b, handler, c["id"], "已更换", "oral")
        await service.close(b, handler, c["id"])
        hq_gm = await principal(node, "hq.gm")
        await service.escalate(node, hq_gm, c["id"], "媒体报道")
        await sync(b, up, client)
        await sync(b, up, client)
        t = TABLES["complaints"]
        rows = []
        for n in (node, b):
            async with n.db.read() as conn:
                rows.append(dict((await conn.execute(select(t).where(t.c.id == c["id"])))
                                 .mappings().one()))
        hq_row, branch_row = rows
        assert {k: hq_row[k] for k in _COMPARED} == {k: branch_row[k] for k in _COMPARED}
        assert hq_row["status"] == "closed" and hq_row["major"] is True
        assert hq_row["compensation_status"] == "approved"
        assert hq_row["hq_deadline_at"] == hq_row["received_at"] + timedelta(hours=24)
    finally:
        await b.close()
