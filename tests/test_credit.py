"""Credit (domain.md §8): preconditions, the rolling 30-day limit, over-limit shipments
below a third of the limit with the regional manager's approval, prepayment, and
HQ-authoritative limits with their history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from schema import TABLES
from server.node import Node
from server.services import credit, credit_limits
from tests._nodes import branch_node, principal, sync
from tests.conftest import add_user, login
from tests.test_purchases import new_customer, when

Client = AsyncTestClient[Any]
READY = {"id_copy_on_file": True, "contract_signed": True, "last_year_settled": True}


async def _org_customer(client: Client, node: Node, *, limit: int | None = 100_000,
                        ready: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    """An organisation customer of S001 with its preconditions and limit set at HQ;
    returns it and the headers of HQ finance."""
    clerk = await add_user(node, "s1clerk", "customer_service", "S001")
    await add_user(node, "finance", "finance")
    c = await new_customer(node, clerk, name="上海某某贸易有限公司",
                           customer_type="organisation")
    headers = await login(client, "finance")
    if ready:
        r = await client.put(f"/api/v1/customers/{c['id']}/credit/preconditions",
                             headers=headers, json=READY)
        assert r.status_code == 200, r.text
    if limit is not None:
        r = await client.put(f"/api/v1/customers/{c['id']}/credit-limit", headers=headers,
                             json={"credit_limit_fen": limit, "reason": "年度授信"})
        assert r.status_code == 200 and r.json()["status"] == "applied", r.text
    return c, headers


async def _check(client: Client, headers: dict[str, str], c: dict[str, Any], amount: int,
                 prepaid: int = 0) -> dict[str, Any]:
    r = await client.post(f"/api/v1/customers/{c['id']}/credit/check", headers=headers,
                          json={"amount_fen": amount, "prepaid_fen": prepaid})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _buy(client: Client, headers: dict[str, str], c: dict[str, Any], amount: int,
               days_ago: float = 0, **extra: Any) -> Any:
    return await client.post(f"/api/v1/customers/{c['id']}/purchases", headers=headers,
                             json={"purchased_at": when(days_ago), "amount_fen": amount,
                                   "on_credit": True, **extra})


def test_over_limit_part_must_stay_below_a_third_of_the_limit() -> None:
    ok = [{"ok": True, "reason": None}]
    assert credit.decide(90_000, 0, 90_000, 0, ok)["decision"] == "allowed"
    below = credit.decide(90_000, 50_000, 69_999, 0, ok)   # 29,999 over: < 30,000
    assert (below["decision"], below["over_fen"], below["approver_role"]) == (
        "needs_approval", 29_999, "sales_director")
    assert credit.decide(90_000, 50_000, 70_000, 0, ok)["decision"] == "refused"  # = a third
    assert credit.decide(90_000, 50_000, 90_000, 50_000, ok)["decision"] == "allowed"
    assert credit.decide(None, 0, 1, 0, ok)["decision"] == "refused"  # no limit granted
    failed = credit.decide(90_000, 0, 1, 0, [{"ok": False, "reason": "no contract"}])
    assert (failed["decision"], failed["reasons"]) == ("refused", ["no contract"])


async def test_credit_status_bills_the_rolling_30_days_before_today(
        client: Client, node: Node, org: None) -> None:
    c, headers = await _org_customer(client, node)
    shop = await login(client, "s1clerk")
    for amount, days in ((30_000, 31), (20_000, 29), (10_000, 1)):
        r = await _buy(client, shop, c, amount, days)
        assert r.status_code == 201, r.text
    r = await client.post(f"/api/v1/customers/{c['id']}/purchases", headers=shop,
                          json={"purchased_at": when(2), "amount_fen": 7_000})  # cash
    assert r.status_code == 201
    r = await client.get(f"/api/v1/customers/{c['id']}/credit", headers=headers)
    body = r.json()
    assert (body["credit_limit_fen"], body["billed_fen"], body["available_fen"]) == (
        100_000, 30_000, 70_000)
    assert [p["ok"] for p in body["preconditions"]] == [True, True, True]
    r = await _buy(client, shop, c, 25_000, 0.5, prepaid_fen=15_000)
    assert r.status_code == 201 and r.json()["prepaid_fen"] == 15_000
    body = (await client.get(f"/api/v1/customers/{c['id']}/credit", headers=headers)).json()
    assert body["billed_fen"] == 40_000  # only the part not prepaid is on credit


async def test_credit_is_refused_when_a_precondition_fails(
        client: Client, node: Node, org: None) -> None:
    c, headers = await _org_customer(client, node, ready=False)
    await client.put(f"/api/v1/customers/{c['id']}/credit/preconditions", headers=headers,
                     json={"id_copy_on_file": True})
    body = await _check(client, headers, c, 1_000)
    assert body["decision"] == "refused"
    assert body["reasons"] == ["no contract has been signed",
                               "last year's balance has not been cleared"]
    r = await client.get(f"/api/v1/customers/{c['id']}/credit", headers=headers)
    assert [(p["name"], p["ok"]) for p in r.json()["preconditions"]] == [
        ("id_copy_on_file", True), ("contract_signed", False), ("last_year_settled", False)]
    r = await _buy(client, await login(client, "s1clerk"), c, 1_000)
    assert r.status_code == 409 and "no contract" in r.json()["detail"]


async def test_within_the_limit_is_allowed_and_prepayment_covers_the_excess(
        client: Client, node: Node, org: None) -> None:
    c, headers = await _org_customer(client, node)
    assert (await _check(client, headers, c, 100_000))["decision"] == "allowed"
    over = await _check(client, headers, c, 160_000)
    assert (over["decision"], over["over_fen"]) == ("refused", 60_000)
    prepaid = await _check(client, headers, c, 160_000, prepaid=60_000)
    assert prepaid["decision"] == "allowed" and prepaid["over_fen"] == 0
    r = await _buy(client, await login(client, "s1clerk"), c, 160_000, prepaid_fen=60_000)
    assert r.status_code == 201, r.text


async def test_over_limit_shipment_needs_the_regional_managers_approval(
        client: Client, node: Node, org: None) -> None:
    c, _ = await _org_customer(client, node)
    await add_user(node, "director", "sales_director")
    await add_user(node, "s1manager", "dept_manager", "S001")
    shop = await login(client, "s1clerk")
    assert (await _buy(client, shop, c, 90_000)).status_code == 201
    check = await _check(client, shop, c, 30_000)  # 20,000 over a 100,000 limit
    assert (check["decision"], check["approver_role"]) == ("needs_approval", "sales_director")
    r = await _buy(client, shop, c, 30_000)
    assert r.status_code == 409 and "approval" in r.json()["detail"]
    r = await client.post(f"/api/v1/customers/{c['id']}/credit/requests", headers=shop,
                          json={"amount_fen": 30_000, "reason": "节前备货"})
    assert r.status_code == 201, r.text
    req = r.json()
    assert (req["status"], req["over_fen"], req["limit_fen"]) == ("requested", 20_000, 100_000)
    url = f"/api/v1/credit-requests/{req['id']}"
    r = await client.post(f"{url}/approve", headers=await login(client, "s1manager"))
    assert r.status_code == 403
    director = await login(client, "director")
    r = await client.post(f"{url}/approve", headers=director)
    assert r.status_code == 200 and r.json()["status"] == "approved"
    assert (await client.post(f"{url}/reject", headers=director)).status_code == 409
    r = await _buy(client, shop, c, 30_001, credit_request_id=req["id"])
    assert r.status_code == 409  # more than was approved
    r = await _buy(client, shop, c, 30_000, credit_request_id=req["id"])
    assert r.status_code == 201, r.text
    r = await client.get("/api/v1/credit-requests", headers=director,
                         params={"customer_id": c["id"]})
    [shipped] = r.json()["items"]
    assert shipped["status"] == "shipped" and shipped["purchase_id"]
    r = await _buy(client, shop, c, 1_000, credit_request_id=req["id"])
    assert r.status_code == 409  # a request ships once


async def test_credit_request_only_when_approval_can_help(
        client: Client, node: Node, org: None) -> None:
    c, _ = await _org_customer(client, node)
    shop = await login(client, "s1clerk")
    for amount in (50_000, 140_000):  # within the limit; 40,000 over is a third or more
        r = await client.post(f"/api/v1/customers/{c['id']}/credit/requests", headers=shop,
                              json={"amount_fen": amount})
        assert r.status_code == 409, r.text
    async with node.db.read() as conn:
        assert (await conn.execute(select(TABLES["credit_requests"].c.id))).first() is None


async def test_credit_limit_set_at_hq_takes_effect_and_its_history_is_kept(
        client: Client, node: Node, org: None) -> None:
    c, headers = await _org_customer(client, node, limit=50_000)
    await add_user(node, "s1rep", "sales_rep", "S001")
    url = f"/api/v1/customers/{c['id']}"
    r = await client.put(f"{url}/credit-limit", headers=headers,
                         json={"credit_limit_fen": 80_000, "reason": "回款及时，上调"})
    assert r.json() == {"customer_id": c["id"], "credit_limit_fen": 80_000,
                        "status": "applied", "request_id": None}
    r = await client.put(f"{url}/credit-limit", headers=await login(client, "s1rep"),
                         json={"credit_limit_fen": 1, "reason": "x"})
    assert r.status_code == 403
    r = await client.put(f"{url}/credit-limit", headers=headers,
                         json={"credit_limit_fen": -1, "reason": "x"})
    assert r.status_code in (400, 422)
    r = await client.get(f"{url}/credit/history", headers=headers)
    body = r.json()
    assert [(i["old_value"], i["new_value"]) for i in body["items"]] == [
        (50_000, 80_000), (None, 50_000)]
    assert body["items"][0]["reason"].startswith("回款及时，上调")
    assert body["items"][0]["changed_by_name"] == "finance" and body["pending"] == []
    assert (await client.get(f"{url}/credit", headers=headers)).json()["credit_limit_fen"] \
        == 80_000


async def test_credit_limit_set_on_a_branch_is_a_request_hq_grants(
        tmp_path: Path, node: Node, client: Client) -> None:
    s1, up = await branch_node(tmp_path, node, "S001")
    try:
        await add_user(node, "s1finance", "finance", "S001")
        await add_user(node, "gm", "general_manager")
        await add_user(node, "s1clerk", "customer_service", "S001")
        await sync(s1, up, client)
        fin = await principal(s1, "s1finance")
        c = await new_customer(s1, await principal(s1, "s1clerk"), name="杭州某某机电公司",
                               customer_type="organisation")
        out = await credit_limits.set_limit(s1, fin, c["id"], 200_000, "新签年度合同")
        assert out["status"] == "pending" and out["credit_limit_fen"] is None
        status = await credit.credit_status(s1, fin, c["id"])
        assert status["credit_limit_fen"] is None  # not in effect before HQ grants it
        await sync(s1, up, client)
        gm = await login(client, "gm")
        r = await client.get("/api/v1/credit-limit-requests", headers=gm,
                             params={"status": "pending"})
        [pending] = r.json()["items"]
        assert pending["id"] == out["request_id"] and pending["value"] == 200_000
        assert pending["reason"].startswith("新签年度合同")
        r = await client.post(f"/api/v1/credit-limit-requests/{pending['id']}/grant",
                              headers=gm)
        assert r.status_code == 200 and r.json()["status"] == "granted", r.text
        r = await client.post(f"/api/v1/credit-limit-requests/{pending['id']}/deny",
                              headers=gm)
        assert r.status_code == 409
        await sync(s1, up, client)
        assert (await credit.credit_status(s1, fin, c["id"]))["credit_limit_fen"] == 200_000
        history = await credit_limits.limit_history(s1, fin, c["id"], None, 50)
        [change] = history["items"]
        assert (change["old_value"], change["new_value"]) == (None, 200_000)
        assert change["reason"].startswith("新签年度合同") and history["pending"] == []
    finally:
        await s1.close()
