"""Monthly reports (domain.md §10): one test per rule on both backends, over a small
hand-computed month — five complaints, four customers under a visit plan, five tickets.

The month reported is the local month before the current one. Complaints are taken and
closed through the complaint service on a clock set back into that month (complaints
taken offline carry their received time; closing stamps the clock's time)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from schema import LOCAL_TZ, TABLES, local_day, new_id, utcnow
from server.config import Settings
from server.node import Node
from server.services import classification, reports, visits
from server.services import complaints as cs
from server.services import org as org_service
from server.services.errors import FieldError, ForbiddenError
from server.services.principal import Principal
from tests.conftest import PASSWORD
from tests.test_classification import TIER
from tests.test_complaints import REPORT, add_users, headers

Client = AsyncTestClient[Any]
D = timedelta
USERS = [("gm", "general_manager", None, None), ("mgr", "dept_manager", "S001", None),
         ("handler", "complaint_handler", "S001", "客服部"), ("rep", "sales_rep", "S001", "销售部")]


@dataclass
class Month:
    period: str
    base: datetime  # the month's first instant (local midnight, as UTC)
    p: dict[str, Principal]
    ids: dict[str, str]


class Clock:
    """The complaint service's clock, set by the test."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


async def _customer(node: Node, name: str, branch: str, registered_at: datetime,
                    **extra: Any) -> str:
    async with node.db.write(node.node_id, None) as uow:
        row = await uow.insert("customers", {
            "name": name, "customer_type": "person", "source": "call", "branch": branch,
            "registered_at": registered_at, **extra})
    return str(row["id"])


async def _complaint(node: Node, clock: Clock, p: Principal, customer_id: str,
                     received: datetime, **extra: Any) -> str:
    clock.now = received + D(hours=1)
    row = await cs.create_complaint(node, p, {
        "customer_id": customer_id, "complainant": "张先生", "content": "冰箱不制冷",
        "received_at": received, **extra})
    return str(row["id"])


async def _close(node: Node, clock: Clock, m: Month, cid: str, at: datetime) -> None:
    gm = m.p["gm"]
    clock.now = at - D(hours=2)
    if (await cs.get_complaint(node, gm, cid))["status"] == "received":
        await cs.accept(node, gm, cid)
    await cs.assign(node, gm, cid, "客服部", m.p["handler"].id)
    await cs.investigate(node, gm, cid, REPORT)
    await cs.review(node, gm, cid, "同意")
    await cs.reply(node, gm, cid, "已处理", "written")
    clock.now = at
    await cs.close(node, gm, cid)


@pytest.fixture
async def month(node: Node, org: None, monkeypatch: pytest.MonkeyPatch) -> Month:
    """The previous local month, with (S001 unless noted):

    complaints A (phone, refund) closed after 3 days, satisfaction 4; B (wechat,
    compensation 300 yuan approved) closed on day 8; C (phone, return) declined;
    D (letter, exchange, major at once) accepted, still open; E (S002, email,
    criticism) escalated after 30 h, closed after 2 days; one of the month before.
    Visit plan: tier `key` every 30 days. k1 (due, visited by rep), k2 (last visited 5
    days before the month: due, not visited), k3 (registered in the month: not due),
    k4 (S002, due, not visited).
    """
    for branch in ("S001", "S002"):
        await org_service.create_department(node, None, "客服部", branch)
    p = await add_users(node, monkeypatch, USERS)
    first = local_day(utcnow()).replace(day=1)
    start = (first - D(days=1)).replace(day=1)
    base = datetime.combine(start, time(), LOCAL_TZ).astimezone(UTC)
    clock = Clock()
    monkeypatch.setattr(cs, "utcnow", clock)
    old = base - D(days=100)
    ids = {"c1": await _customer(node, "投诉客户甲", "S001", old),
           "c2": await _customer(node, "投诉客户乙", "S002", old)}
    ids["A"] = await _complaint(node, clock, p["gm"], ids["c1"], base + D(days=1, hours=2),
                                demand="refund", channel="phone")
    await _close(node, clock, Month("", base, p, ids), ids["A"], base + D(days=4, hours=2))
    clock.now = base + D(days=5)
    await cs.return_visit(node, p["gm"], ids["A"], 4, None)
    ids["B"] = await _complaint(node, clock, p["gm"], ids["c1"], base + D(days=2),
                                demand="compensation", channel="wechat")
    clock.now = base + D(days=3)
    await cs.accept(node, p["gm"], ids["B"])
    await cs.request_compensation(node, p["gm"], ids["B"], 30_000)
    await cs.decide_compensation(node, p["mgr"], ids["B"], True)
    await _close(node, clock, Month("", base, p, ids), ids["B"], base + D(days=10))
    ids["C"] = await _complaint(node, clock, p["gm"], ids["c1"], base + D(days=3),
                                demand="return", channel="phone")
    await cs.decline(node, p["gm"], ids["C"], "不属实")
    ids["D"] = await _complaint(node, clock, p["gm"], ids["c1"], base + D(days=4),
                                demand="exchange", channel="letter", major=True)
    await cs.accept(node, p["gm"], ids["D"])
    ids["E"] = await _complaint(node, clock, p["gm"], ids["c2"], base + D(days=5),
                                demand="criticism", channel="email")
    clock.now = base + D(days=6, hours=6)
    await cs.escalate(node, p["gm"], ids["E"], "媒体报道")
    await _close(node, clock, Month("", base, p, ids), ids["E"], base + D(days=7))
    await _complaint(node, clock, p["gm"], ids["c1"], base - D(days=1),
                     demand="refund", channel="phone")
    # Visits against the plan.
    await classification.create_scheme(node, p["gm"], TIER)
    await visits.create_plan(node, p["gm"], {"scheme": "tier", "cls": "key",
                                             "every_days": 30, "care": []})
    rep = p["rep"]
    key = {"customer_class": "key", "owner_id": rep.id, "department": "销售部"}
    for name in ("k1", "k2"):
        ids[name] = await _customer(node, name, "S001", base - D(days=60), **key)
    ids["k3"] = await _customer(node, "k3", "S001", base + D(days=10), **key)
    ids["k4"] = await _customer(node, "k4", "S002", base - D(days=60), customer_class="key")
    await visits.record_visit(node, rep, ids["k2"], {"kind": "visit",
                                                      "visited_at": base - D(days=5)})
    await visits.record_visit(node, rep, ids["k1"], {"kind": "visit",
                                                      "visited_at": base + D(days=6)})
    return Month(start.strftime("%Y-%m"), base, p, ids)


