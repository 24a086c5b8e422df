"""Demo data for complaints and service tickets (domain.md §6-§7), made through the
services so every workflow runs: HQ's price list; complaints at 上海南京路店 (S001) in
every state, overdue ones, majors escalated to HQ, compensation waiting for approval;
repair tickets at 杭州西湖店 (S002) in every state with technician s002.tech, some
spot-checked."""

from __future__ import annotations

import base64
import random
import struct
import zlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from schema import TABLES, utcnow
from server.node import Node
from server.services import complaints, tickets
from server.services.principal import Principal
from server.services.scope import customer_scope

PRICE_LIST = [("BX-CHECK", "上门检测", 5_000), ("BX-AC-CLEAN", "空调清洗", 12_000),
              ("BX-FRIDGE", "冰箱维修", 18_000), ("BX-WASHER", "洗衣机维修", 15_000),
              ("BX-HEATER", "热水器维修", 16_000), ("BX-INSTALL", "安装调试", 8_000)]
COMPLAINTS = [
    ("refund", "phone", "购买的电饭煲使用一周后无法加热, 要求退款"),
    ("return", "in_person", "冰箱送货时外壳有明显划痕, 要求退货"),
    ("exchange", "wechat", "空调外机噪音过大, 要求更换同型号新机"),
    ("compensation", "letter", "安装师傅打破了地砖, 要求赔偿损失"),
    ("criticism", "online", "店员服务态度差, 对顾客不耐烦"),
    ("exchange", "phone", "洗衣机脱水时剧烈晃动, 要求换货"),
    ("refund", "email", "网上预订的促销价未兑现, 要求退还差价"),
]
TICKETS = ["空调不制冷, 室内机滴水", "热水器打不着火", "洗衣机排水很慢",
           "冰箱冷藏室结冰", "新买的油烟机需要安装", "空调遥控器失灵"]
REPORT = {"cause": "产品出厂检验疏漏", "course": "顾客来电反映后, 客服上门核实情况属实",
          "responsible": "质检组", "conclusion": "投诉属实, 由门店负责处理",
          "countermeasures": "为顾客更换新品并致歉", "prevention": "加强到货检验与送货前复检"}


def _signature() -> str:
    """A tiny PNG standing in for the customer's signature."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    raw = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(raw).decode()


async def _customers(node: Node, who: Principal, n: int) -> list[str]:
    """Customers of `who`'s branch that `who` (a store manager) may see."""
    customers = TABLES["customers"]
    async with node.db.read() as conn:
        rows = await conn.execute(select(customers.c.id).where(
            customers.c.branch == who.branch, customer_scope(who),
            customers.c.merged_into.is_(None))
            .order_by(customers.c.id).limit(n))
        return [r.id for r in rows]


async def _price_list(node: Node, gm: Principal) -> int:
    existing = {r["code"] for r in (await tickets.list_price_items(node, None, None, 500))[0]}
    added = 0
    for code, name, fee in PRICE_LIST:
        if code not in existing:
            await tickets.create_price_item(node, gm, {"code": code, "name": name,
                                                       "fee_fen": fee})
            added += 1
    return added


async def _advance(node: Node, u: dict[str, Principal], cid: str, target: str) -> None:
    """Take complaint `cid` through the flow to `target` (declined is its own branch)."""
    svc, mgr = u["s001.service"], u["s001.manager"]
    if target == "declined":
        await complaints.decline(node, svc, cid, "经核实非本店售出商品, 不予受理")
        return
    steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("accepted", lambda: complaints.accept(node, svc, cid)),
        ("assigned", lambda: complaints.assign(node, svc, cid, "客服部", svc.id)),
        ("investigated", lambda: complaints.investigate(node, svc, cid, REPORT)),
        ("reviewed", lambda: complaints.review(node, mgr, cid, "同意调查结论及处理方案")),
        ("replied", lambda: complaints.reply(node, svc, cid, "已为您更换新品, 再次致歉",
                                             "written")),
        ("closed", lambda: complaints.close(node, svc, cid)),
        ("return_visited", lambda: complaints.return_visit(node, svc, cid, 5,
                                                           "顾客对处理结果满意")),
    ]
    for state, step in steps:
        if complaints.STATES.index(state) > complaints.STATES.index(target):
            break
        await step()


