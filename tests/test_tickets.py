"""Service tickets (报修 / 派工, domain.md §7) and the price list: one test per rule, on
both backends; the offline scenario across a real HQ and branch node; the demo seed."""

from __future__ import annotations

import base64
import random
import struct
import zlib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from schema import TABLES, local_day, utcnow
from server import demo_service_desk
from server.node import Node
from server.services import org as org_service
from server.services import tickets as service
from server.services.errors import FieldError, ForbiddenError
from server.services.principal import Principal
from tests._nodes import branch_node, principal, sync
from tests.test_complaints import add_users, customer, headers

Client = AsyncTestClient[Any]
API = "/api/v1/tickets"
PRICES = "/api/v1/price-items"
USERS = [  # username, role, branch, department
    ("svc", "customer_service", "S001", "客服部"),
    ("mgr", "dept_manager", "S001", None),
    ("rep", "sales_rep", "S001", "销售部"),
    ("tech", "technician", "S001", "维修部"),
    ("tech_b", "technician", "S001", "维修部"),
    ("tech2", "technician", "S002", "维修部"),
    ("gm", "general_manager", None, None),
]


def png(padding: int = 0) -> str:
    """A 1×1 PNG as a data URL, optionally padded with a text chunk to a larger size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    raw = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
           + (chunk(b"tEXt", b"x" * padding) if padding else b"") + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(raw).decode()


@dataclass
class Shop:
    h: dict[str, dict[str, str]]
    p: dict[str, Principal]
    c1: str
    c2: str


@pytest.fixture
async def shop(node: Node, org: None, monkeypatch: pytest.MonkeyPatch) -> Shop:
    for branch in ("S001", "S002"):
        for dept in ("客服部", "销售部", "维修部"):
            await org_service.create_department(node, None, dept, branch)
    p = await add_users(node, monkeypatch, USERS)
    p["admin"] = await principal(node, "admin")
    h = {u: headers(node, x) for u, x in p.items()}
    await service.create_price_item(node, p["gm"], {"code": "bx-repair", "name": "上门维修",
                                                    "fee_fen": 8_000})
    return Shop(h, p, await customer(node, p["gm"], "报修客户甲", "S001"),
                await customer(node, p["gm"], "报修客户乙", "S002"))


async def _create(client: Client, headers: dict[str, str], customer_id: str, **extra: Any
                  ) -> dict[str, Any]:
    r = await client.post(API, headers=headers, json={
        "customer_id": customer_id, "channel": "phone", "description": "空调不制冷", **extra})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _act(client: Client, headers: dict[str, str], tid: str, action: str,
               body: dict[str, Any] | None = None, status: int = 200) -> dict[str, Any]:
    r = await client.post(f"{API}/{tid}/{action}", json=body, headers=headers)
    assert r.status_code == status, r.text
    return dict(r.json())


def _completion(**extra: Any) -> dict[str, Any]:
    return {"price_code": "BX-REPAIR", "consent": True, "signature": png(),
            "work_done": "更换压缩机电容", **extra}


async def _to(client: Client, s: Shop, tid: str, state: str) -> dict[str, Any]:
    """Take ticket `tid` (for S001) through the flow until `state`."""
    row = await _act(client, s.h["svc"], tid, "dispatch", {"technician_id": s.p["tech"].id})
    if state != "dispatched":
        row = await _act(client, s.h["tech"], tid, "arrive")
    if state == "done":
        row = await _act(client, s.h["tech"], tid, "complete", _completion())
    assert row["status"] == state
    return row


def _iso(offset: timedelta) -> str:
    return (utcnow() + offset).isoformat().replace("+00:00", "Z")


async def test_price_list_is_written_by_admin_or_general_manager_only(
    client: Client, shop: Shop
) -> None:
    r = await client.post(PRICES, headers=shop.h["admin"],
                          json={"code": "bx-clean", "name": "清洗", "fee_fen": 5_000})
    assert r.status_code == 201 and r.json()["code"] == "BX-CLEAN"
    r = await client.post(PRICES, headers=shop.h["svc"],
                          json={"code": "bx-x", "name": "x", "fee_fen": 1})
    assert r.status_code == 403
    r = await client.post(PRICES, headers=shop.h["gm"],
                          json={"code": "BX-REPAIR", "name": "重复", "fee_fen": 1})
    assert r.status_code == 409
    r = await client.post(PRICES, headers=shop.h["gm"],
                          json={"code": "bx-neg", "name": "负数", "fee_fen": -1})
    assert r.status_code == 422
    item = (await client.get(PRICES, headers=shop.h["tech"])).json()["items"][0]
    assert item["code"] == "BX-CLEAN"
    r = await client.patch(f"{PRICES}/{item['id']}", headers=shop.h["gm"],
                           json={"fee_fen": 6_000, "active": False})
    assert r.status_code == 200 and (r.json()["fee_fen"], r.json()["active"]) == (6_000, False)
    r = await client.get(PRICES, params={"active": "true"}, headers=shop.h["tech"])
    assert [i["code"] for i in r.json()["items"]] == ["BX-REPAIR"]


async def test_ticket_runs_undispatched_dispatched_confirmed_done(
    client: Client, shop: Shop
) -> None:
    t = await _create(client, shop.h["svc"], shop.c1, channel="front_desk",
                      appointment_at=_iso(timedelta(hours=2)))
    assert t["number"].startswith("BX-S001-") and t["status"] == "undispatched"
    row = await _act(client, shop.h["svc"], t["id"], "dispatch",
                     {"technician_id": shop.p["tech"].id})
    assert (row["status"], row["technician_id"]) == ("dispatched", shop.p["tech"].id)
    row = await _act(client, shop.h["tech"], t["id"], "confirm")
    assert row["status"] == "confirmed" and row["confirmed_at"] and row["arrived_at"] is None
    row = await _act(client, shop.h["tech"], t["id"], "arrive")
    assert row["arrived_at"] and row["on_time"] is True
    row = await _act(client, shop.h["tech"], t["id"], "complete", _completion())
    assert row["status"] == "done" and row["completed_at"] and row["consent"] is True
    assert (row["price_code"], row["fee_fen"]) == ("BX-REPAIR", 8_000) and row["signed"]
    assert row["signature"] == png()
    listed = (await client.get(API, headers=shop.h["svc"])).json()["items"][0]
    assert listed["signed"] is True and "signature" not in listed


async def test_fee_is_copied_from_the_price_list_at_completion(
    client: Client, node: Node, shop: Shop
) -> None:
    t = await _create(client, shop.h["svc"], shop.c1)
    await _to(client, shop, t["id"], "done")
    items = TABLES["price_items"]
    async with node.db.read() as conn:
        item_id = (await conn.execute(select(items.c.id))).scalar_one()
    await service.update_price_item(node, shop.p["gm"], item_id, {"fee_fen": 9_900})
    r = await client.get(f"{API}/{t['id']}", headers=shop.h["svc"])
    assert r.json()["fee_fen"] == 8_000  # the fee charged stays what it was


async def test_dispatch_needs_an_active_technician_who_serves_the_branch(
    client: Client, node: Node, shop: Shop
) -> None:
    t = await _create(client, shop.h["svc"], shop.c1)
    for who in ("rep", "tech2"):
        r = await client.post(f"{API}/{t['id']}/dispatch", headers=shop.h["svc"],
                              json={"technician_id": shop.p[who].id})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "technician_id", who
    await _act(client, shop.h["tech"], t["id"], "dispatch",
               {"technician_id": shop.p["tech"].id}, status=403)
    async with node.db.write(node.node_id, None) as uow:
        await uow.update("users", shop.p["tech_b"].id, {"active": False})
    await _act(client, shop.h["svc"], t["id"], "dispatch",
               {"technician_id": shop.p["tech_b"].id}, status=422)
    await _act(client, shop.h["svc"], t["id"], "dispatch", {"technician_id": shop.p["tech"].id})
    async with node.db.write(node.node_id, None) as uow:
        await uow.update("users", shop.p["tech_b"].id, {"active": True})
    row = await _act(client, shop.h["mgr"], t["id"], "dispatch",
                     {"technician_id": shop.p["tech_b"].id})  # re-sent before confirmation
    assert row["technician_id"] == shop.p["tech_b"].id
    await _act(client, shop.h["tech_b"], t["id"], "confirm")
    await _act(client, shop.h["svc"], t["id"], "dispatch",
               {"technician_id": shop.p["tech"].id}, status=409)


async def test_only_the_dispatched_technician_confirms_arrives_and_completes(
    client: Client, shop: Shop
) -> None:
    t = await _create(client, shop.h["svc"], shop.c1)
    await _to(client, shop, t["id"], "dispatched")
    for action, body in (("confirm", None), ("arrive", None), ("complete", _completion())):
        await _act(client, shop.h["tech_b"], t["id"], action, body, status=403)
    await _act(client, shop.h["svc"], t["id"], "confirm", status=403)
    r = await client.post(API, headers=shop.h["tech"], json={
        "customer_id": shop.c1, "channel": "phone", "description": "x"})
    assert r.status_code == 403  # technicians do not take tickets


async def test_completion_requires_consent_and_a_png_signature_of_at_most_200_kb(
    client: Client, shop: Shop
) -> None:
    t = await _create(client, shop.h["svc"], shop.c1)
    await _to(client, shop, t["id"], "confirmed")
    jpeg = "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\xff").decode()
    not_png = "data:image/png;base64," + base64.b64encode(b"GIF89a" + b"\x00" * 20).decode()
    for body, field in (
        (_completion(consent=False), "consent"),
        (_completion(signature=jpeg), "signature"),
        (_completion(signature="data:image/png;base64,@@@@"), "signature"),
        (_completion(signature=not_png), "signature"),
        (_completion(signature=png(200 * 1024)), "signature"),  # just over 200 KB
        (_completion(price_code="NOPE"), "price_code"),
    ):
        r = await client.post(f"{API}/{t['id']}/complete", json=body, headers=shop.h["tech"])
        assert r.status_code == 422, (field, r.text)
        assert r.json()["errors"][0]["field"] == field
    r = await client.get(f"{API}/{t['id']}", headers=shop.h["svc"])
    assert r.json()["status"] == "confirmed" and r.json()["signature"] is None
    big = png(190 * 1024)
    row = await _act(client, shop.h["tech"], t["id"], "complete", _completion(signature=big))
    assert row["status"] == "done"


def test_signature_check_accepts_only_png_data_urls() -> None:
    assert service.check_signature(png()) == png()
    with pytest.raises(FieldError):
        service.check_signature(png()[:-4] + "!!!!")
    with pytest.raises(FieldError):
        service.check_signature("data:image/png;base64," + "A" * 300_000)


async def test_ticket_steps_out_of_order_are_409(client: Client, shop: Shop) -> None:
    t = await _create(client, shop.h["svc"], shop.c1)
    await _act(client, shop.h["tech"], t["id"], "confirm", status=403)  # not dispatched to them
    await _act(client, shop.h["svc"], t["id"], "check", {"passed": True}, status=409)
    await _act(client, shop.h["svc"], t["id"], "dispatch", {"technician_id": shop.p["tech"].id})
    await _act(client, shop.h["tech"], t["id"], "complete", _completion(), status=409)
    await _act(client, shop.h["tech"], t["id"], "confirm")
    await _act(client, shop.h["tech"], t["id"], "confirm", status=409)
    r = await client.post(f"{API}/{t['id']}/complete", json=_completion(),
                          headers=shop.h["tech"])
    assert r.status_code == 409 and "arrival" in r.json()["detail"]
    await _act(client, shop.h["tech"], t["id"], "arrive")
    await _act(client, shop.h["tech"], t["id"], "arrive", status=409)
    await _act(client, shop.h["tech"], t["id"], "complete", _completion())
    await _act(client, shop.h["tech"], t["id"], "check", {"passed": True}, status=403)
    row = await _act(client, shop.h["svc"], t["id"], "check", {"passed": False})
    assert (row["passed"], row["checked_by"]) == (False, shop.p["svc"].id)
    await _act(client, shop.h["mgr"], t["id"], "check", {"passed": True}, status=409)


async def test_arrival_no_more_than_10_minutes_after_the_appointment_is_on_time(
    client: Client, shop: Shop
) -> None:
    results = []
    for offset in (timedelta(minutes=-9), timedelta(minutes=-11), None):
        extra = {} if offset is None else {"appointment_at": _iso(offset)}
        t = await _create(client, shop.h["svc"], shop.c1, **extra)
        results.append((await _to(client, shop, t["id"], "confirmed"))["on_time"])
    assert results == [True, False, None]


async def test_monthly_ticket_stats_give_timeliness_and_pass_rates(
    client: Client, shop: Shop
) -> None:
    h = shop.h["svc"]
    ids = []
    for offset in (timedelta(minutes=30), timedelta(minutes=-30), timedelta(hours=-1)):
        ids.append((await _create(client, h, shop.c1, appointment_at=_iso(offset)))["id"])
    await _create(client, h, shop.c1)  # no appointment: not judged
    await _to(client, shop, ids[0], "done")  # on time
    await _to(client, shop, ids[1], "done")  # 30 minutes late
    # ids[2]: nobody came an hour after the appointment: late as well.
    await _act(client, h, ids[0], "check", {"passed": True})
    await _act(client, h, ids[1], "check", {"passed": False})
    month = local_day(utcnow()).strftime("%Y-%m")
    r = await client.get(f"{API}/stats", params={"month": month}, headers=shop.h["gm"])
    assert r.status_code == 200, r.text
    s = r.json()
    assert (s["total"], s["done"], s["with_appointment"], s["on_time"]) == (4, 2, 3, 1)
    assert s["timeliness_rate"] == round(1 / 3, 4)
    assert (s["checked"], s["passed"], s["pass_rate"]) == (2, 1, 0.5)
    assert s["fees_fen"] == 16_000
    r = await client.get(f"{API}/stats", params={"month": month, "branch": "S002"},
                         headers=shop.h["gm"])
    assert r.json()["total"] == 0 and r.json()["pass_rate"] is None


async def test_ticket_list_filters_by_status_technician_branch_customer(
    client: Client, shop: Shop
) -> None:
    a = await _create(client, shop.h["svc"], shop.c1)
    b = await _create(client, shop.h["svc"], shop.c1)
    await _to(client, shop, b["id"], "dispatched")
    c = await _create(client, shop.h["gm"], shop.c2)
    gm = shop.h["gm"]
    for params, expected in (
        ({"status": "undispatched"}, {a["id"], c["id"]}),
        ({"technician_id": shop.p["tech"].id}, {b["id"]}),
        ({"branch": "S002"}, {c["id"]}),
        ({"customer_id": shop.c1}, {a["id"], b["id"]}),
    ):
        r = await client.get(API, params=params, headers=gm)
        assert {i["id"] for i in r.json()["items"]} == expected, params
    r = await client.get(API, headers=shop.h["svc"])  # S001 staff do not see S002
    assert {i["id"] for i in r.json()["items"]} == {a["id"], b["id"]}
    r = await client.get(f"{API}/{c['id']}", headers=shop.h["svc"])
    assert r.status_code == 404


async def test_bad_ticket_input_is_refused_and_writes_nothing(
    client: Client, node: Node, shop: Shop
) -> None:
    for body in ({"customer_id": shop.c1, "channel": "fax", "description": "x"},
                 {"customer_id": shop.c1, "channel": "phone", "description": ""},
                 {"customer_id": shop.c1, "channel": "phone", "description": "x",
                  "appointment_at": "tomorrow"}):
        r = await client.post(API, json=body, headers=shop.h["svc"])
        assert r.status_code in (400, 422), r.text
    async with node.db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(
            TABLES["tickets"]))).scalar_one() == 0


# --- offline scenario across a real HQ and branch node --------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_ticket_dispatched_and_completed_at_the_branch_offline_shows_done_at_hq(
    tmp_path: Path, node: Node, client: Client, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    b, up = await branch_node(tmp_path, node, "S001")
    try:
        p = await add_users(node, monkeypatch, [
            ("b.svc", "customer_service", "S001", None), ("b.tech", "technician", "S001", None),
            ("hq.gm", "general_manager", None, None)])
        await service.create_price_item(node, p["hq.gm"], {"code": "BX-1", "name": "检修",
                                                           "fee_fen": 12_000})
        cid = await customer(node, p["hq.gm"], "分店报修客户", "S001")
        await sync(b, up, client)
        svc, tech = await principal(b, "b.svc"), await principal(b, "b.tech")
        # The price list is HQ's: the branch reads it but may not change it.
        with pytest.raises(ForbiddenError, match="headquarters"):
            await service.create_price_item(b, p["hq.gm"],
                                            {"code": "BX-2", "name": "分店价", "fee_fen": 1})
        # HQ unreachable: the whole job happens at the branch.
        t = await service.create_ticket(b, svc, {
            "customer_id": cid, "channel": "front_desk", "description": "热水器漏水",
            "appointment_at": utcnow() + timedelta(minutes=30)})
        await service.dispatch(b, svc, t["id"], tech.id)
        await service.confirm(b, tech, t["id"])
        await service.arrive(b, tech, t["id"])
        await service.complete(b, tech, t["id"], {
            "price_code": "BX-1", "consent": True, "signature": png(), "work_done": "换阀门"})
        await sync(b, up, client)
        r = await client.get(f"{API}/{t['id']}", headers=headers(node, p["hq.gm"]))
        body = r.json()
        assert body["status"] == "done" and body["fee_fen"] == 12_000
        assert body["on_time"] is True and body["signature"] == png()
        assert body["technician_id"] == tech.id and body["number"].startswith("BX-S001-")
    finally:
        await b.close()


async def test_demo_seed_exercises_every_service_desk_workflow(
    node: Node, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = await add_users(node, monkeypatch, [
        ("s001.service", "customer_service", "S001", "客服部"),
        ("s001.manager", "dept_manager", "S001", "销售部"),
        ("s002.manager", "dept_manager", "S002", "销售部"),
        ("s002.tech", "technician", "S002", "维修部"),
        ("director", "sales_director", None, None)])
    users = {**demo, "gm": shop.p["gm"]}
    for i in range(4):
        await customer(node, shop.p["gm"], f"演示客户{i}", "S001", demo["s001.manager"])
        await customer(node, shop.p["gm"], f"演示客户乙{i}", "S002", demo["s002.manager"])
    counts = await demo_service_desk.seed(node, random.Random(7), users)
    assert counts["complaints"] >= 9 and counts["tickets"] >= 4 and counts["price_items"] >= 3
    t, c = TABLES["tickets"], TABLES["complaints"]
    async with node.db.read() as conn:
        ticket_states = {r[0] for r in await conn.execute(select(t.c.status))}
        states = {r[0] for r in await conn.execute(select(c.c.status))}
        majors = (await conn.execute(select(func.count()).where(c.c.major.is_(True))
                                     )).scalar_one()
        pending = (await conn.execute(select(func.count()).where(
            c.c.compensation_status == "pending"))).scalar_one()
        checked = (await conn.execute(select(func.count()).where(t.c.passed.is_not(None))
                                      )).scalar_one()
    assert ticket_states == {"undispatched", "dispatched", "confirmed", "done"}
    assert {"received", "declined", "accepted", "assigned", "investigated", "reviewed",
            "replied", "closed", "return_visited"} <= states
    assert majors >= 1 and pending >= 1 and checked >= 1
    gm = users["gm"]
    from server.services import complaints
    overdue, _ = await complaints.list_complaints(node, gm, {"overdue": True}, None, 50)
    assert overdue