async def test_complaint_statistics_match_the_hand_computed_month(
        node: Node, month: Month) -> None:
    out = await reports.report(node, month.p["gm"], "complaints", month.period, None)
    t = out["total"]
    assert t["received"] == 5 and t["accepted"] == 4 and t["declined"] == 1
    assert t["by_channel"] == {"in_person": 0, "phone": 2, "letter": 1, "email": 1,
                               "online": 0, "wechat": 1}
    assert t["by_demand"] == {"refund": 1, "return": 1, "exchange": 1, "compensation": 1,
                              "criticism": 1}
    assert (t["closed"], t["sla_judged"], t["closed_within_7_days"]) == (3, 4, 2)
    assert t["missed_7_days"] == 2 and t["sla_rate"] == 0.5 and t["overdue_open"] == 1
    assert (t["major"], t["major_within_24h"], t["major_sla_rate"]) == (2, 1, 0.5)
    assert t["avg_hours_to_close"] == 104.0  # (72 + 192 + 48) / 3
    assert t["compensation_approved_fen"] == 30_000
    assert (t["satisfaction_count"], t["satisfaction_avg"]) == (1, 4.0)
    by = {b["branch"]: b for b in out["branches"]}
    assert set(by) == {"S001", "S002"}
    assert by["S001"]["received"] == 4 and by["S001"]["sla_rate"] == round(1 / 3, 4)
    assert by["S002"]["received"] == 1 and by["S002"]["major_within_24h"] == 0
    nxt = local_day(month.base + D(days=40)).replace(day=10)
    assert out["due_by"] == nxt.isoformat() and out["final"] is True


async def test_sla_counts_a_complaint_closed_on_day_8_as_missed(
        node: Node, month: Month) -> None:
    out = await reports.report(node, month.p["gm"], "sla", month.period, "S001")
    s001 = out["branches"][0]
    # A closed on day 3 met it; B closed on day 8 and D still open missed it.
    assert s001["complaints_judged"] == 3 and s001["complaints_within_7_days"] == 1
    assert s001["complaints_missed_7_days"] == 2
    assert (s001["majors"], s001["majors_within_24h"]) == (1, 1)


async def test_visit_coverage_counts_due_customers_against_those_visited(
        node: Node, month: Month) -> None:
    out = await reports.report(node, month.p["gm"], "visits", month.period, None)
    t = out["total"]
    assert (t["customers_due"], t["customers_visited"], t["coverage_rate"]) == (3, 1, 0.3333)
    assert t["visits_recorded"] == 2  # the rep's visit and complaint A's return visit
    by = {b["branch"]: b for b in out["branches"]}
    assert (by["S001"]["customers_due"], by["S001"]["customers_visited"]) == (2, 1)
    assert (by["S002"]["customers_due"], by["S002"]["customers_visited"]) == (1, 0)
    rep = next(r for r in out["reps"] if r["user_id"] == month.p["rep"].id)
    assert (rep["username"], rep["customers_due"], rep["coverage_rate"]) == ("rep", 2, 0.5)