async def _complaint(node: Node, rng: random.Random, taker: Principal, customer_id: str,
                     hours_ago: float, *, major: bool = False) -> str:
    demand, channel, content = rng.choice(COMPLAINTS)
    row = await complaints.create_complaint(node, taker, {
        "customer_id": customer_id, "complainant": rng.choice(["张先生", "李女士", "王阿姨",
                                                                "陈先生", "刘女士"]),
        "phone": f"1390000{rng.randint(1000, 9999)}", "demand": demand, "channel": channel,
        "content": content, "received_at": utcnow() - timedelta(hours=hours_ago),
        "major": major})
    return str(row["id"])


async def _seed_complaints(node: Node, rng: random.Random, u: dict[str, Principal]) -> int:
    people = await _customers(node, u["s001.manager"], 12)
    if not people:
        return 0
    svc = u["s001.service"]
    made = 0
    for i, state in enumerate(complaints.STATES):  # one in every state, a day apart
        cid = await _complaint(node, rng, svc, people[i % len(people)], 24 * i + 2)
        await _advance(node, u, cid, state)
        made += 1
    # Overdue: received 10 days ago and still under investigation.
    late = await _complaint(node, rng, svc, people[0], 240)
    await _advance(node, u, late, "assigned")
    # Major, taken 30 hours ago (e.g. while HQ was unreachable): late for HQ at once.
    await _complaint(node, rng, svc, people[1 % len(people)], 30, major=True)
    escalated = await _complaint(node, rng, svc, people[2 % len(people)], 3)
    await _advance(node, u, escalated, "accepted")
    await complaints.escalate(node, svc, escalated, "顾客在门店堵门并联系媒体")
    # Compensation: one above a department manager's limit waits for the director,
    # one within it approved by the store manager.
    waiting = await _complaint(node, rng, svc, people[3 % len(people)], 20)
    await _advance(node, u, waiting, "investigated")
    await complaints.request_compensation(node, svc, waiting, 80_000)
    approved = await _complaint(node, rng, svc, people[4 % len(people)], 50)
    await _advance(node, u, approved, "reviewed")
    await complaints.request_compensation(node, svc, approved, 30_000)
    await complaints.decide_compensation(node, u["s001.manager"], approved, approve=True)
    # Re-opened after closing: the customer came back (a new cycle).
    reopened = await _complaint(node, rng, svc, people[5 % len(people)], 100)
    await _advance(node, u, reopened, "closed")
    await complaints.reopen(node, u["s001.manager"], reopened)
    return made + 6


async def _seed_tickets(node: Node, rng: random.Random, u: dict[str, Principal]) -> int:
    people = await _customers(node, u["s002.manager"], 12)
    if not people:
        return 0
    desk, tech = u["s002.manager"], u["s002.tech"]
    now = utcnow()
    # (final state, appointment offset in minutes from now, arrive?, spot-check result)
    plan: list[tuple[str, int | None, bool, bool | None]] = [
        ("undispatched", 120, False, None), ("undispatched", None, False, None),
        ("dispatched", 60, False, None), ("dispatched", 240, False, None),
        ("confirmed", 30, False, None), ("confirmed", -5, True, None),
        ("done", -5, True, True), ("done", 20, True, True), ("done", -45, True, False),
        ("done", -8, True, None), ("done", None, True, None),
    ]
    codes = [code for code, _, _ in PRICE_LIST]
    for i, (state, offset, arrives, passed) in enumerate(plan):
        appointment = None if offset is None else now + timedelta(minutes=offset)
        t = await tickets.create_ticket(node, desk, {
            "customer_id": people[i % len(people)], "channel": rng.choice(tickets.CHANNELS),
            "description": rng.choice(TICKETS), "appointment_at": appointment})
        tid = str(t["id"])
        if state == "undispatched":
            continue
        await tickets.dispatch(node, desk, tid, tech.id)
        if state == "dispatched":
            continue
        await tickets.confirm(node, tech, tid)
        if arrives:
            await tickets.arrive(node, tech, tid)
        if state == "done":
            await tickets.complete(node, tech, tid, {
                "price_code": rng.choice(codes), "consent": True, "signature": _signature(),
                "work_done": "检查线路并更换故障部件, 试机正常"})
            if passed is not None:
                await tickets.check(node, desk, tid, passed)
    return len(plan)


async def seed(node: Node, rng: random.Random, users: dict[str, Principal]) -> dict[str, int]:
    """Create the service-desk demo records at HQ for existing demo customers; return
    counts by kind. `users` needs gm, s001.service, s001.manager, s002.manager and
    s002.tech (server/demo.py USERS)."""
    counts = {"price_items": await _price_list(node, users["gm"])}
    counts["complaints"] = await _seed_complaints(node, rng, users)
    counts["tickets"] = await _seed_tickets(node, rng, users)
    return counts