async def _ticket(node: Node, customer_id: str, branch: str, **values: Any) -> None:
    async with node.db.write(node.node_id, None) as uow:
        await uow.insert("tickets", {"customer_id": customer_id, "branch": branch,
                                     "number": f"BX-{branch}-{new_id()[-6:]}",
                                     "channel": "phone", "description": "空调不制冷",
                                     "status": "undispatched", **values})


async def test_ticket_timeliness_and_pass_rate(node: Node, month: Month) -> None:
    now = utcnow()
    c1, c2 = month.ids["c1"], month.ids["c2"]
    appointment = now - D(hours=2)
    await _ticket(node, c1, "S001", appointment_at=appointment, status="done",
                  arrived_at=appointment + D(minutes=5), passed=True, fee_fen=5000)
    await _ticket(node, c1, "S001", appointment_at=appointment, status="done",
                  arrived_at=appointment + D(minutes=15), passed=False, fee_fen=3000)
    await _ticket(node, c1, "S001", appointment_at=now - D(hours=1), status="dispatched")
    await _ticket(node, c1, "S001")
    await _ticket(node, c2, "S002", appointment_at=appointment, status="done",
                  arrived_at=appointment + D(minutes=10), passed=True, fee_fen=1000)
    current = local_day(now).strftime("%Y-%m")
    out = await reports.report(node, month.p["gm"], "tickets", current, None)
    t = out["total"]
    assert (t["total"], t["done"], t["with_appointment"], t["on_time"]) == (5, 3, 4, 2)
    assert (t["checked"], t["passed"], t["pass_rate"]) == (3, 2, 0.6667)
    assert t["timeliness_rate"] == 0.5 and t["fees_fen"] == 9000
    s001 = next(b for b in out["branches"] if b["branch"] == "S001")
    assert (s001["total"], s001["on_time"], s001["pass_rate"]) == (4, 1, 0.5)
    old = await reports.report(node, month.p["gm"], "tickets", month.period, None)
    assert old["total"]["total"] == 0


async def test_rep_performance_lists_activity_and_no_invented_target(
        node: Node, month: Month) -> None:
    out = await reports.report(node, month.p["mgr"], "reps", month.period, None)
    by = {r["username"]: r for r in out["reps"]}
    assert (by["rep"]["visits"], by["rep"]["new_customers"]) == (1, 1)
    assert by["rep"]["target"] is None and out["total"]["target"] is None
    assert by["handler"]["complaints_closed"] == 2  # A and B; E is S002's
    hq = await reports.report(node, month.p["gm"], "reps", month.period, None)
    assert {r["username"]: r for r in hq["reps"]}["handler"]["complaints_closed"] == 3


async def test_a_branch_manager_sees_only_their_branch(
        client: Client, node: Node, month: Month) -> None:
    h = headers(node, month.p["mgr"])
    for kind in ("complaints", "sla", "visits", "tickets", "reps"):
        r = await client.get(f"/api/v1/reports/{kind}", params={"period": month.period},
                             headers=h)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["branch"] == "S001"
        assert {b["branch"] for b in body["branches"]} <= {"S001"}
        assert "S002" not in json.dumps(body)
    r = await client.get("/api/v1/reports/complaints",
                         params={"period": month.period}, headers=h)
    assert r.json()["total"]["received"] == 4
    r = await client.get("/api/v1/reports/complaints",
                         params={"period": month.period, "branch": "S002"}, headers=h)
    assert r.status_code == 403
    r = await client.get("/api/v1/reports/complaints", params={"period": month.period},
                         headers=headers(node, month.p["rep"]))
    assert r.status_code == 403


async def test_the_monthly_snapshot_is_issued_once_by_the_10th(
        client: Client, node: Node, month: Month, monkeypatch: pytest.MonkeyPatch) -> None:
    due = reports.due_by(month.period)
    early = datetime.combine(due.replace(day=1), time(8), LOCAL_TZ).astimezone(UTC)
    monkeypatch.setattr(reports, "utcnow", lambda: early)
    issued = await reports.issue_due(node, early)
    assert [(r["kind"], r["branch"]) for r in issued] == [
        ("complaints", None), ("complaints", "S001"), ("complaints", "S002")]
    hq = issued[0]
    assert hq["id"] == reports.report_id("complaints", month.period, None)
    assert hq["issued_on_time"] is True and hq["final"] is False  # day-8 deadlines run
    ninth = early + D(days=8)
    monkeypatch.setattr(reports, "utcnow", lambda: ninth)
    refreshed = await reports.issue_due(node, ninth)
    assert [r["id"] for r in refreshed] == [r["id"] for r in issued]
    assert all(r["final"] and r["issued_on_time"] for r in refreshed)
    assert await reports.issue_due(node, ninth) == []  # final: nothing more to write
    again = await reports.issue_month(node, month.p["gm"], "complaints", month.period, None)
    assert again["id"] == hq["id"] and again["data"]["total"]["received"] == 5
    async with node.db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(TABLES["reports"])
                                   )).scalar_one() == 3
        actions = [r.action for r in await conn.execute(select(TABLES["audit_log"].c.action)
                   .where(TABLES["audit_log"].c.object_table == "reports"))]
    assert sorted(set(actions)) == ["report_issued", "report_refreshed"]
    assert actions.count("report_issued") == 3
    h = headers(node, month.p["mgr"])
    r = await client.get("/api/v1/reports/issued", headers=h)
    assert r.status_code == 200 and [i["branch"] for i in r.json()["items"]] == ["S001"]
    r = await client.get(f"/api/v1/reports/issued/{hq['id']}", headers=h)
    assert r.status_code == 404  # the HQ-wide snapshot is not a branch manager's
    r = await client.get(f"/api/v1/reports/issued/{hq['id']}",
                         headers=headers(node, month.p["gm"]))
    assert r.status_code == 200 and r.json()["due_by"] == due.isoformat()


async def test_issuing_over_http_is_idempotent_and_refused_to_an_auditor(
        client: Client, node: Node, month: Month) -> None:
    h = headers(node, month.p["gm"])
    body = {"kind": "tickets", "period": month.period}
    first = await client.post("/api/v1/reports/issued", json=body, headers=h)
    second = await client.post("/api/v1/reports/issued", json=body, headers=h)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["issued_on_time"] is (local_day(utcnow()) <= reports.due_by(
        month.period))
    r = await client.post("/api/v1/reports/issued", json={**body, "extra": 1}, headers=h)
    assert r.status_code in (400, 422)


async def test_bad_period_is_a_4xx_problem(client: Client, node: Node, month: Month) -> None:
    h = headers(node, month.p["gm"])
    for period in ("2026-13", "2026-1", "x"):
        r = await client.get("/api/v1/reports/complaints", params={"period": period},
                             headers=h)
        assert 400 <= r.status_code < 500, r.text
    r = await client.get("/api/v1/reports/nonsense", params={"period": month.period},
                         headers=h)
    assert r.status_code == 422
    with pytest.raises(FieldError):
        await reports.report(node, month.p["gm"], "complaints", "2026-00", None)
    with pytest.raises(ForbiddenError):
        await reports.issue_month(node, month.p["rep"], "complaints", month.period, None)


async def test_sync_health_lists_branches_for_hq(client: Client, node: Node,
                                                 month: Month) -> None:
    r = await client.get("/api/v1/reports/sync-health", params={"period": month.period},
                         headers=headers(node, month.p["gm"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "sync_health" and body["total"]["open_conflicts"] == 0
    assert body["branches"] == []  # no branch node enrolled


def _cli(settings: Settings, *args: str) -> Any:
    from server.cli import main

    env = {"BRANCHLINE_PASSWORD": PASSWORD, "XDG_CONFIG_HOME": str(settings.data_dir.parent
                                                                   / "cfg")}
    return CliRunner().invoke(main, ["report", *args, "--data", str(settings.data_dir)],
                              env=env)


async def test_cli_prints_the_table_and_json_parses(
        node: Node, settings: Settings, month: Month) -> None:
    r = await asyncio.to_thread(_cli, settings, "complaints", "--as", "gm",
                                "--month", month.period)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("Complaint statistics") and month.period in lines[0]
    row = next(line.split() for line in lines if line.startswith("received "))
    assert row == ["received", "4", "1", "5"]  # S001, S002, TOTAL
    r = await asyncio.to_thread(_cli, settings, "reps", "--as", "mgr", "--month",
                                month.period, "--json")
    assert r.exit_code == 0, r.output
    body = json.loads(r.output)
    assert body["branch"] == "S001" and body["total"]["target"] is None
    r = await asyncio.to_thread(_cli, settings, "complaints", "--as", "gm",
                                "--month", "2026-13")
    assert r.exit_code == 1 and "YYYY-MM" in r.output
    r = await asyncio.to_thread(_cli, settings, "issue", "--as", "gm", "--kind",
                                "complaints", "--month", month.period)
    assert r.exit_code == 0 and reports.report_id("complaints", month.period, None) in r.output
